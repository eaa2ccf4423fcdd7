"""Settings the real run relies on (issue 18, item 2): the schema accepts every seqrec template, the warm-up is a
ratio of the steps, training validates index.json as evaluation does, and the checkpoint fingerprint covers every
argument that changes the trained model, the image folder included."""

from __future__ import annotations

import copy
import inspect
import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image
from transformers import TrainerCallback

from mmgenrec.finetune.train import NOT_FINGERPRINTED, finetune, run_fingerprint
from mmgenrec.io import InputError
from mmgenrec.prompts import SEQREC_TEMPLATES
from test_finetune import K, KillAt, data, files  # noqa: F401  (the module's data fixture)

REPO = Path(__file__).resolve().parents[1]
TRAIN = dict(batch_size=8, lr=1e-2, device="cpu", logging_steps=1, seed=5)
SMALL = {"seqrec": {"weight": 0.3, "templates": [0]}, "mmitem2index": {"weight": 0.5}}


def real_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def validate(cfg: dict) -> None:
    from snakemake.utils import validate as smk_validate

    smk_validate(copy.deepcopy(cfg), str(REPO / "config" / "schema.yaml"))


def test_schema_takes_every_seqrec_template_and_no_more():
    cfg = real_config()
    cfg["evaluate"]["template_ids"] = list(range(len(SEQREC_TEMPLATES)))
    validate(cfg)
    cfg["evaluate"]["template_ids"] = [len(SEQREC_TEMPLATES)]
    with pytest.raises(Exception, match="template_ids|maximum"):
        validate(cfg)


def test_schema_refuses_a_warmup_ratio_of_one():
    cfg = real_config()
    cfg["finetune"]["warmup_ratio"] = 0.99
    validate(cfg)
    cfg["finetune"]["warmup_ratio"] = 1.0
    with pytest.raises(Exception, match="warmup_ratio|exclusiveMaximum|1"):
        validate(cfg)


class LearningRates(TrainerCallback):
    def __init__(self):
        self.lrs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "learning_rate" in logs:
            self.lrs.append(logs["learning_rate"])


def test_warmup_ratio_is_a_fraction_of_the_steps(tiny, data, tmp_path, one_torch_thread):  # noqa: F811
    """8 steps, ratio 0.25: linear warm-up over ceil(0.25 x 8) = 2 steps, then cosine to 0 over the other 6 (the
    rate logged with optimizer step s + 1 is the one that step used, lr x lambda(s))."""
    rec = LearningRates()
    finetune(tiny, tmp_path / "m" / "model", tasks=SMALL, max_steps=8, warmup_ratio=0.25, callbacks=(rec,),
             **files(data), **TRAIN)
    lam = [s / 2 if s < 2 else 0.5 * (1 + math.cos(math.pi * (s - 2) / 6)) for s in range(8)]
    assert rec.lrs == pytest.approx([TRAIN["lr"] * v for v in lam], rel=1e-6, abs=1e-12)
    with pytest.raises(ValueError, match="warmup_ratio"):  # transformers would read 1.0 as "1 step"
        finetune(tiny, tmp_path / "n" / "model", tasks=SMALL, max_steps=2, warmup_ratio=1.0, **files(data), **TRAIN)


@pytest.mark.parametrize("change, message", [
    (lambda ix: ix.pop("5"), "item 5 is missing"),  # a gap in the ids
    (lambda ix: ix.pop("23"), "item 23 is not in"),  # a valid index of 23 items, but users buy item 23
    (lambda ix: ix.__setitem__("3", ["<b_1>", "<a_2>"]), "item 3: token 0"),  # levels out of order
    (lambda ix: ix.__setitem__("4", ["<a_1>"]), "item 4: 1 tokens"),  # ragged
    (lambda ix: ix.__setitem__("5", ["<a_1>", f"<b_{K}>"]), "outside the codebook"),
])
def test_training_validates_the_index_like_evaluation(tiny, data, tmp_path, change, message):  # noqa: F811
    index = json.loads((data / "index.json").read_text())
    change(index)
    bad = tmp_path / "index.json"
    bad.write_text(json.dumps(index))
    with pytest.raises(InputError, match=message) as err:
        finetune(tiny, tmp_path / "m" / "model", tasks=SMALL, max_steps=1, **dict(files(data), index_json=bad),
                 **TRAIN)
    assert str(bad) in str(err.value)
    assert not (tmp_path / "m").exists()  # refused before any checkpoint folder or model


def test_fingerprint_covers_every_argument_that_changes_the_model(data, tmp_path):  # noqa: F811
    """Every finetune() parameter except the listed output/logging ones changes the fingerprint (so a renamed or new
    setting cannot be forgotten); for the input files and the image folder, their content does, not their path."""
    d = tmp_path / "d"
    shutil.copytree(data, d)
    params = inspect.signature(finetune).parameters
    base = {name: p.default for name, p in params.items() if p.default is not inspect.Parameter.empty}
    base.update(model_dir="m", out_dir="o", **{k: str(v) for k, v in files(d).items()})
    ref = run_fingerprint(base)
    assert ref == run_fingerprint(dict(base))  # deterministic
    assert set(NOT_FINGERPRINTED) <= set(params)
    paths = {k for k in files(d) if k != "codebook_size"}
    for name in set(params) - paths:
        same = run_fingerprint(dict(base, **{name: ["something else", 7]})) == ref
        assert same == (name in NOT_FINGERPRINTED), name
    moved = tmp_path / "moved"  # the same files elsewhere: same fingerprint
    shutil.copytree(d, moved)
    assert run_fingerprint(dict(base, **{k: str(v) for k, v in files(moved).items()})) == ref
    for name in sorted(paths - {"image_dir"}):
        Path(base[name]).write_text(Path(base[name]).read_text() + " ")
        assert run_fingerprint(base) != ref, name
        ref = run_fingerprint(base)
    Image.new("RGB", (40, 40), (1, 2, 3)).save(d / "images" / "0.jpg")  # same name, other picture
    assert run_fingerprint(base) != ref


def test_checkpoints_are_discarded_when_an_image_changes(tiny, data, tmp_path, one_torch_thread):  # noqa: F811
    d = tmp_path / "data"
    shutil.copytree(data, d)
    out = tmp_path / "run" / "model"
    mix = {"mmitem2index": {"weight": 1.0}}
    with pytest.raises(KeyboardInterrupt):
        finetune(tiny, out, tasks=mix, max_steps=3, save_steps=2, callbacks=(KillAt(2),), **files(d), **TRAIN)
    Image.new("RGB", (48, 40), (0, 0, 0)).save(d / "images" / "2.jpg")  # same file name, other picture
    finetune(tiny, out, tasks=mix, max_steps=3, save_steps=2, **files(d), **TRAIN)
    assert json.loads((out / "train_log.json").read_text())["stages"][0]["resumed_from"] is None
