"""Tied input/output embeddings (Qwen2.5-VL-3B ties them; issue 18, item 5): training changes only the new item
token rows of the one shared matrix, the adapter stores no full matrix, and the saved adapter reloads to the
logits of the model that was trained."""

from __future__ import annotations

import json

import pytest
import torch

from mmgenrec.data.synthetic import vocabulary_corpus
from mmgenrec.finetune.train import finetune, prepare_model
from mmgenrec.models.item_tokens import item_vocabulary, tied
from mmgenrec.models.loading import load_finetuned, load_vlm
from mmgenrec.models.tiny import build_tiny_qwen25vl
from test_finetune import K, adapter_tensors, data, files  # noqa: F401  (the module's data fixture)

MIX = {"seqrec": {"weight": 0.5, "templates": [0, 1]}, "mmitem2index": {"weight": 1.0}, "mmindex2item": {"weight": 0.5}}
TRAIN = dict(batch_size=8, lr=5e-3, weight_decay=0.1, lora_dropout=0.0, device="cpu", logging_steps=1, seed=5)


@pytest.fixture(scope="module")
def tiny_tied(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny_tied"
    build_tiny_qwen25vl(path, vocabulary_corpus(), vocab_size=600, hidden_size=64, num_layers=2, num_heads=2,
                        num_kv_heads=1, intermediate_size=128, vision_depth=1, vision_hidden_size=32,
                        tie_word_embeddings=True, seed=0)
    return path


def test_tied_model_trains_only_new_rows_and_reloads_to_the_same_logits(tiny_tied, data, tmp_path,
                                                                      one_torch_thread):  # noqa: F811
    base, _ = load_vlm(tiny_tied, device="cpu")
    assert tied(base)  # the fixture really is the tied case
    out = tmp_path / "model"
    trained, processor = finetune(tiny_tied, out, tasks=MIX, max_steps=4, **files(data), **TRAIN)
    meta = json.loads((out / "token_meta.json").read_text())
    assert meta["tied_embeddings"] is True
    n = meta["n_base_tokens"]
    tensors = adapter_tensors(out)
    assert not [k for k, v in tensors.items() if max(v.shape) >= n]  # no full embedding / LM-head matrix saved
    deltas = {k: v for k, v in tensors.items() if "trainable_tokens_delta" in k}
    assert deltas and all(v.shape[0] == meta["n_new_tokens"] for v in deltas.values())

    model, _, _ = load_finetuned(tiny_tied, out, device="cpu")
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert tied(model) or torch.equal(emb, head)  # still one matrix after merging
    assert torch.equal(emb[:n], base.get_input_embeddings().weight[:n])  # original rows bit-identical
    assert torch.equal(head[:n], base.get_output_embeddings().weight[:n])
    lo, hi = meta["new_token_ids"]
    delta = next(iter(deltas.values()))
    torch.testing.assert_close(emb[lo:hi], delta.to(emb.dtype))  # the new rows are the saved trained rows
    # the new rows moved away from their (seeded) initialisation, rebuilt here by the same preparation
    index = {int(k): v for k, v in json.loads((data / "index.json").read_text()).items()}
    init, _, _ = prepare_model(tiny_tied, index, item_vocabulary(index, K), device="cpu", seed=TRAIN["seed"])
    init_rows = init.base_model.model.get_input_embeddings().token_adapter.trainable_tokens_delta["default"]
    assert float((emb[lo:hi] - init_rows.detach()).abs().max()) > 1e-3

    ids = processor.tokenizer(["<a_1><b_2> Guitar pedal <a_3>"], return_tensors="pt")
    trained.eval()
    with torch.no_grad():
        want = trained(**ids).logits
        got = model(**ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert got[0, -1, lo:hi].abs().sum() > 0
