"""Enrichment checks on hand-made good and bad records: each flag fires on its bad case and not on the good one;
thresholds fail with a message naming the worst items; provided files keyed by item id or asin; the split."""

from __future__ import annotations

import json

import pytest

from mmgenrec.enrich.checks import check_files, failure_message, run_checks
from mmgenrec.enrich.records import heldout_split, load_provided
from mmgenrec.io import InputError, read_json

ITEM = {"title": "Shure SM58 Cardioid Dynamic Vocal Microphone", "brand": "Shure", "categories": "Microphones",
        "description": "Legendary vocal mic with a 10 mm cartridge.", "image": "a.jpg"}
GOOD = {"enhanced_title": "Shure SM58 Cardioid Dynamic Vocal Microphone, Black", "tags": ["microphone", "vocal"],
        "highlights": ["Cardioid pickup pattern"], "characteristics": {"Brand": "Shure", "Model": "SM58",
                                                                        "Cartridge": "10mm"}, "has_image": True}


def items_and(rec, n_good=9):
    """One item with ``rec`` (id 0) and ``n_good`` distinct good items (ids 1..n)."""
    items, enriched = {"0": ITEM}, {"0": rec}
    for i in range(1, n_good + 1):
        items[str(i)] = {**ITEM, "title": f"Shure Mic{i} Vocal Microphone", "description": "A mic."}
        enriched[str(i)] = {**GOOD, "enhanced_title": f"Shure Mic{i} Vocal Microphone",
                            "characteristics": {"Brand": "Shure", "Model": f"Mic{i}"}}
    return items, enriched


def flags(rec):
    return {k: "0" in v for k, v in run_checks(*items_and(rec))["flags"].items()}


def test_good_record_raises_no_flag():
    report = run_checks(*items_and(GOOD))
    assert flags(GOOD) == {"schema": False, "unfaithful": False, "contradiction": False, "duplicate": False}
    assert report["ok"] and failure_message(report) is None
    assert report["checks"]["coverage"]["value"] == 1.0
    assert report["lengths"]["tags_entries"]["median"] == 2


@pytest.mark.parametrize("change, reason", [
    ({"enhanced_title": ""}, "enhanced_title"),
    ({"tags": []}, "tags: empty"),
    ({"tags": "microphone"}, "tags: expected a list"),
    ({"highlights": ["ok", 3]}, "highlights: every entry"),
    ({"characteristics": 5}, "characteristics: expected"),
    ({"characteristics": {"Colour": ""}}, "characteristics: every value"),
    ({"tags": [f"t{i}" for i in range(31)]}, "31 entries"),
    ({"has_image": "yes"}, "has_image"),
])
def test_schema_flag(change, reason):
    rec = {**GOOD, **change}
    report = run_checks(*items_and(rec))
    assert report["flags"]["schema"] == ["0"]
    assert reason in report["checks"]["schema"]["worst"][0]["why"]
    assert "0" not in report["flags"]["unfaithful"]  # an invalid record is not judged further


def test_missing_field_is_a_schema_error():
    rec = {k: v for k, v in GOOD.items() if k != "highlights"}
    assert flags(rec)["schema"]


@pytest.mark.parametrize("change, claim", [
    ({"enhanced_title": "Shure SM7B Cardioid Dynamic Vocal Microphone"}, "sm7b"),       # model number made up
    ({"characteristics": {"Brand": "Shure", "Cable": "XLR3 cable"}}, "xlr3"),           # in a characteristic
    ({"characteristics": {"Brand": "Sennheiser"}}, "Sennheiser"),                       # brand made up
    ({"characteristics": {"Brand": "Shure", "Weight": "298 grams"}}, "298"),            # 3+ digit number
])
def test_faithfulness_flag_fires(change, claim):
    report = run_checks(*items_and({**GOOD, **change}))
    assert report["flags"]["unfaithful"] == ["0"]
    assert claim in report["checks"]["faithfulness"]["worst"][0]["why"]


def test_faithfulness_ignores_formatting_of_supported_claims():
    # "10 mm" in the source supports "10mm"; "sm-58" is SM58; plain words are not claims
    rec = {**GOOD, "enhanced_title": "Shure sm-58 dynamic mic", "characteristics": ["10mm cartridge", "vocal"]}
    assert not flags(rec)["unfaithful"]


def test_contradiction_flag_fires_and_does_not():
    other = {**GOOD, "enhanced_title": "Yamaha Digital Piano Keyboard", "characteristics": ["88 keys"]}
    report = run_checks(*items_and(other))
    assert report["flags"]["contradiction"] == ["0"]
    assert "Yamaha Digital Piano" in report["checks"]["contradiction"]["worst"][0]["why"]
    # low overlap but the same brand: a rewrite, not a contradiction
    assert not flags({**GOOD, "enhanced_title": "Shure stage mic", "characteristics": ["vocal"]})["contradiction"]
    # the brand is missing but the title overlaps well: not a contradiction
    assert not flags({**GOOD, "enhanced_title": "SM58 Cardioid Dynamic Vocal Microphone",
                      "characteristics": ["vocal"]})["contradiction"]
    # a brand characteristic naming another brand, with low overlap: a contradiction
    assert flags({**GOOD, "enhanced_title": "Shure piano bench", "characteristics": {"Brand": "Yamaha"}})[
        "contradiction"]


def test_duplicate_flag_fires_only_across_items():
    items, enriched = items_and(GOOD)
    assert run_checks(items, enriched)["flags"]["duplicate"] == []
    enriched["1"] = json.loads(json.dumps(enriched["0"]))
    enriched["1"]["has_image"] = False  # has_image is not part of the comparison
    report = run_checks(items, enriched)
    assert report["flags"]["duplicate"] == ["0", "1"]
    assert report["checks"]["duplicates"]["value"] == pytest.approx(0.2)


def test_coverage_and_thresholds_name_the_worst_items(tmp_path):
    items, enriched = items_and({**GOOD, "enhanced_title": "Shure SM7B X99 Microphone"})
    items["10"] = {**ITEM, "title": "Uncovered"}
    report = run_checks(items, enriched, min_coverage=0.95, max_unfaithful_rate=0.05)
    assert report["checks"]["coverage"]["value"] == pytest.approx(10 / 11)
    assert not report["checks"]["coverage"]["ok"] and not report["checks"]["faithfulness"]["ok"]
    msg = failure_message(report, "Toy")
    assert "coverage 0.909 < 0.95" in msg and "item 10: no valid enrichment" in msg
    assert "faithfulness 0.100 > 0.05" in msg and "item 0: not in the source text: sm7b, x99" in msg
    # the same through the files: the reports are written, then the job fails with the message
    (tmp_path / "item.json").write_text(json.dumps(items))
    (tmp_path / "enriched.json").write_text(json.dumps(enriched))
    with pytest.raises(InputError, match="item 0: not in the source text"):
        check_files(tmp_path / "item.json", tmp_path / "enriched.json", tmp_path / "c.json", tmp_path / "c.md", "Toy",
                    max_unfaithful_rate=0.05)
    assert "| faithfulness | 0.100 | 0.05 | NO |" in (tmp_path / "c.md").read_text()
    report = check_files(tmp_path / "item.json", tmp_path / "enriched.json", tmp_path / "c.json", tmp_path / "c.md",
                         "Toy", min_coverage=0.5)
    assert read_json(tmp_path / "c.json")["checks"]["faithfulness"]["flagged"] == 1 and report["ok"]


def test_load_provided_by_item_id_and_by_asin(tmp_path):
    (tmp_path / "item.json").write_text(json.dumps({"0": ITEM, "1": ITEM}))
    (tmp_path / "item2id").write_text("B0A\t0\nB0B\t1\n")
    (tmp_path / "by_id.json").write_text(json.dumps({"1": GOOD, "0": GOOD}))
    (tmp_path / "by_asin.json").write_text(json.dumps({"B0B": GOOD, "B0DROPPED": GOOD}))
    assert list(load_provided(tmp_path / "by_id.json", tmp_path / "item.json")) == ["0", "1"]
    assert list(load_provided(tmp_path / "by_asin.json", tmp_path / "item.json", keys="asin",
                              item2id=tmp_path / "item2id")) == ["1"]
    (tmp_path / "bad.json").write_text(json.dumps({"7": GOOD}))
    with pytest.raises(InputError, match=r"bad\.json: item '7' is not an item"):
        load_provided(tmp_path / "bad.json", tmp_path / "item.json")


def test_heldout_split_is_seeded_disjoint_and_sized():
    ids = [str(i) for i in range(50)]
    a, b = heldout_split(ids, 0.1, 0), heldout_split(ids, 0.1, 0)
    assert a == b and len(a["heldout"]) == 5 and not set(a["train"]) & set(a["heldout"])
    assert sorted(a["train"] + a["heldout"], key=int) == ids
    assert heldout_split(ids, 0.1, 1) != a
    assert heldout_split(ids, 0.0, 0)["heldout"] == []
