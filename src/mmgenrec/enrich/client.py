"""Generate enriched item text through an OpenAI-compatible chat API (the official ``openai`` package).

One request per item: the item's image as a base64 data URL (when it has one) and its text, with a prompt that
asks only for facts visible in the image or stated in the text, answered as one JSON object with the four fields.

* The API key is read from the environment variable named in the config; it is never logged or written
  (``openai``/``httpx`` loggers are kept at WARNING so no request dump can carry it).
* Every accepted answer is appended to a per-category JSONL cache at once (flushed and fsynced), keyed by a hash
  of the model, the prompt, the item text and the image bytes: a rerun or a crash loses nothing and never pays
  twice; a truncated last line (a crash mid-write) is ignored.
* 429, 5xx, connection errors and timeouts are retried by the ``openai`` client itself (``max_retries``, its
  exponential backoff with jitter, honouring ``Retry-After``); a request still failing after that is recorded in
  the failures file. A malformed answer (not JSON, or not the four fields) is asked again up to ``json_retries``
  times, then recorded as a failure. Failures are not cached: the next run asks for them again.
* Token usage (prompt, completion, total) is summed over the requests of this run; the cached items' usage is
  reported separately.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

from mmgenrec.enrich import FIELDS
from mmgenrec.enrich.records import schema_problems
from mmgenrec.io import InputError, atomic_path, read_json, write_json

log = logging.getLogger(__name__)

PROMPT_VERSION = 1
SYSTEM_PROMPT = (
    "You describe products for a recommender system. Use ONLY facts that are visible in the product image or "
    "stated in the product text. Do not guess brands, model numbers, sizes, materials or compatibility that are "
    "neither visible nor stated. Answer with one JSON object and nothing else, with exactly these keys: "
    '"enhanced_title" (a clear, specific product title, string), "tags" (3 to 10 short keyword strings), '
    '"highlights" (2 to 5 short factual selling points, strings), "characteristics" (an object of attribute '
    "name to value, strings)."
)
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


class MalformedAnswer(ValueError):
    """The model's answer is not a JSON object with the four fields."""


def image_data_url(path: str | Path) -> str:
    path = Path(path)
    mime = {".png": "image/png", ".webp": "image/webp"}.get(path.suffix.lower(), "image/jpeg")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def build_messages(text: str, image_path: str | Path | None) -> list[dict]:
    content = []
    if image_path is not None:
        content.append({"type": "image_url", "image_url": {"url": image_data_url(image_path)}})
    content.append({"type": "text", "text": f"Product text:\n{text}\n\nReturn the JSON object."})
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]


def parse_answer(content: str | None, max_list_items: int = 30) -> dict:
    """The model's message -> the four fields (code fences allowed); :class:`MalformedAnswer` otherwise."""
    if not content:
        raise MalformedAnswer("empty answer")
    m = _FENCE.match(content)
    try:
        obj = json.loads(m.group(1) if m else content)
    except json.JSONDecodeError as e:
        raise MalformedAnswer(f"not JSON ({e.msg} at char {e.pos})") from None
    if not isinstance(obj, dict):
        raise MalformedAnswer("not a JSON object")
    rec = {k: obj.get(k) for k in FIELDS}
    problems = schema_problems(rec, max_list_items)
    if problems:
        raise MalformedAnswer("; ".join(problems))
    return rec


def cache_key(model: str, text: str, image_path: str | Path | None) -> str:
    h = hashlib.sha256()
    for part in (model, str(PROMPT_VERSION), SYSTEM_PROMPT, text):
        h.update(part.encode("utf-8") + b"\0")
    if image_path is not None:
        h.update(Path(image_path).read_bytes())
    return h.hexdigest()


def read_cache(path: Path) -> dict[str, dict]:
    """key -> cached entry; lines that do not parse (a crash mid-write) are skipped and counted in the log."""
    out, bad = {}, 0
    if path.exists():
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                    out[entry["key"]] = entry
                except (json.JSONDecodeError, KeyError, TypeError):
                    bad += 1
    if bad:
        log.warning("%s: %d unreadable cache lines skipped (they will be asked again)", path, bad)
    return out


def make_client(base_url: str, api_key_env: str, timeout: float, max_retries: int):
    import openai

    for name in ("openai", "httpx", "httpcore"):  # their DEBUG dumps would carry request headers
        logging.getLogger(name).setLevel(logging.WARNING)
    key = os.environ.get(api_key_env)
    if not key:
        raise InputError(f"enrich.api_key_env: the environment variable {api_key_env} is not set (the API key)")
    return openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=max_retries)


def generate(
    items: dict[str, dict],
    image_dir: str | Path,
    cache_path: str | Path,
    failures_path: str | Path,
    usage_path: str | Path,
    *,
    base_url: str,
    model: str = "gpt-4.1",
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int = 8,
    max_retries: int = 4,
    json_retries: int = 2,
    timeout: float = 60.0,
    max_tokens: int = 800,
    temperature: float = 0.0,
    max_list_items: int = 30,
    max_text_chars: int = 4000,
) -> dict[str, dict]:
    """Enrich every item of ``items`` ({id: item.json record}); return {id: record + has_image} for the items
    that succeeded (from the cache or the API). Writes the failures (JSONL) and the usage totals (JSON)."""
    from openai import APIError, AuthenticationError, NotFoundError, PermissionDeniedError

    from mmgenrec.prompts import item_text

    image_dir, cache_path = Path(image_dir), Path(cache_path)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache = read_cache(cache_path)
    jobs, result = [], {}
    usage = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
             "cached_items": 0, "cached_total_tokens": 0, "failed_items": 0, "malformed_answers": 0}
    for iid in sorted(items, key=int):
        rec = items[iid]
        image = image_dir / rec["image"] if rec.get("image") and (image_dir / rec["image"]).is_file() else None
        text = item_text(rec, max_chars=max_text_chars)
        key = cache_key(model, text, image)
        if key in cache:
            result[iid] = {**cache[key]["enrichment"], "has_image": image is not None}
            usage["cached_items"] += 1
            usage["cached_total_tokens"] += cache[key].get("usage", {}).get("total_tokens", 0)
        else:
            jobs.append((iid, key, text, image))
    log.info("enrich: %d items, %d from the cache, %d to ask %s at %s", len(items), usage["cached_items"],
             len(jobs), model, base_url)
    if not jobs:
        _write_outputs(failures_path, [], usage_path, usage, model)
        return result

    client = make_client(base_url, api_key_env, timeout, max_retries)
    lock = threading.Lock()

    def ask(iid, text, image):
        messages = build_messages(text, image)
        last = None
        for attempt in range(json_retries + 1):
            resp = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens,
                                                  temperature=temperature, response_format={"type": "json_object"})
            u = resp.usage
            with lock:
                usage["requests"] += 1
                if u is not None:
                    usage["prompt_tokens"] += u.prompt_tokens or 0
                    usage["completion_tokens"] += u.completion_tokens or 0
                    usage["total_tokens"] += u.total_tokens or 0
            try:
                rec = parse_answer(resp.choices[0].message.content if resp.choices else None, max_list_items)
                return rec, (u.model_dump() if u is not None else {}), attempt + 1
            except MalformedAnswer as e:
                last = e
                with lock:
                    usage["malformed_answers"] += 1
                log.warning("item %s: malformed answer (attempt %d/%d): %s", iid, attempt + 1, json_retries + 1, e)
        raise last

    failures = []
    with open(cache_path, "a", encoding="utf-8") as cache_file, ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = {pool.submit(ask, iid, text, image): (iid, key, image) for iid, key, text, image in jobs}
        for fut in tqdm(as_completed(futures), total=len(futures), desc="enrich", unit=" items"):
            iid, key, image = futures[fut]
            try:
                rec, u, attempts = fut.result()
            except (AuthenticationError, PermissionDeniedError, NotFoundError) as e:  # the config is wrong: stop
                for f in futures:
                    f.cancel()
                raise InputError(f"enrich: {base_url} answered {e.status_code} for model {model!r} "
                                 f"({type(e).__name__}); check enrich.base_url / model / {api_key_env}") from None
            except (APIError, MalformedAnswer) as e:  # APIError covers status errors, timeouts, connection errors
                kind = "malformed_json" if isinstance(e, MalformedAnswer) else type(e).__name__
                failures.append({"item": iid, "error": kind, "status": getattr(e, "status_code", None),
                                 "message": str(e)[:300]})
                log.warning("item %s: failed (%s)", iid, kind)
                continue
            cache_file.write(json.dumps({"key": key, "item": iid, "model": model, "enrichment": rec, "usage": u,
                                         "attempts": attempts}, ensure_ascii=False) + "\n")
            cache_file.flush()
            os.fsync(cache_file.fileno())
            result[iid] = {**rec, "has_image": image is not None}
    usage["failed_items"] = len(failures)
    failures.sort(key=lambda f: int(f["item"]))
    _write_outputs(failures_path, failures, usage_path, usage, model)
    log.info("enrich: %d items enriched, %d failed; usage %s", len(result), len(failures), usage)
    return {k: result[k] for k in sorted(result, key=int)}


def _write_outputs(failures_path, failures, usage_path, usage, model) -> None:
    with atomic_path(failures_path) as tmp:
        tmp.write_text("".join(json.dumps(f, ensure_ascii=False) + "\n" for f in failures), encoding="utf-8")
    write_json(usage_path, {"model": model, **usage})


def load_cached_items(cache_path: str | Path) -> dict:
    """{item id: enrichment} of a cache file (for inspection)."""
    return {e["item"]: e["enrichment"] for e in read_cache(Path(cache_path)).values()}


__all__ = ["generate", "parse_answer", "build_messages", "cache_key", "read_cache", "read_json"]
