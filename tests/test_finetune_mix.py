"""The task mix is re-drawn every epoch (issue 18, item 3): with weight 0.5, each epoch trains on its own half of
the items, so every item gets its alignment examples in some epoch; same seed, same mixes; a run resumed inside a
later epoch re-draws that epoch's mix."""

from __future__ import annotations

import json

import pytest
from transformers import TrainerCallback

from mmgenrec.finetune.data import build_examples
from mmgenrec.finetune.train import finetune
from test_finetune import KillAt, adapter_tensors, data, files  # noqa: F401  (the module's data fixture)

HALF = {"mmitem2index": {"weight": 0.5}}
TRAIN = dict(batch_size=8, lr=5e-3, device="cpu", logging_steps=1, seed=5)


def kw(d):
    index = {int(k): v for k, v in json.loads((d / "index.json").read_text()).items()}
    return dict(index=index, items=json.loads((d / "item.json").read_text()), image_dir=d / "images")


def item_ids(examples, index) -> frozenset:
    """The item behind each mmitem2index example, read back from its answer (the item's semantic ID)."""
    by_sid = {"".join(v): k for k, v in index.items()}
    return frozenset(by_sid[e["answer"]] for e in examples)


def test_each_epoch_draws_its_own_half(data):  # noqa: F811
    k = kw(data)
    epochs = [build_examples(HALF, seed=3, epoch=e, **k) for e in range(8)]
    halves = [item_ids(ex, k["index"]) for ex in epochs]
    assert all(len(ex) == 12 and len(h) == 12 for ex, h in zip(epochs, halves))  # round(0.5 x 24), no repeats
    assert halves[0] != halves[1]  # not one fixed half for the whole run
    assert frozenset().union(*halves) == frozenset(range(24))  # every item aligned in some epoch
    assert [e["template"] for e in epochs[0]] != [e["template"] for e in epochs[1]]  # templates re-drawn too
    assert build_examples(HALF, seed=3, epoch=1, **k) == epochs[1]  # same seed and epoch, same mix
    assert build_examples(HALF, seed=3, **k) == epochs[0]  # epoch 0 is the default


class SeenItems(TrainerCallback):
    """Per optimizer step: the epoch and the item set of the dataset's current mix."""

    def __init__(self, index):
        self.index, self.seen = index, []

    def on_step_end(self, args, state, control, train_dataloader=None, **kwargs):
        self.seen.append((state.global_step, item_ids(train_dataloader.dataset.examples, self.index)))


def test_training_uses_a_new_mix_every_epoch_and_resumes_it(tiny, data, tmp_path, one_torch_thread):  # noqa: F811
    k = kw(data)
    expected = [item_ids(build_examples(HALF, seed=5, epoch=e, **k), k["index"]) for e in range(3)]
    assert len(set(expected)) == 3
    rec = SeenItems(k["index"])
    ref = tmp_path / "ref" / "model"
    finetune(tiny, ref, tasks=HALF, epochs=3, callbacks=(rec,), **files(data), **TRAIN)
    # 12 examples per epoch, batch 8: 2 steps per epoch, steps 1-2 on epoch 0's mix, 3-4 on epoch 1's, 5-6 on 2's
    assert rec.seen == [(s, expected[(s - 1) // 2]) for s in range(1, 7)]
    log = json.loads((ref / "train_log.json").read_text())
    assert log["steps"] == 6 and log["stages"][0]["tasks"] == {"mmitem2index": 12}
    # killed after step 3 (inside epoch 1): the rerun re-draws epoch 1's mix and ends where the reference ends
    out = tmp_path / "run" / "model"
    with pytest.raises(KeyboardInterrupt):
        finetune(tiny, out, tasks=HALF, epochs=3, save_steps=1, callbacks=(KillAt(3),), **files(data), **TRAIN)
    rec2 = SeenItems(k["index"])
    finetune(tiny, out, tasks=HALF, epochs=3, save_steps=1, callbacks=(rec2,), **files(data), **TRAIN)
    assert json.loads((out / "train_log.json").read_text())["stages"][0]["resumed_from"].endswith("checkpoint-3")
    assert rec2.seen == [(s, expected[(s - 1) // 2]) for s in range(4, 7)]
    a, b = adapter_tensors(ref), adapter_tensors(out)
    assert max(float((a[n] - b[n]).abs().max()) for n in a) <= 1e-6
