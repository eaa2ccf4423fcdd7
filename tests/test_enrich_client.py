"""The API client against a fake OpenAI-compatible server on 127.0.0.1: success, 429 then success, 500, malformed
JSON, timeout, the cache (a second run sends nothing), and the key never appearing in logs or outputs."""

from __future__ import annotations

import base64
import json
import logging
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI  # noqa: E402

from mmgenrec import logs  # noqa: E402
from mmgenrec.enrich.client import MalformedAnswer, parse_answer  # noqa: E402
from mmgenrec.enrich.run import build_enrichment  # noqa: E402
from mmgenrec.io import InputError, read_json  # noqa: E402

KEY = "sk-test-DO-NOT-LEAK-7f3a9c"
ITEMS = {
    "0": {"title": "Alpha Widget", "brand": "Alpha", "categories": "Tools", "description": "A widget.", "image": "0.jpg"},
    "1": {"title": "Beta Gadget", "brand": "Beta", "categories": "Tools", "description": "A gadget.", "image": None},
    "2": {"title": "Gamma Gizmo", "brand": "Gamma", "categories": "Tools", "description": "A gizmo.", "image": None},
    "3": {"title": "Delta Doohickey", "brand": "Delta", "categories": "Tools", "description": "A thing.", "image": None},
}


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_KEY_ENV", KEY)
    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "images" / "0.jpg")
    (tmp_path / "item.json").write_text(json.dumps(ITEMS))
    return tmp_path


def run(env: Path, fake: FakeOpenAI, out: str = "out", **kw):
    cfg = dict(base_url=fake.base_url, model="fake-model", api_key_env="FAKE_KEY_ENV", concurrency=2,
               max_retries=1, json_retries=1, timeout=1.0)
    cfg.update(kw)
    return build_enrichment(env / "item.json", env / out, source="api", image_dir=env / "images",
                            cache_path=env / "cache" / "fake.jsonl", heldout_fraction=0.25, split_seed=0, **cfg)


def test_success_image_usage_split_and_second_run_sends_nothing(env):
    with FakeOpenAI() as fake:
        run(env, fake)
        assert len(fake.requests) == 4
        req0 = next(r for r in fake.requests if "Alpha Widget" in r["text"])
        url = req0["body"]["messages"][-1]["content"][0]["image_url"]["url"]
        assert url.startswith("data:image/jpeg;base64,")
        assert base64.b64decode(url.split(",", 1)[1]) == (env / "images" / "0.jpg").read_bytes()
        assert "ONLY facts that are visible" in req0["body"]["messages"][0]["content"]
        assert req0["auth"] == f"Bearer {KEY}"  # the key was sent ...
        enriched = read_json(env / "out" / "enriched.json")
        assert sorted(enriched) == ["0", "1", "2", "3"]
        assert enriched["0"]["enhanced_title"] == "Alpha Widget (enhanced)" and enriched["0"]["has_image"] is True
        assert enriched["1"]["has_image"] is False
        usage = read_json(env / "out" / "usage.json")
        assert (usage["requests"], usage["total_tokens"], usage["prompt_tokens"]) == (4, 4 * 120, 4 * 100)
        split = read_json(env / "out" / "split.json")
        assert len(split["heldout"]) == 1 and sorted(split["train"] + split["heldout"]) == ["0", "1", "2", "3"]
        assert (env / "out" / "failures.jsonl").read_text() == ""

        run(env, fake, out="out2")  # second run: everything from the cache
        assert len(fake.requests) == 4
        assert read_json(env / "out2" / "enriched.json") == enriched
        usage2 = read_json(env / "out2" / "usage.json")
        assert (usage2["requests"], usage2["cached_items"], usage2["cached_total_tokens"]) == (0, 4, 4 * 120)


def test_429_then_success_500_malformed_and_timeout(env):
    script = {"Alpha Widget": ["429", "ok"], "Beta Gadget": ["500"], "Gamma Gizmo": ["bad_json"],
              "Delta Doohickey": ["stall"]}
    with FakeOpenAI(script, stall_s=3.0) as fake:
        run(env, fake, max_retries=1, json_retries=1, timeout=0.5)
        assert fake.count("Alpha Widget") == 2           # 429, then the retry succeeds
        assert fake.count("Beta Gadget") == 2            # 500, retried once (max_retries=1), recorded
        assert fake.count("Gamma Gizmo") == 2            # malformed, asked again once (json_retries=1), recorded
        assert fake.count("Delta Doohickey") == 2        # timed out twice
        assert sorted(read_json(env / "out" / "enriched.json")) == ["0"]
        failures = {f["item"]: f for f in map(json.loads, (env / "out" / "failures.jsonl").read_text().splitlines())}
        assert sorted(failures) == ["1", "2", "3"]
        assert failures["1"]["status"] == 500 and failures["1"]["error"] == "InternalServerError"
        assert failures["2"]["error"] == "malformed_json"
        assert failures["3"]["error"] == "APITimeoutError"
        usage = read_json(env / "out" / "usage.json")
        assert (usage["failed_items"], usage["malformed_answers"]) == (3, 2)
        assert usage["total_tokens"] == 3 * 120  # 1 good answer + 2 malformed answers were billed

        # The next run asks only for the failed items (now answered), never again for the cached one.
        fake.script = {}
        before = len(fake.requests)
        run(env, fake, out="out2")
        assert len(fake.requests) - before == 3 and fake.count("Alpha Widget") == 2
        assert sorted(read_json(env / "out2" / "enriched.json")) == ["0", "1", "2", "3"]


def test_malformed_then_good_answer_is_accepted(env):
    with FakeOpenAI({"Gamma Gizmo": ["bad_json", "ok"]}) as fake:
        run(env, fake)
        assert fake.count("Gamma Gizmo") == 2
        assert "2" in read_json(env / "out" / "enriched.json")


def test_a_crash_mid_write_loses_only_the_torn_line(env):
    with FakeOpenAI() as fake:
        run(env, fake)
        cache = env / "cache" / "fake.jsonl"
        lines = cache.read_text().splitlines(keepends=True)
        cache.write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])  # torn last line
        run(env, fake, out="out2")
        assert len(fake.requests) == 5  # only the torn item is asked again


def test_key_never_in_logs_or_outputs(env):
    log = env / "logs" / "enrich.log"
    logs.setup(str(log))
    try:
        logging.getLogger().setLevel(logging.DEBUG)  # even at DEBUG
        with FakeOpenAI({"Beta Gadget": ["500"]}) as fake:
            run(env, fake)
            assert all(r["auth"] == f"Bearer {KEY}" for r in fake.requests)
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        logging.basicConfig(level=logging.WARNING, force=True)
    files = [p for p in env.rglob("*") if p.is_file() and p.suffix != ".jpg"]
    assert log in files and log.stat().st_size > 0
    for p in files:
        assert KEY not in p.read_text(errors="replace"), p


def test_missing_key_is_a_clear_error(env, monkeypatch):
    monkeypatch.delenv("FAKE_KEY_ENV")
    with FakeOpenAI() as fake, pytest.raises(InputError, match="FAKE_KEY_ENV is not set"):
        run(env, fake)


@pytest.mark.parametrize("content, ok", [
    ('{"enhanced_title": "T", "tags": ["a"], "highlights": ["b"], "characteristics": {"k": "v"}}', True),
    ('```json\n{"enhanced_title": "T", "tags": ["a"], "highlights": ["b"], "characteristics": ["c"]}\n```', True),
    ('{"enhanced_title": "", "tags": ["a"], "highlights": ["b"], "characteristics": ["c"]}', False),
    ('{"enhanced_title": "T", "tags": "a", "highlights": ["b"], "characteristics": ["c"]}', False),
    ('{"enhanced_title": "T", "tags": ["a"], "highlights": ["b"]}', False),
    ("[1, 2]", False), ("not json", False), ("", False),
])
def test_parse_answer(content, ok):
    if ok:
        assert set(parse_answer(content)) == {"enhanced_title", "tags", "highlights", "characteristics"}
    else:
        with pytest.raises(MalformedAnswer):
            parse_answer(content)
