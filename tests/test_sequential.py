"""Kind sequential (SASRec, BERT4Rec, GRU4Rec, LRURec): samples, learning a planted pattern, no target leakage,
candidate files, history exclusion, grid selection on valid, determinism and resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmgenrec.evaluate.metrics import per_user_metrics
from mmgenrec.methods import seqdata
from mmgenrec.methods.seqnets import MODELS
from mmgenrec.methods.sequential import run_sequential

TINY = {"hidden": 32, "layers": 1, "heads": 1, "dropout": 0.1, "max_len": 12, "batch_size": 64, "lr": 0.005}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def planted(n_items=40, n_users=300, seed=0) -> dict[str, list[int]]:
    """next = item + 1 (mod n): a model that reads the last item knows the target."""
    rng = np.random.default_rng(seed)
    out = {}
    for u in range(n_users):
        start, length = int(rng.integers(n_items)), int(rng.integers(5, 11))
        out[f"u{u}"] = [(start + j) % n_items for j in range(length)]
    return out


def random_seqs(n_items=25, n_users=40, seed=1) -> dict[str, list[int]]:
    """Random sequences with repeats (a valid/test target may also occur in the training part)."""
    rng = np.random.default_rng(seed)
    return {f"u{u}": [int(i) for i in rng.integers(n_items, size=int(rng.integers(3, 9)))] for u in range(n_users)}


def write_inter(tmp_path: Path, seqs, name="inter.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(seqs))
    return path


def run(tmp_path: Path, seqs, model, out="out", evaluation=None, **cfg):
    inter = write_inter(tmp_path, seqs, f"{out}.inter.json")
    d = tmp_path / out
    settings = {"kind": "sequential", "model": model, **TINY, **cfg}
    if "on_batch" in settings:
        on_batch = settings.pop("on_batch")
    else:
        on_batch = None
    checkpoints = settings.pop("checkpoints", None)
    metrics = run_sequential(inter, d / "metrics.json", d / "topk.jsonl", d / "cand", d / "train_log.json",
                             cfg=settings, evaluation=evaluation or {}, method=model, checkpoints=checkpoints,
                             on_batch=on_batch)
    return metrics, d


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_causal_samples_cover_every_training_position_once():
    # training part a..e (ids 10..14), max_len 2: windows of <= 3 items ending at the end, 2 targets apart
    samples = seqdata.causal_samples({"u": [10, 11, 12, 13, 14]}, max_len=2)
    assert [s.items for s in samples] == [(12, 13, 14), (10, 11, 12)]
    inputs, labels = seqdata.causal_batch(samples)
    assert inputs.tolist() == [[13, 14], [11, 12]]   # tokens = id + 1
    assert labels.tolist() == [[14, 15], [12, 13]]   # next items 13,14 and 11,12: every position after the first
    short = seqdata.causal_batch([seqdata.Sample(0, (3, 4))])
    assert short[0].tolist() == [[4]] and short[1].tolist() == [[5]]
    assert seqdata.causal_samples({"u": [7]}, max_len=2) == []  # one training item: no target


def test_cloze_masks_and_inference_inputs():
    samples = seqdata.cloze_samples({"u": [1, 2, 3, 4, 5]}, max_len=3)
    assert [s.items for s in samples] == [(3, 4, 5), (1, 2)]
    rng = np.random.default_rng(0)
    inputs, labels = seqdata.cloze_batch(samples, 0.5, 99, rng)
    tokens = seqdata.left_pad([[4, 5, 6], [2, 3]])
    masked = inputs == 99
    assert masked.any(1).all()                                    # at least one mask per row
    assert (labels[masked] == tokens[masked]).all() and (labels[~masked] == 0).all()
    assert (inputs[~masked] == tokens[~masked]).all()
    last_only, lab = seqdata.cloze_batch(samples, 0.5, 99, rng, last_prob=1.0)
    assert last_only.tolist() == [[4, 5, 99], [0, 2, 99]] and lab.tolist() == [[0, 0, 6], [0, 0, 3]]
    assert seqdata.inference_inputs([[1, 2, 3, 4]], 3, None).tolist() == [[3, 4, 5]]
    assert seqdata.inference_inputs([[1, 2, 3, 4], [7]], 3, 99).tolist() == [[4, 5, 99], [0, 8, 99]]


@pytest.mark.parametrize("model", MODELS)
def test_each_model_learns_a_planted_next_item_pattern(tmp_path, model):
    """next = item + 1 mod 40 (uniform items: popularity's HR@10 is about 0.25): every model must get it."""
    extra = {"epochs": 60, "mask_prob": 0.4, "patience": 60, "eval_every": 5} if model == "bert4rec" else \
        {"epochs": 25, "patience": 5}
    metrics, _ = run(tmp_path, planted(), model, **extra, train_candidates="none")
    assert metrics["HR@10"] >= 0.95, (model, metrics["HR@10"])
    assert metrics["valid"]["HR@10"] >= 0.95


@pytest.mark.parametrize("model", MODELS)
def test_training_never_sees_a_valid_or_test_target(tmp_path, model):
    seqs = random_seqs()
    users, n_items = list(seqs), 1 + max(max(s) for s in seqs.values())
    seen: dict[str, set[int]] = {u: set() for u in users}

    def collect(batch_users, inputs, labels):
        for u, row_in, row_lab in zip(batch_users, inputs.tolist(), labels.tolist()):
            # tokens -> item ids (padding 0 and BERT4Rec's [mask] = n_items + 1 are no items)
            seen[users[u]] |= {t - 1 for t in row_in + row_lab if 0 < t <= n_items}

    run(tmp_path, seqs, model, epochs=2, on_batch=collect, train_candidates="none")
    assert sum(map(len, seen.values())) > 0
    for u, seq in seqs.items():
        train = set(seq[:-2])
        assert seen[u] <= train, u                        # only training-part items ever enter a batch
        for target in (seq[-2], seq[-1]):
            assert target not in seen[u] or target in train, (u, target)


def test_candidates_files_and_recall(tmp_path):
    seqs = planted(n_items=40, n_users=120)
    metrics, d = run(tmp_path, seqs, "sasrec", epochs=6, candidates_k=7, train_candidates="all")
    cand = d / "cand"
    valid, test, train = lines(cand / "valid.jsonl"), lines(cand / "test.jsonl"), lines(cand / "train.jsonl")
    assert [r["user"] for r in valid] == [r["user"] for r in test] == list(seqs)
    for rv, rt in zip(valid, test):
        seq = seqs[rv["user"]]
        assert rv["target"] == seq[-2] and rt["target"] == seq[-1]
        for row, history in ((rv, seq[:-2]), (rt, seq[:-1])):
            c = row["candidates"]
            assert len(c) == 7 == len(set(c)) and all(0 <= i < 40 for i in c)
            assert not set(c) & set(history)
    # every training prefix after the first item, targets from the training part
    assert len(train) == sum(len(s) - 3 for s in seqs.values())
    for row in train:
        seq = seqs[row["user"]]
        assert row["target"] == seq[row["history_len"]] and row["history_len"] < len(seq) - 2
        assert not set(row["candidates"]) & set(seq[:row["history_len"]])
    recall = json.loads((cand / "recall.json").read_text())
    for split, rows in (("valid", valid), ("test", test), ("train", train)):
        hr = per_user_metrics([r["candidates"] for r in rows], [r["target"] for r in rows], ks=(7,), ndcg_ks=(7,))
        assert recall[f"{split}_recall@7"] == pytest.approx(float(hr["HR@7"].mean()))
    assert recall["valid_recall@7"] > 0.5  # the planted pattern: a trained model finds most targets
    assert metrics["candidates"] == recall


def test_test_targets_influence_nothing_but_the_test_target_field(tmp_path):
    """Training and selection use the training parts and valid items only: new test items change no list."""
    seqs = random_seqs(n_users=30)
    other = {u: s[:-1] + [(s[-1] + 7) % 25] for u, s in seqs.items()}
    _, a = run(tmp_path, seqs, "gru4rec", out="a", epochs=3)
    _, b = run(tmp_path, other, "gru4rec", out="b", epochs=3)
    assert lines(a / "cand" / "valid.jsonl") == lines(b / "cand" / "valid.jsonl")
    assert [r["candidates"] for r in lines(a / "cand" / "test.jsonl")] == \
        [r["candidates"] for r in lines(b / "cand" / "test.jsonl")]
    assert [r["topk"] for r in lines(a / "topk.jsonl")] == [r["topk"] for r in lines(b / "topk.jsonl")]


def test_exclude_history_drops_history_items(tmp_path):
    seqs = random_seqs(n_users=30)
    _, d = run(tmp_path, seqs, "lrurec", epochs=2, evaluation={"exclude_history": True, "top_k": 10})
    rows = lines(d / "topk.jsonl")
    assert all(len(r["topk"]) == 10 and not set(r["topk"]) & set(seqs[r["user"]][:-1]) for r in rows)
    _, d2 = run(tmp_path, seqs, "lrurec", out="plain", epochs=2, evaluation={"top_k": 10})
    assert any(set(r["topk"]) & set(seqs[r["user"]][:-1]) for r in lines(d2 / "topk.jsonl"))


def test_grid_is_chosen_on_valid(tmp_path):
    # a learning rate of 1e-7 cannot learn the planted pattern in 4 epochs; 5e-3 can
    metrics, d = run(tmp_path, planted(n_users=150), "sasrec", epochs=4, grid={"lr": [1e-7, 0.005]})
    log = json.loads((d / "train_log.json").read_text())
    assert [g["setting"] for g in log["grid"]] == [{"lr": 1e-7}, {"lr": 0.005}]
    assert log["selected_grid_point"] == 1 and metrics["selected"]["lr"] == 0.005
    assert log["grid"][1]["valid"]["NDCG@10"] > log["grid"][0]["valid"]["NDCG@10"]
    assert len(log["grid"][1]["curve"]) == 4 and log["grid"][1]["curve"][0]["epoch"] == 1


def _outputs(d: Path) -> dict:
    m = json.loads((d / "metrics.json").read_text())
    for key in ("seconds", "train_seconds"):
        m.pop(key)
    return {"metrics": m, "topk": (d / "topk.jsonl").read_text(),
            **{f: (d / "cand" / f).read_text() for f in ("valid.jsonl", "test.jsonl", "train.jsonl", "recall.json")}}


@pytest.mark.parametrize("model", ["sasrec", "bert4rec"])
def test_two_runs_are_identical(tmp_path, model):
    seqs = random_seqs()
    _, a = run(tmp_path, seqs, model, out="a", epochs=3)
    _, b = run(tmp_path, seqs, model, out="b", epochs=3)
    assert _outputs(a) == _outputs(b)


class Killed(RuntimeError):
    pass


@pytest.mark.parametrize("model", ["sasrec", "lrurec"])
def test_killed_run_resumes_from_its_checkpoint(tmp_path, model):
    seqs = random_seqs(n_users=200)
    train = {u: s[:-2] for u, s in seqs.items()}
    per_epoch = -(-len(seqdata.causal_samples(train, TINY["max_len"])) // TINY["batch_size"])
    assert per_epoch >= 2
    _, full = run(tmp_path, seqs, model, out="full", epochs=4, patience=10, checkpoints=tmp_path / "ck_full")
    calls = {"n": 0}

    def kill_in_epoch_3(*_):
        calls["n"] += 1
        if calls["n"] == 2 * per_epoch + 2:  # the 2nd batch of epoch 3
            raise Killed

    ckpt = tmp_path / "ck"
    with pytest.raises(Killed):
        run(tmp_path, seqs, model, out="resumed", epochs=4, patience=10, checkpoints=ckpt, on_batch=kill_in_epoch_3)
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    state = torch.load(ckpt / "grid0" / "state.pt", weights_only=False)["state"]
    assert state["epoch"] == 2
    calls["n"] = 100
    seen = []
    _, resumed = run(tmp_path, seqs, model, out="resumed", epochs=4, patience=10, checkpoints=ckpt,
                     on_batch=lambda *a: seen.append(1))
    assert len(seen) == 2 * per_epoch  # only epochs 3 and 4 ran again
    assert _outputs(resumed) == _outputs(full)
