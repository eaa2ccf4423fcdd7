"""Text-generation metrics (hand-computed values), references, held-out selection, and tiny BLIP-2/InstructBLIP
baselines end to end (models built from config, nothing downloaded)."""

import json

import pytest
from PIL import Image

from mmgenrec.evaluate.textgen import evaluate_textgen, heldout_items, reference_text, text_metrics
from mmgenrec.io import InputError

CORPUS = ["guitar strings capo drum sticks keyboard pedal", "enhanced title tags highlights characteristics"] * 20


def test_text_metrics_hand_values():
    perfect = text_metrics(["the red guitar capo"], ["the red guitar capo"])
    assert perfect["BLEU"] == pytest.approx(100.0) and perfect["chrF"] == pytest.approx(100.0)
    assert perfect["ROUGE-1"] == perfect["ROUGE-2"] == perfect["ROUGE-L"] == pytest.approx(1.0)
    m = text_metrics(["the cat sat", "blue drum"], ["the cat sat on the mat", "red guitar"])
    # pair 1: unigram P = 3/3, R = 3/6 -> F1 2/3; bigrams P 2/2, R 2/5 -> 4/7; LCS = 3 -> 2/3. pair 2: nothing shared
    assert m["ROUGE-1"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["ROUGE-2"] == pytest.approx((4 / 7 + 0) / 2)
    assert m["ROUGE-L"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["BLEU"] == 0.0  # no 4-gram of any hypothesis matches: corpus BLEU is 0
    assert 0 < m["chrF"] < 100 and m["n"] == 2
    assert "BERTScore-F1" not in m  # off unless an encoder folder is configured
    with pytest.raises(ValueError):
        text_metrics(["a"], ["a", "b"])


def test_bertscore_with_a_local_tiny_encoder(tmp_path):
    from transformers import BertConfig, BertModel

    from mmgenrec.models.tiny import build_tokenizer

    tok = build_tokenizer(CORPUS, 300)
    tok.cls_token, tok.sep_token = "<|im_start|>", "<|im_end|>"
    BertModel(BertConfig(vocab_size=len(tok) + 10, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, pad_token_id=tok.pad_token_id)).save_pretrained(tmp_path / "enc")
    tok.save_pretrained(tmp_path / "enc")
    same = text_metrics(["guitar strings capo"], ["guitar strings capo"], bertscore_model=str(tmp_path / "enc"))
    assert same["BERTScore-F1"] == pytest.approx(1.0, abs=1e-5)
    diff = text_metrics(["drum"], ["guitar strings capo"], bertscore_model=str(tmp_path / "enc"))
    assert diff["BERTScore-F1"] < 1.0
    with pytest.raises(FileNotFoundError):
        text_metrics(["a"], ["a"], bertscore_model=str(tmp_path / "nothing"))


def test_reference_text_and_heldout_selection(tmp_path):
    entry = {"enhanced_title": "Kyser Capo", "tags": ["capo", "guitar"], "highlights": [],
             "characteristics": {"material": "steel", "colour": ""}, "has_image": True}
    assert reference_text(entry) == ("Enhanced title: Kyser Capo\nTags: capo | guitar\nHighlights: \n"
                                     "Characteristics: material: steel")
    items = {"0": {"title": "a"}, "1": {"title": "b"}, "2": {"title": "c"}}
    (tmp_path / "e.json").write_text(json.dumps({"0": entry, "2": {"tags": []}}))
    (tmp_path / "s.json").write_text(json.dumps({"train": ["1"], "heldout": ["2", "0"]}))
    assert heldout_items(tmp_path / "e.json", tmp_path / "s.json", items) == ["0"]  # "2" has no non-empty field
    (tmp_path / "s.json").write_text(json.dumps({"train": [], "heldout": ["9"]}))
    with pytest.raises(InputError, match=r"s.json: heldout\[0\]: item 9"):
        heldout_items(tmp_path / "e.json", tmp_path / "s.json", items)


@pytest.fixture(scope="module")
def enrich_fixture(tmp_path_factory):
    root = tmp_path_factory.mktemp("tg")
    (root / "images").mkdir()
    items, enriched = {}, {}
    for i in range(5):
        items[str(i)] = {"title": f"Guitar capo {i}", "description": "steel capo", "asin": f"B{i}",
                         "image": f"B{i}.jpg" if i % 2 == 0 else None}
        if i % 2 == 0:
            Image.new("RGB", (40, 30), (20 * i, 90, 30)).save(root / "images" / f"B{i}.jpg")
        enriched[str(i)] = {"enhanced_title": f"Steel guitar capo {i}", "tags": ["capo", "guitar"],
                            "highlights": ["quick change"], "characteristics": {"material": "steel"}}
    (root / "item.json").write_text(json.dumps(items))
    (root / "enriched.json").write_text(json.dumps(enriched))
    (root / "split.json").write_text(json.dumps({"train": ["0", "1"], "heldout": ["2", "3", "4"]}))
    return root


@pytest.mark.parametrize("kind", ["blip2", "instructblip"])
def test_tiny_blip_baselines_end_to_end(tmp_path, enrich_fixture, kind):
    from transformers import AutoModelForImageTextToText

    from mmgenrec.models.tiny import build_tiny_blip

    model_dir = build_tiny_blip(tmp_path / kind, CORPUS, kind=kind)
    cls = type(AutoModelForImageTextToText.from_pretrained(model_dir)).__name__
    assert cls == {"blip2": "Blip2ForConditionalGeneration", "instructblip": "InstructBlipForConditionalGeneration"}[kind]
    r = evaluate_textgen(kind, model_dir, enrich_fixture / "item.json", enrich_fixture / "images",
                         enrich_fixture / "enriched.json", enrich_fixture / "split.json", tmp_path / "m.json",
                         tmp_path / "g.jsonl", system=kind, max_items=2, max_new_tokens=5, batch_size=2,
                         device="cpu")
    gens = [json.loads(line) for line in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert [g["item"] for g in gens] == ["2", "3"]  # held-out order, max_items
    assert gens[0]["reference"].startswith("Enhanced title: Steel guitar capo 2")
    expected = text_metrics([g["generation"] for g in gens], [g["reference"] for g in gens])
    saved = json.loads((tmp_path / "m.json").read_text())
    for key in ("BLEU", "chrF", "ROUGE-1", "ROUGE-L"):
        assert saved[key] == pytest.approx(expected[key]) == pytest.approx(r[key])
    assert saved["n"] == 2 and saved["system"] == kind and saved["items_with_image"] == 1
