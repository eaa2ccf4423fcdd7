"""The enrich rules end to end on the session's demo run (``demo`` in conftest): with signal the verdict is
"helps", without signal it is not; the checks pass on the faithful enrichment and flag the shuffled one; a rerun is
a no-op, and checks over their thresholds stop the rule."""

from __future__ import annotations

import pytest
import yaml

from mmgenrec.io import read_json
from smkrun import smk

TARGETS = [f"results/{c}/enrich/{f}" for c in ("demo_music", "demo_games") for f in ("checks.json", "utility.json")]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(demo):
    return demo.workdir, demo.config


def test_enrich_outputs_and_split(run):
    wd, _ = run
    for cat in ("demo_music", "demo_games"):
        items = read_json(wd / f"results/{cat}/prepared/{cat}.item.json")
        enriched = read_json(wd / f"results/{cat}/enrich/enriched.json")
        split = read_json(wd / f"results/{cat}/enrich/split.json")
        assert set(enriched) == set(items)  # keyed by our item ids (mapped from the asins)
        assert set(enriched["0"]) == {"enhanced_title", "tags", "highlights", "characteristics", "has_image"}
        assert sorted(split["train"] + split["heldout"], key=int) == sorted(enriched, key=int)
        assert len(split["heldout"]) == round(0.1 * len(enriched))
    music = read_json(wd / "results/demo_music/enrich/enriched.json")
    items = read_json(wd / "results/demo_music/prepared/demo_music.item.json")
    assert all(music[i]["enhanced_title"].startswith(items[i]["title"]) for i in items if items[i]["title"])


def test_checks_pass_on_faithful_and_flag_shuffled(run):
    wd, _ = run
    music = read_json(wd / "results/demo_music/enrich/checks.json")
    games = read_json(wd / "results/demo_games/enrich/checks.json")
    assert music["ok"] and music["checks"]["faithfulness"]["value"] == 0.0
    assert music["checks"]["contradiction"]["value"] == 0.0
    assert games["checks"]["faithfulness"]["value"] > 0.9 and games["checks"]["contradiction"]["value"] > 0.5
    assert "| faithfulness |" in (wd / "results/demo_games/enrich/checks.md").read_text()


def test_verdicts(run):
    wd, _ = run
    music = read_json(wd / "results/demo_music/enrich/utility.json")
    games = read_json(wd / "results/demo_games/enrich/utility.json")
    assert music["verdict"] == "helps", music["comparison"]
    assert music["comparison"]["ndcg@20"]["ci"][0] > 0  # the interval of the relative gain lies above 0
    assert music["arms"]["enriched"]["ndcg@20"]["mean"] > music["arms"]["original"]["ndcg@20"]["mean"]
    assert games["verdict"] != "helps", games["comparison"]
    for rep in (music, games):
        assert len(rep["seeds"]) == 3 and len(rep["comparison"]["recall@20"]["per_seed_difference"]) == 3
        assert rep["aa"]["result"]["verdict"] == "no_difference", rep["aa"]  # A/A: original vs original, other seeds
        assert rep["aa"]["seeds"] == [3, 4, 5] and rep["aa"]["draws"] == 10
    assert "Verdict: **helps**" in (wd / "results/demo_music/enrich/utility.md").read_text()


def test_failing_checks_stop_the_rule_and_a_rerun_is_a_noop(demo, tmp_path):
    config = demo.config
    assert "Nothing to be done" in smk(demo.workdir, *TARGETS, "-n", config=config).stdout
    wd = demo.copy(tmp_path / "wd")  # the failing rule below deletes its output
    cfg = yaml.safe_load(config.read_text())
    cfg["categories"]["demo_games"]["enrich"] = {"max_unfaithful_rate": 0.2}
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump(cfg))
    proc = smk(wd, "results/demo_games/enrich/checks.json", "--forcerun", "enrich_checks", config=strict, check=False)
    assert proc.returncode != 0
    log = (wd / "logs/enrich_checks/demo_games.log").read_text()
    assert "faithfulness" in log and "not in the source text" in log and "item " in log
