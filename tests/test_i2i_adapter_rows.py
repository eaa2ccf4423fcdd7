"""I2I reads each finetuned adapter's item-token rows from its safetensors file (issue 18, item 6): the rows read
from the file equal the rows of the model loaded with the adapter, for untied and tied embeddings, and no model
is loaded to score the ``tokens:<method>`` source."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmgenrec.data.synthetic import vocabulary_corpus

from mmgenrec.evaluate.i2i import adapter_token_rows, evaluate_i2i, finetuned_token_vectors, i2i_metrics
from mmgenrec.finetune.train import prepare_model
from mmgenrec.io import InputError, write_json
from mmgenrec.models.item_tokens import item_vocabulary
from mmgenrec.models.loading import load_finetuned
from mmgenrec.models.tiny import build_tiny_qwen25vl

INDEX = {i: [f"<a_{i % 4}>", f"<b_{i // 4}>"] for i in range(12)}


def save_adapter(base, out, seed):
    """prepare_model's adapter with its new rows (and LoRA B) set to random values, saved as finetune saves it."""
    model, processor, meta = prepare_model(base, INDEX, item_vocabulary(INDEX, 4), device="cpu", seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    write_json(out / "token_meta.json", meta)
    return out


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def adapter(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("a")
    base = build_tiny_qwen25vl(d / "base", vocabulary_corpus(), vocab_size=600, hidden_size=64, num_layers=1,
                               num_heads=2, num_kv_heads=1, intermediate_size=128, vision_depth=1,
                               vision_hidden_size=32, tie_word_embeddings=request.param, seed=0)
    return base, save_adapter(base, d / "adapter", seed=3)


def test_rows_from_the_file_equal_the_loaded_models_rows(adapter, one_torch_thread):
    base, out = adapter
    model, processor, meta = load_finetuned(base, out, device="cpu")
    weight = model.get_input_embeddings().weight.detach().numpy()
    rows = adapter_token_rows(out)
    lo, hi = meta["new_token_ids"]
    assert sorted(rows) == list(range(lo, hi))
    for t, row in rows.items():
        np.testing.assert_array_equal(row, weight[t])
    vocab = processor.tokenizer.get_vocab()
    want = np.stack([weight[[vocab[t] for t in INDEX[i]]].mean(0) for i in range(len(INDEX))])
    np.testing.assert_allclose(finetuned_token_vectors(out, INDEX), want, rtol=1e-6, atol=1e-7)


def test_evaluate_i2i_scores_adapters_without_loading_a_model(adapter, tmp_path, monkeypatch):
    base, out = adapter
    rng = np.random.default_rng(0)
    np.save(tmp_path / "raw.npy", rng.normal(size=(12, 8)).astype(np.float32))
    write_json(tmp_path / "inter.json", {str(u): [int(x) for x in rng.choice(12, 6, replace=False)] for u in range(8)})
    write_json(tmp_path / "index.json", {str(k): v for k, v in INDEX.items()})

    def no_model(*a, **k):
        raise AssertionError("I2I loaded a model")

    import mmgenrec.models.loading as loading

    monkeypatch.setattr(loading, "load_vlm", no_model)
    monkeypatch.setattr(loading, "load_finetuned", no_model)
    res = evaluate_i2i(tmp_path / "inter.json", tmp_path / "raw.npy", tmp_path / "index.json", tmp_path / "m.json",
                       base_dir=base, adapters={"ours": out})
    from mmgenrec.evaluate.i2i import cooccurrence_labels

    seqs = json.loads((tmp_path / "inter.json").read_text())
    labels = cooccurrence_labels([s[:-2] for s in seqs.values()], 12)
    assert res["sources"]["tokens:ours"] == i2i_metrics(finetuned_token_vectors(out, INDEX), labels)


def test_an_adapter_without_token_rows_is_refused(adapter, tmp_path):
    from safetensors.torch import load_file, save_file

    _, out = adapter
    import shutil

    shutil.copytree(out, tmp_path / "a")
    tensors = {k: v for k, v in load_file(str(out / "adapter_model.safetensors")).items() if "token" not in k}
    save_file(tensors, str(tmp_path / "a" / "adapter_model.safetensors"))
    with pytest.raises(InputError, match="no trainable embedding rows"):
        adapter_token_rows(tmp_path / "a")
