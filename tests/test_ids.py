"""Semantic-ID choices: tokenizers, collision policies, RQ-VAE training recipe, MQL4Rec ids, ablation helpers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from mmgenrec.io import InputError, read_json
from mmgenrec.models.item_tokens import item_vocabulary
from mmgenrec.quantize.ablation import collapse_collisions, gather, grid
from mmgenrec.quantize.collisions import POLICIES, collision_stats, resolve, resolve_sinkhorn, resolve_suffix
from mmgenrec.quantize.rqvae import RQVAE, encode, train_rqvae
from mmgenrec.quantize.run import (
    code_tokens,
    load_index,
    quantize_file,
    quantize_matrix,
    quantize_mql4rec,
)
from mmgenrec.quantize.tokenizers import TOKENIZERS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RQ = dict(hidden=[32], latent_dim=8, epochs=15, batch_size=32, lr=3e-3)


def colliding_matrix(seed=1):
    """6 tight clusters of 10 near-identical rows + 40 spread rows (dim 16): no tokenizer can separate duplicates."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, 16)) * 3
    dup = np.repeat(centres, 10, axis=0) + rng.normal(size=(60, 16)) * 1e-5
    return np.concatenate([dup, rng.normal(size=(40, 16))]).astype(np.float32)


def cfg_for(tokenizer):
    return RQ if tokenizer == "rqvae" else {}


# ---------------------------------------------------------------------------------------------------------------
# policies on data engineered to collide, for every tokenizer


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_but_none_is_collision_free(tokenizer, policy):
    x = colliding_matrix()
    codes, stats, _ = quantize_matrix(x, tokenizer=tokenizer, levels=3, codebook_size=16, collision_policy=policy,
                                      seed=0, device="cpu", **cfg_for(tokenizer))
    assert stats["collisions_before"]["items_in_collisions"] >= 30  # the engineering worked
    after = collision_stats(codes)
    assert after == stats["collisions_after"]
    if policy == "none":
        assert after == stats["collisions_before"]
    else:
        assert after["collision_rate"] == 0 and after["n_unique"] == 100
    assert codes.shape == (100, 4 if policy == "suffix" else 3)
    assert stats["levels"] == codes.shape[1] and stats["tokenizer_levels"] == 3
    assert codes.min() >= 0 and codes.max() < 16


def test_suffix_appends_a_numbering_level():
    codes = np.array([[1, 2], [1, 2], [0, 2], [1, 2], [0, 0]])
    out = resolve_suffix(codes)
    np.testing.assert_array_equal(out[:, :2], codes)
    np.testing.assert_array_equal(out[:, 2], [0, 1, 0, 2, 0])  # shared tuple numbered in item order
    with pytest.raises(ValueError, match="codebook too small"):
        resolve_suffix(codes, codebook_size=2)


def test_sinkhorn_policy_changes_only_colliding_last_codes():
    rng = np.random.default_rng(0)
    codes = np.array([[0, 1]] * 6 + [[1, 1], [2, 3]])
    dist = rng.random((8, 8))
    out, facts = resolve_sinkhorn(codes, dist, epsilon=0.003, max_rounds=20)
    assert collision_stats(out)["collision_rate"] == 0
    np.testing.assert_array_equal(out[:, 0], codes[:, 0])
    np.testing.assert_array_equal(out[6:], codes[6:])  # the two lonely items keep their codes
    assert facts["rounds"] >= 1 and 0 <= facts["fallback_items"] <= 6
    # each of 6 colliding items has its own best last code (distance 0 to code i + 2, 1 to every other code):
    # Sinkhorn alone gives every item that code in one round; the fallback is never used
    group = np.array([[0, 1]] * 6)
    dist = np.ones((6, 8))
    dist[np.arange(6), np.arange(6) + 2] = 0.0
    out, facts = resolve_sinkhorn(group, dist, epsilon=0.003, max_rounds=20)
    assert facts == {"rounds": 1, "fallback_items": 0}
    np.testing.assert_array_equal(out, [[0, i + 2] for i in range(6)])
    # identical members: Sinkhorn cannot split them, the nearest_free fallback does
    out, facts = resolve_sinkhorn(np.zeros((4, 2), int), np.zeros((4, 8)), max_rounds=3)
    assert collision_stats(out)["collision_rate"] == 0 and facts == {"rounds": 3, "fallback_items": 4}
    with pytest.raises(ValueError, match="collision_policy"):
        resolve("drop", codes, dist, codebook_size=8)


# ---------------------------------------------------------------------------------------------------------------
# tokenizers


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_same_seed_same_ids_and_reconstruction(tokenizer):
    x = np.random.default_rng(4).normal(size=(150, 16)).astype(np.float32)
    kw = dict(tokenizer=tokenizer, levels=3, codebook_size=8, collision_policy="none", device="cpu",
              **cfg_for(tokenizer))
    if tokenizer == "rqvae":  # the trained model, not the lowest-loss epoch: with LC-Rec's detached residual the
        kw["select"] = "last"  # later levels' quantisation loss grows on this random input and best_loss picks epoch 1
    c1, s1, _ = quantize_matrix(x, seed=5, **kw)
    c2, s2, _ = quantize_matrix(x, seed=5, **kw)
    np.testing.assert_array_equal(c1, c2)
    assert s1["reconstruction_mse"] == s2["reconstruction_mse"]
    # the codes carry information: reconstruction beats predicting the mean (variance 1 per dim)
    assert s1["reconstruction_mse"] < 0.95 * float(x.var())
    assert all(lv["used_codes"] >= 4 for lv in s1["per_level"])


def test_pq_needs_power_of_two_and_rqkmeans_lowers_residual():
    x = np.random.default_rng(0).normal(size=(120, 12)).astype(np.float32)
    with pytest.raises(ValueError, match="power-of-two"):
        quantize_matrix(x, tokenizer="opq", levels=3, codebook_size=12)
    _, stats, _ = quantize_matrix(x, tokenizer="rqkmeans", levels=3, codebook_size=8, collision_policy="none")
    residual = [h["residual_mse"] for h in stats["history"]]
    assert residual == sorted(residual, reverse=True) and residual[-1] < float(x.var())
    assert stats["reconstruction_mse"] == pytest.approx(residual[-1], rel=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# RQ-VAE recipe


def test_warmup_checkpoints_and_training_sinkhorn():
    x = colliding_matrix()
    model, history, best = train_rqvae(x, levels=3, codebook_size=16, seed=0, warmup_epochs=5, eval_every=3,
                                       select="best_collision", sinkhorn_epsilon=[0.0, 0.0, 0.003], **RQ)
    lrs = [h["lr"] for h in history]
    assert lrs[0] < lrs[4] < lrs[5] == pytest.approx(3e-3) == lrs[-1]  # linear warm-up, then constant
    checked = [h for h in history if h["collision_rate"] is not None]
    assert [h["epoch"] for h in checked] == [3, 6, 9, 12, 15]
    assert best["best_collision"]["collision_rate"] == min(h["collision_rate"] for h in checked)
    assert best["best_loss"]["loss"] == min(h["loss"] for h in history)
    # the returned model is the best-collision checkpoint
    assert collision_stats(encode(model, x))["collision_rate"] == best["best_collision"]["collision_rate"]
    assert model.sinkhorn_epsilon == [0.0, 0.0, 0.003]
    with pytest.raises(ValueError, match="sinkhorn_epsilon"):
        RQVAE(16, levels=3, codebook_size=8, hidden=[8], latent_dim=4, sinkhorn_epsilon=[0.1])
    with pytest.raises(ValueError, match="select"):
        train_rqvae(x, levels=3, codebook_size=16, select="best", **RQ)


def test_quantize_file_writes_plot_and_reloadable_checkpoints(tmp_path):
    x = np.random.default_rng(2).normal(size=(120, 16)).astype(np.float32)
    np.save(tmp_path / "emb.npy", x)
    cfg = dict(levels=3, codebook_size=16, collision_policy="none", select="best_loss", seed=1, device="cpu", **RQ)
    stats = quantize_file(tmp_path / "emb.npy", tmp_path / "index.json", tmp_path / "stats.json",
                          plot_path=tmp_path / "curve.png", checkpoint_dir=tmp_path / "ckpt", view="text", **cfg)
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stats["view"] == "text" and len(stats["history"]) == 15
    assert set(stats["checkpoints"]) == {"best_loss", "best_collision"}
    summary = read_json(tmp_path / "ckpt" / "checkpoints.json")
    assert summary["best_loss"]["epoch"] == stats["checkpoints"]["best_loss"]["epoch"]
    model = RQVAE(16, levels=3, codebook_size=16, hidden=[32], latent_dim=8)
    model.load_state_dict(torch.load(tmp_path / "ckpt" / "best_loss.pt"))
    index = load_index(tmp_path / "index.json", allow_collisions=True)
    codes = np.array([[int(t.split("_")[1][:-1]) for t in index[i]] for i in range(120)])
    np.testing.assert_array_equal(encode(model, x), codes)  # the saved checkpoint reproduces the written ids


# ---------------------------------------------------------------------------------------------------------------
# index files: suffix level, MQL4Rec layout, round trip, vocabulary


def test_suffix_index_round_trips_with_an_extra_level(tmp_path):
    np.save(tmp_path / "emb.npy", colliding_matrix())
    quantize_file(tmp_path / "emb.npy", tmp_path / "index.json", tmp_path / "stats.json", tokenizer="rqkmeans",
                  levels=3, codebook_size=16, collision_policy="suffix")
    index = load_index(tmp_path / "index.json", codebook_size=16)
    assert {len(t) for t in index.values()} == {4} and all(t[3].startswith("<d_") for t in index.values())
    assert sum(t[3] != "<d_0>" for t in index.values()) >= 30  # the duplicates were numbered
    assert item_vocabulary(index, 16) == code_tokens(4, 16)
    assert {str(k): v for k, v in index.items()} == json.loads((tmp_path / "index.json").read_text())


def test_mql4rec_index(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "text.npy", rng.normal(size=(80, 16)).astype(np.float32))
    np.save(tmp_path / "image.npy", rng.normal(size=(80, 8)).astype(np.float32))
    stats = quantize_mql4rec(tmp_path / "text.npy", tmp_path / "image.npy", tmp_path / "index.json",
                             tmp_path / "stats.json", tokenizer="rqkmeans", levels=4, codebook_size=8, seed=0)
    index = load_index(tmp_path / "index.json", codebook_size=8)
    tokens = index[0]
    assert [t[1] for t in tokens] == list("abcdABCD")
    assert len({tuple(t[:4]) for t in index.values()}) == 80 == len({tuple(t[4:]) for t in index.values()})
    assert stats["text"]["dim"] == 16 and stats["image"]["dim"] == 8
    assert stats["joint_collisions"]["collision_rate"] == 0
    vocab = item_vocabulary(index, 8)
    assert len(vocab) == 64 and "<A_7>" in vocab and "<d_0>" in vocab
    np.save(tmp_path / "short.npy", rng.normal(size=(79, 8)).astype(np.float32))
    with pytest.raises(InputError, match="short.npy"):
        quantize_mql4rec(tmp_path / "text.npy", tmp_path / "short.npy", tmp_path / "i2.json", tmp_path / "s2.json",
                         tokenizer="rqkmeans", levels=4, codebook_size=8)


@pytest.mark.parametrize(
    "tokens",
    [["<a_1>", "<A_2>", "<b_3>"],  # case goes back to lowercase
     ["<a_1>", "<B_2>"],  # uppercase run must start at A
     ["<A_1>", "<C_2>"],  # an image-only (all uppercase) id set runs from A too
     ["<A_1>", "<b_2>"]],  # uppercase, then lowercase
)
def test_load_index_rejects_bad_mql4rec_layouts(tmp_path, tokens):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"0": tokens}))
    with pytest.raises(InputError, match=r"bad\.json: item 0"):
        load_index(path)


def test_load_index_accepts_an_image_only_uppercase_id_set(tmp_path):
    # the published MQL4GRec image ids (Instruments.index_vitemb.json) spell every level in upper case
    path = tmp_path / "vit.json"
    path.write_text(json.dumps({"0": ["<A_1>", "<B_2>"], "1": ["<A_3>", "<B_0>"]}))
    assert load_index(path) == {0: ["<A_1>", "<B_2>"], 1: ["<A_3>", "<B_0>"]}


# ---------------------------------------------------------------------------------------------------------------
# ablation helpers


def test_grid_and_collapse_collisions(tmp_path):
    assert [g["name"] for g in grid({"tokenizers": ["rqvae", "pq"], "policies": ["none"], "views": ["mm", "text"]})] \
        == ["rqvae-none-mm-content", "rqvae-none-text-content", "pq-none-mm-content", "pq-none-text-content"]
    assert [g["name"] for g in grid({"tokenizers": ["pq"], "policies": ["none"], "views": ["mm"],
                                     "poolings": ["content", "prompt"]})] == ["pq-none-mm-content", "pq-none-mm-prompt"]
    assert grid({"tokenizers": ["pq"], "policies": ["none"], "views": ["mm"]}, "prompt")[0]["pooling"] == "prompt"
    (tmp_path / "index.json").write_text(json.dumps(
        {"0": ["<a_1>"], "1": ["<a_2>"], "2": ["<a_1>"], "3": ["<a_3>"]}))
    (tmp_path / "inter.json").write_text(json.dumps({"u1": [0, 1, 2, 3], "u2": [3, 2]}))
    facts = collapse_collisions(tmp_path / "index.json", tmp_path / "inter.json", tmp_path / "i.json",
                                tmp_path / "s.json")
    assert facts == {"items": 4, "distinct_ids": 3, "merged_items": 1}
    assert read_json(tmp_path / "i.json") == {"0": ["<a_1>"], "1": ["<a_2>"], "2": ["<a_3>"]}
    assert read_json(tmp_path / "s.json") == {"u1": [0, 1, 0, 2], "u2": [2, 0]}
    load_index(tmp_path / "i.json")  # valid, collision-free
    (tmp_path / "inter.json").write_text(json.dumps({"u9": [0, 7]}))
    with pytest.raises(InputError, match="user u9: item 7"):
        collapse_collisions(tmp_path / "index.json", tmp_path / "inter.json", tmp_path / "i.json", tmp_path / "s.json")


def test_gather_table(tmp_path):
    x = colliding_matrix()
    np.save(tmp_path / "e.npy", x)
    runs = []
    for policy in ("none", "suffix"):
        quantize_file(tmp_path / "e.npy", tmp_path / f"{policy}.json", tmp_path / f"{policy}.stats.json",
                      tokenizer="rqkmeans", levels=2, codebook_size=16, collision_policy=policy)
        (tmp_path / f"{policy}.metrics.json").write_text(json.dumps(
            {"HR@5": 0.5, "NDCG@5": 0.25, "HR@10": 0.6, "NDCG@10": 0.3, "n_users": 9, "split": "valid"}))
        runs.append({"category": "c", "tokenizer": "rqkmeans", "policy": policy, "view": "mm", "pooling": "prompt",
                     "stats": tmp_path / f"{policy}.stats.json", "metrics": tmp_path / f"{policy}.metrics.json"})
    table = gather(runs, tmp_path / "out.csv")
    saved = pd.read_csv(tmp_path / "out.csv")
    assert list(saved["policy"]) == ["none", "suffix"] and list(saved["levels"]) == [2, 3]
    assert list(saved["pooling"]) == ["prompt", "prompt"]
    assert saved.loc[0, "collision_rate_after"] > 0 and saved.loc[1, "collision_rate_after"] == 0
    assert saved.loc[0, "collision_rate_before"] == saved.loc[1, "collision_rate_before"]
    assert saved.loc[0, "merged_items"] > 0 and saved.loc[1, "merged_items"] == 0
    assert (saved["HR@10"] == 0.6).all() and 0 < saved.loc[0, "mean_utilisation"] <= 1
    assert len(table) == 2
