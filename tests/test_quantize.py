"""RQ-VAE semantic IDs: collisions, Sinkhorn, determinism, the index file and the stage driver (CPU, seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmgenrec.io import InputError, read_json
from mmgenrec.quantize.collisions import collision_stats, resolve_nearest_free
from mmgenrec.quantize.rqvae import RQVAE, encode, encode_with_distances, sinkhorn, sinkhorn_assign, train_rqvae
from mmgenrec.quantize.run import code_tokens, codes_to_index, load_index, quantize_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(levels=3, codebook_size=16, hidden=[32], latent_dim=8, epochs=20, batch_size=64, lr=1e-3,
             sinkhorn_epsilon=[0.0, 0.0, 0.003])


def random_matrix(n=200, d=32, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# collisions


def test_collision_stats():
    codes = np.array([[0, 1], [0, 1], [0, 2], [1, 1], [0, 1]])
    s = collision_stats(codes)
    assert s["n_items"] == 5 and s["n_unique"] == 3
    assert s["collision_rate"] == pytest.approx(1 - 3 / 5)
    assert s["items_in_collisions"] == 3


def test_nearest_free_unit():
    # items 0,1,2 share (0, 3); item 1 is closest to code 3, so it keeps it. Item 3 does not collide.
    codes = np.array([[0, 3], [0, 3], [0, 3], [0, 5], [1, 3]])
    dist = np.full((5, 8), 10.0)
    dist[:, 3] = [1.0, 0.5, 2.0, 9.0, 0.1]
    dist[0, 4], dist[2, 4], dist[2, 6] = 1.5, 1.2, 3.0  # item 2 wins code 4 (1.2 < 1.5), item 0 takes its next best
    dist[0, 5] = 0.0  # ... but code 5 is used by item 3 with the same prefix
    out = resolve_nearest_free(codes, dist)
    assert collision_stats(out)["collision_rate"] == 0
    np.testing.assert_array_equal(out[[1, 3, 4]], codes[[1, 3, 4]])  # keeper and non-colliding items unchanged
    np.testing.assert_array_equal(out[:, 0], codes[:, 0])  # only the last level ever changes
    assert out[2, 1] == 4 and out[0, 1] not in (3, 4, 5)


def test_nearest_free_codebook_too_small():
    codes = np.zeros((5, 2), dtype=int)
    with pytest.raises(ValueError, match="codebook too small"):
        resolve_nearest_free(codes, np.zeros((5, 4)))


def test_nearest_free_on_engineered_collisions():
    # 6 tight clusters of 10 near-identical rows, plus 40 spread rows: the encoder cannot separate the duplicates
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(6, 16)) * 3
    dup = np.repeat(centres, 10, axis=0) + rng.normal(size=(60, 16)) * 1e-4
    x = np.concatenate([dup, rng.normal(size=(40, 16))]).astype(np.float32)
    model, _, _ = train_rqvae(x, levels=3, codebook_size=16, hidden=[32], latent_dim=8, epochs=5, batch_size=32,
                           lr=1e-3, seed=0)
    codes, dist = encode_with_distances(model, x, balanced=False)
    before = collision_stats(codes)
    assert before["items_in_collisions"] >= 20  # the engineering worked
    out = resolve_nearest_free(codes, dist)
    assert collision_stats(out)["collision_rate"] == 0
    tuples = [tuple(r) for r in codes]
    lonely = np.array([tuples.count(t) == 1 for t in tuples])
    np.testing.assert_array_equal(out[lonely], codes[lonely])
    np.testing.assert_array_equal(out[:, :-1], codes[:, :-1])


# ---------------------------------------------------------------------------------------------------------------
# sinkhorn


def skewed_distances(n=120, k=8, seed=0):
    """Every point's nearest code is code 0; the other codes are far away."""
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, 2))
    book = np.concatenate([[[0.0, 0.0]], rng.normal(size=(k - 1, 2)) * 0.5 + 4])
    return ((points[:, None] - book[None]) ** 2).sum(-1)


def test_sinkhorn_marginals():
    d = torch.as_tensor(skewed_distances())
    cost = (d - d.mean()) / (d.max() - d.min())
    q = sinkhorn(cost, epsilon=0.05, iters=200)
    n, k = q.shape
    assert q.dtype == torch.float64 and torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(1), torch.full((n,), 1 / n, dtype=torch.float64), rtol=1e-6, atol=0)
    torch.testing.assert_close(q.sum(0), torch.full((k,), 1 / k, dtype=torch.float64), rtol=1e-6, atol=0)
    # tiny epsilon on raw, unnormalised distances must not overflow or produce NaN
    assert torch.isfinite(sinkhorn(d * 100, epsilon=0.003, iters=10)).all()


def test_sinkhorn_assign_balances_skewed_data():
    d = skewed_distances()
    greedy = np.bincount(d.argmin(1), minlength=8)
    balanced = np.bincount(sinkhorn_assign(d, epsilon=0.003, iters=50).numpy(), minlength=8)
    assert greedy.max() == 120  # argmin puts everyone on code 0
    assert balanced.sum() == 120
    assert balanced.max() < greedy.max() / 1.5 and (balanced > 0).sum() == 8


# ---------------------------------------------------------------------------------------------------------------
# model and training


def test_forward_shapes_and_batch_norm_flag():
    model = RQVAE(32, levels=3, codebook_size=16, hidden=[32], latent_dim=8)
    x_hat, losses, codes = model(torch.randn(10, 32))
    assert x_hat.shape == (10, 32) and codes.shape == (10, 3) and codes.dtype == torch.long
    assert set(losses) == {"loss", "recon", "quant"}
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in RQVAE(32, levels=3, codebook_size=16, hidden=[32],
                                                                   latent_dim=8, batch_norm=True).modules())
    with pytest.raises(TypeError):
        RQVAE(32, levels=3, codebook_size=16, hidden=[32], latent_dim=8, batch_norm="false")


def test_fewer_points_than_codes():
    model, history, _ = train_rqvae(random_matrix(10, 8), levels=2, codebook_size=16, hidden=[8], latent_dim=4,
                                 epochs=2, batch_size=4, lr=1e-3, seed=0)
    assert len(history) == 2 and np.isfinite(history[-1]["loss"])


def test_check_epochs_record_the_index_reconstruction():
    """At every collision check the history holds the reconstruction MSE of the nearest-code index over all rows;
    at the last epoch it must equal decoding the returned model's codes by hand."""
    x = random_matrix()
    model, history, _ = train_rqvae(x, **{**SMALL, "epochs": 6}, eval_every=3, select="last", seed=0)
    checked = [h["epoch"] for h in history if h["index_recon"] is not None]
    assert checked == [3, 6] and all(h["collision_rate"] is not None for h in history if h["epoch"] in checked)
    codes = encode(model, x)
    with torch.no_grad():
        z_q = sum(book.weight[torch.as_tensor(codes[:, l])] for l, book in enumerate(model.codebooks))
        by_hand = float(((model.decoder(z_q).numpy() - x) ** 2).mean())
    assert history[-1]["index_recon"] == pytest.approx(by_hand, rel=1e-5)


def test_same_seed_same_codes_and_loss_decreases():
    x = random_matrix()
    m1, h1, _ = train_rqvae(x, seed=3, **SMALL)
    m2, h2, _ = train_rqvae(x, seed=3, **SMALL)
    np.testing.assert_array_equal(encode(m1, x, balanced=True), encode(m2, x, balanced=True))
    assert [r["loss"] for r in h1] == [r["loss"] for r in h2]
    assert h1[-1]["loss"] < h1[0]["loss"]
    assert len(h1) == 20 and h1[-1]["collision_rate"] is not None
    # a different data set trains too
    # (with the residual detached, as in LC-Rec, the later levels' residuals grow on this offset data in the first
    # epochs and the quantisation loss with them; the reconstruction is what must improve)
    _, h3, _ = train_rqvae(random_matrix(seed=9) * 2 + 1, seed=3, **SMALL)
    assert h3[-1]["recon"] < h3[0]["recon"]


# ---------------------------------------------------------------------------------------------------------------
# index file


def test_code_tokens_and_index():
    assert code_tokens(2, 3) == ["<a_0>", "<a_1>", "<a_2>", "<b_0>", "<b_1>", "<b_2>"]
    assert codes_to_index(np.array([[12, 7], [0, 1]])) == {"0": ["<a_12>", "<b_7>"], "1": ["<a_0>", "<b_1>"]}


def write_index(path, index):
    path.write_text(json.dumps(index))
    return path


@pytest.mark.parametrize(
    ("index", "item"),
    [
        ({"0": ["<a_1>", "<b_2>"], "1": ["<a_1>", "<c_2>"]}, "item 1"),  # wrong letter
        ({"0": ["<a_1>", "<b_2>"], "1": ["<a_0>", "<b_2>"], "2": ["<a_1>", "<b_2>"]}, "item 2"),  # duplicate tuple
        ({"0": ["<a_1>", "<b_2>"], "2": ["<a_0>", "<b_2>"]}, "item 1"),  # gap in ids
        ({"0": ["<a_1>", "<b_2>"], "1": ["<a_0>"]}, "item 1"),  # ragged
        ({"0": ["<a_1>", "<b_x>"]}, "item 0"),  # not a code
    ],
)
def test_load_index_rejects_bad_files(tmp_path, index, item):
    path = write_index(tmp_path / "bad.index.json", index)
    with pytest.raises(InputError, match="bad.index.json") as err:
        load_index(path)
    assert item in str(err.value)


def test_load_index_allows_collisions_when_asked(tmp_path):
    path = write_index(tmp_path / "dup.json", {"0": ["<a_1>"], "1": ["<a_1>"]})
    assert load_index(path, allow_collisions=True) == {0: ["<a_1>"], 1: ["<a_1>"]}


# ---------------------------------------------------------------------------------------------------------------
# stage driver


def test_quantize_file_end_to_end(tmp_path):
    npy = tmp_path / "emb.npy"
    np.save(npy, random_matrix())
    index_path, stats_path = tmp_path / "ids" / "cat.index.json", tmp_path / "ids" / "stats.json"
    recon_path = tmp_path / "ids" / "reconstruction.npy"
    stats = quantize_file(npy, index_path, stats_path, seed=0, device="auto", reconstruction_path=recon_path, **SMALL)

    assert index_path.exists() and stats_path.exists()
    recon = np.load(recon_path)  # every item decoded from its written codes
    assert recon.shape == (200, 32) and recon.dtype == np.float32
    assert float(((recon - random_matrix()) ** 2).mean()) == pytest.approx(stats["reconstruction_mse"], rel=1e-4)
    saved = read_json(stats_path)
    assert saved["collisions_after"]["collision_rate"] == 0 == stats["collisions_after"]["collision_rate"]
    assert saved["n_items"] == 200 and saved["dim"] == 32 and len(saved["per_level"]) == 3
    assert all(0 < lv["utilisation"] <= 1 and 1 <= lv["perplexity"] <= 16 for lv in saved["per_level"])
    assert saved["history"][-1]["epoch"] == 20 and np.isfinite(saved["reconstruction_mse"])

    index = load_index(index_path, codebook_size=16)
    assert sorted(index) == list(range(200))
    assert {str(k): v for k, v in index.items()} == read_json(index_path)
    assert {t for tokens in index.values() for t in tokens} <= set(code_tokens(3, 16))

    # same seed, same index
    again = tmp_path / "again.index.json"
    quantize_file(npy, again, tmp_path / "again.stats.json", seed=0, device="cpu", **SMALL)
    assert again.read_text() == index_path.read_text()


def test_reconstruction_is_in_the_input_space_when_standardized(tmp_path):
    """With ``standardize`` the tokenizer sees z-scores; the exported vectors are mapped back to the input's
    offset and scale (or they could not be compared with the raw embeddings)."""
    x = random_matrix(300, 16) * np.linspace(0.5, 8, 16, dtype=np.float32) + 40.0
    np.save(tmp_path / "x.npy", x)
    stats = quantize_file(tmp_path / "x.npy", tmp_path / "i.json", tmp_path / "s.json", tokenizer="rqkmeans",
                          levels=3, codebook_size=16, standardize=True, reconstruction_path=tmp_path / "r.npy")
    recon = np.load(tmp_path / "r.npy")
    np.testing.assert_allclose(recon.mean(0), x.mean(0), atol=0.3)
    z_error = (recon - x) / x.std(0)  # back in z-scores, the error is the one the stats report
    assert float((z_error ** 2).mean()) == pytest.approx(stats["reconstruction_mse"], rel=1e-3)
    assert float(((recon - x) ** 2).mean()) < 0.5 * float(x.var(0).mean())  # better than every item at the mean


def test_quantize_file_rejects_bad_input(tmp_path):
    x = random_matrix(20, 4)
    x[7, 2] = np.nan
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(InputError, match=r"nan\.npy.*row 7"):
        quantize_file(tmp_path / "nan.npy", tmp_path / "i.json", tmp_path / "s.json", **SMALL)
    np.save(tmp_path / "flat.npy", np.zeros(5, dtype=np.float32))
    with pytest.raises(InputError, match=r"flat\.npy.*2-D"):
        quantize_file(tmp_path / "flat.npy", tmp_path / "i.json", tmp_path / "s.json", **SMALL)
    with pytest.raises(ValueError, match="collision_policy"):
        quantize_file(tmp_path / "flat.npy", tmp_path / "i.json", tmp_path / "s.json", collision_policy="drop",
                      **SMALL)
    assert not (tmp_path / "i.json").exists()
