"""LC-Rec (kind lm_genrec): its examples, leakage, the text LM through the finetune and evaluate stages (only LoRA
and the new rows train, tied and untied), determinism, resume, and the Snakemake plan."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from mmgenrec.finetune.data import MultiTaskDataset, TextCollator
from mmgenrec.finetune.lcrec_data import build_lcrec_examples
from mmgenrec.finetune.train import finetune
from mmgenrec.models.loading import load_finetuned, load_lm
from mmgenrec.models.text_lm import PLAIN_TEMPLATE
from mmgenrec.models.tiny import build_tiny_qwen2
from mmgenrec.prompts_lcrec import LCREC_TEMPLATES, prompt_corpus
from smkrun import REPO, dry_run_jobs
from preempt import KillAt

N_ITEMS = 12
INDEX = {i: [f"<a_{i // 4}>", f"<b_{i % 4}>"] for i in range(N_ITEMS)}
ITEMS = {str(i): {"title": f"Item {i} title.", "description": f"About item {i}" if i % 3 else ""}
         for i in range(N_ITEMS)}
# items 10 and 11 are only ever valid / test targets: no training example may show or ask for them
SEQUENCES = {f"u{u}": [(u + k) % 10 for k in range(3 + u % 4)] + [10, 11] for u in range(12)}
SID = {i: "".join(t) for i, t in INDEX.items()}
TRAIN = dict(batch_size=4, lr=5e-3, weight_decay=0.1, lora_dropout=0.0, lora_r=4, lora_alpha=8, device="cpu",
             logging_steps=1, seed=3, max_history=5)
TASKS = {"seqrec": {"weight": 1.0}, "item2index": {"weight": 0.5}, "index2item": {"weight": 0.5},
         "fusionseqrec": {"weight": 0.5}}


def sid(i):
    return SID[i]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("lcdata")
    for name, obj in (("index.json", {str(k): v for k, v in INDEX.items()}), ("inter.json", SEQUENCES),
                      ("item.json", ITEMS)):
        (root / name).write_text(json.dumps(obj))
    return {"index_json": root / "index.json", "inter_json": root / "inter.json", "item_json": root / "item.json"}


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def lm(request, tmp_path_factory, one_torch_thread):
    path = tmp_path_factory.mktemp("lm") / "tiny-qwen2"
    corpus = prompt_corpus() + [f"Item {i} title. About item {i}" for i in range(N_ITEMS)]
    return build_tiny_qwen2(path, corpus, vocab_size=400, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                            intermediate_size=64, tie_word_embeddings=request.param, seed=0)


def text(example):
    return example["messages"][0]["content"][0]["text"]


def test_examples_of_a_five_item_user_are_exact():
    seqs = {"u": [3, 1, 4, 0, 2]}  # training part: 3, 1, 4
    ex = build_lcrec_examples({"seqrec": {"templates": [0]}, "fusionseqrec": {"templates": [2]},
                               "item2index": {"templates": [0]}, "index2item": {"templates": [1]}},
                              index=INDEX, sequences=seqs, items=ITEMS, max_history=20)
    seq = [(text(e), e["answer"]) for e in ex if e["task"] == "seqrec"]
    t0 = LCREC_TEMPLATES["seqrec"][0][0]
    assert sorted(seq) == sorted([(t0.format(inters="<a_0><b_3>"), "<a_0><b_1>"),
                                  (t0.format(inters="<a_0><b_3>, <a_0><b_1>"), "<a_1><b_0>")])
    fusion = sorted((text(e), e["answer"]) for e in ex if e["task"] == "fusionseqrec")
    t2 = LCREC_TEMPLATES["fusionseqrec"][2][0]
    assert fusion == sorted([(t2.format(inter_titles='"Item 3 title"'), "<a_0><b_1>"),
                             (t2.format(inter_titles='"Item 3 title", "Item 1 title"'), "<a_1><b_0>")])
    i2i = {e["answer"]: text(e) for e in ex if e["task"] == "item2index"}
    assert len(i2i) == N_ITEMS and i2i["<a_1><b_1>"] == 'Which item has the title: "Item 5 title"?'
    # index2item template 1 answers the description: items without one (0, 3, 6, 9) get no example
    descr = {text(e): e["answer"] for e in ex if e["task"] == "index2item"}
    assert len(descr) == N_ITEMS - 4 and descr["Please provide a description of item <a_0><b_1>."] == "About item 1"


def test_no_training_example_shows_or_asks_for_a_held_out_item():
    ex = build_lcrec_examples(TASKS | {"item2index": {"weight": 0.0}, "index2item": {"weight": 0.0}}, index=INDEX,
                              sequences=SEQUENCES, items=ITEMS, max_history=20, seed=1)
    assert {e["task"] for e in ex} == {"seqrec", "fusionseqrec"}
    for e in ex:
        for held_out in (10, 11):
            assert sid(held_out) not in text(e) and sid(held_out) not in e["answer"]
            assert f"Item {held_out} title" not in text(e) + e["answer"]
        target = next((i for i in range(N_ITEMS) if sid(i) == e["answer"]), None)
        if target is not None:  # an ID answer is never part of its own prompt (no repeats in these sequences)
            assert sid(target) not in text(e)


def test_collator_labels_exactly_the_answer_and_its_end(lm):
    _, proc = load_lm(lm, device="cpu")
    ex = build_lcrec_examples(TASKS, index={i: ["x"] for i in range(N_ITEMS)}, sequences=SEQUENCES, items=ITEMS,
                              seed=0)[:6]
    ds = MultiTaskDataset(proc, ex)
    assert ds[0]["prompt"].startswith(PLAIN_TEMPLATE.split("{")[0]) and ds[0]["prompt"].endswith("### Response:")
    for side in ("left", "right"):
        batch = TextCollator(proc, side)([ds[i] for i in range(len(ds))])
        for i, e in enumerate(ex):
            labelled = batch["labels"][i][batch["labels"][i] != -100]
            assert proc.tokenizer.decode(labelled) == e["answer"] + proc.tokenizer.eos_token


def train(lm, data, out, **kw):
    return finetune(lm, out, tasks=TASKS, codebook_size=4, prompt_family="lcrec", max_steps=6, save_steps=2,
                    **data, **TRAIN, **kw)


def adapter(d):
    from safetensors.torch import load_file

    return load_file(str(d / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def reference(lm, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "model"
    train(lm, data, out)
    return out


def test_only_lora_and_the_new_rows_train(reference, lm):
    meta = json.loads((reference / "token_meta.json").read_text())
    log = json.loads((reference / "train_log.json").read_text())
    n = meta["n_base_tokens"]
    assert meta["prompt_family"] == "lcrec" and meta["n_new_tokens"] == 8 and log["steps"] == 6
    assert set(log["stages"][0]["tasks"]) == set(TASKS)
    assert all("token_adapter" in name for name in log["trainable_non_lora"])
    assert not [k for k, v in adapter(reference).items() if max(v.shape) >= n]  # never the full matrices
    base, _ = load_lm(lm, device="cpu")
    model, proc, _ = load_finetuned(lm, reference, device="cpu")
    emb, out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert emb.shape[0] == out.shape[0] == len(proc.tokenizer) == n + 8
    assert torch.equal(emb[:n], base.get_input_embeddings().weight[:n])
    assert torch.equal(out[:n], base.get_output_embeddings().weight[:n])
    assert (out.data_ptr() == emb.data_ptr()) == meta["tied_embeddings"]
    base_body = {k: v for k, v in base.state_dict().items() if "embed_tokens" not in k and "lm_head" not in k}
    changed = [k for k, v in base_body.items() if not torch.equal(v, model.state_dict()[k])]
    assert changed and all(k.endswith("proj.weight") for k in changed)  # LoRA merged into the projections only


def test_same_seed_same_adapter_and_killed_run_resumes_to_it(reference, lm, data, tmp_path):
    again = tmp_path / "again" / "model"
    train(lm, data, again)
    a, b = adapter(reference), adapter(again)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    out = tmp_path / "killed" / "model"
    with pytest.raises(KeyboardInterrupt):
        train(lm, data, out, callbacks=(KillAt(4),))
    assert not out.exists() and (out.parent / "checkpoints" / "stage0" / "checkpoint-4").is_dir()
    train(lm, data, out)
    assert json.loads((out / "train_log.json").read_text())["stages"][0]["resumed_from"].endswith("checkpoint-4")
    c = adapter(out)
    assert max(float((a[k] - c[k]).abs().max()) for k in a) <= 1e-6


def test_evaluation_prompts_never_contain_the_target_and_decoding_is_valid(reference, lm, data, tmp_path,
                                                                          monkeypatch):
    import mmgenrec.evaluate.seqrec as seqrec
    from mmgenrec.methods.lm_genrec import run_evaluate_lm

    seen = []
    real = seqrec.render

    def spy(processor, messages, answer=None):
        seen.append(messages[0]["content"][0]["text"])
        return real(processor, messages, answer)

    monkeypatch.setattr(seqrec, "render", spy)
    results = {}
    for split, target, shown in (("test", 11, True), ("valid", 10, False)):
        seen.clear()
        paths = dict(metrics_path=tmp_path / f"{split}.json", topk_path=tmp_path / f"{split}.jsonl")
        results[split] = run_evaluate_lm({"num_beams": 6, "template_ids": [0, 2], "max_history": 5},
                                         {"split": split, "top_k": 5}, model_dir=lm, adapter_dir=reference,
                                         inter_json=data["inter_json"], index_json=data["index_json"],
                                         method="lcrec", codebook_size=4, **paths)
        assert len(seen) == 2 * len(SEQUENCES) and all(sid(target) not in p for p in seen)
        assert all((sid(10) in p) == shown for p in seen)  # the valid item is history only for the test split
        rows = [json.loads(line) for line in paths["topk_path"].read_text().splitlines()]
        assert all(len(set(r["topk"])) == 5 and set(r["topk"]) <= set(INDEX) for r in rows)
    assert results["test"]["invalid_beam_fraction"] == 0.0 and results["test"]["prompt_family"] == "lcrec"
    assert results["test"]["template_ids"] == ["0", "2"]
    # deterministic: the same call writes the same lists
    again = tmp_path / "again.jsonl"
    run_evaluate_lm({"num_beams": 6, "template_ids": [0, 2], "max_history": 5}, {"split": "test", "top_k": 5},
                    model_dir=lm, adapter_dir=reference, inter_json=data["inter_json"], index_json=data["index_json"],
                    method="lcrec", codebook_size=4, metrics_path=tmp_path / "m2.json", topk_path=again)
    assert again.read_text() == (tmp_path / "test.jsonl").read_text()


# --- the plan ---------------------------------------------------------------------------------------------------


def jobset(workdir, config):
    return {(j["rule"], tuple(sorted(j["wildcards"].items()))) for j in dry_run_jobs(workdir, config=config)}


@pytest.mark.slow
def test_adding_lcrec_plans_only_its_jobs(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    assert cfg["methods"]["lcrec"]["kind"] == "lm_genrec"
    without = dict(cfg, methods={k: v for k, v in cfg["methods"].items() if k != "lcrec"})
    paths = {}
    for name, c in (("with", cfg), ("without", without)):
        (tmp_path / name).mkdir()
        paths[name] = tmp_path / name / "config.yaml"
        paths[name].write_text(yaml.safe_dump(c))
    a, b = jobset(tmp_path / "with", paths["with"]), jobset(tmp_path / "without", paths["without"])
    assert b <= a
    # the categories lcrec runs on (demo_hm lists its own methods); the text-LLM id set, its view and the tiny text
    # LM stay: TIGER, MQL4Rec and the rankers use them too
    cats = [c for c, spec in cfg["categories"].items()
            if not isinstance(spec.get("methods"), list) or "lcrec" in spec["methods"]]
    assert sorted(cats) == ["demo_games", "demo_music"]
    expected = set()
    for cat in cats:
        expected |= {("finetune_lm", (("category", cat), ("method", "lcrec"))),
                     ("evaluate_lm", (("category", cat), ("method", "lcrec")))}
    assert a - b == expected
