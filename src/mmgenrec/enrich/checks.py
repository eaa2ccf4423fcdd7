"""Checks on enriched item text: schema, coverage, lengths, duplicates, faithfulness, contradictions.

Definitions (each check has a value, a threshold from the config, and the worst items):

* **schema**: a record must have the four fields; ``enhanced_title`` a non-empty string; ``tags`` /
  ``highlights`` non-empty lists of non-empty strings with at most ``max_list_items`` entries;
  ``characteristics`` a non-empty list of strings or an object of string to string (same bound);
  ``has_image`` a boolean. Value: the share of records with a problem (``max_schema_error_rate``).
* **coverage**: the share of the category's items with a valid record (``min_coverage``).
* **duplicates**: items whose four fields (case-folded) are identical to another item's (``max_duplicate_rate``).
* **faithfulness**: *claims* are the model-number-like tokens of ``enhanced_title`` and of the characteristics'
  values (a token with a digit and a letter, like ``SM58`` or ``10mm``, or a number of 3+ digits) and the
  values of characteristics named brand / manufacturer / make / maker. A claim is *unsupported* when its
  letters and digits (case-folded, everything else removed) occur nowhere in the item's source text (title,
  brand, categories, description, likewise compacted). An item with an unsupported claim is flagged
  (``max_unfaithful_rate``).
* **contradiction** with the original title: fewer than ``min_title_overlap`` of the original title's content
  words occur in ``enhanced_title`` AND the brand differs: the item's source brand is known and appears nowhere
  in ``enhanced_title`` or the characteristics, or a brand characteristic names something that is not the source
  brand. Items without a source brand or title are not judged (``max_contradiction_rate``).
* **lengths**: distributions (min, p10, median, mean, p90, max) of the title's words and characters and of the
  number of tags, highlights and characteristics; ``has_image`` against the item's image (reported).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict

import numpy as np

from mmgenrec.enrich import FIELDS
from mmgenrec.enrich.records import schema_problems
from mmgenrec.io import InputError

_TOKEN = re.compile(r"[a-z0-9]+(?:[-./][a-z0-9]+)*")
_BRAND_KEY = re.compile(r"\b(brand|manufacturer|make|maker)\b", re.I)
STOP = frozenset("a an and the for with of to in on by at or from".split())
DEFAULTS = {"min_coverage": 0.9, "max_schema_error_rate": 0.01, "max_duplicate_rate": 0.05,
            "max_unfaithful_rate": 0.2, "max_contradiction_rate": 0.05, "min_title_overlap": 0.2,
            "max_list_items": 30, "report_items": 10}


def compact(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _values(v) -> list[str]:
    if isinstance(v, dict):
        return [x for x in v.values() if isinstance(x, str)]
    if isinstance(v, list):
        return [x for x in v if isinstance(x, str)]
    return [v] if isinstance(v, str) else []


def _source_text(item: dict) -> str:
    return " ".join(str(item.get(k) or "") for k in ("title", "brand", "categories", "description"))


def is_model_number(tok: str) -> bool:
    has_digit = any(c.isdigit() for c in tok)
    return (has_digit and any(c.isalpha() for c in tok)) or (tok.isdigit() and len(tok) >= 3)


def claims(rec: dict) -> list[str]:
    """Model-number-like tokens of the title and characteristics, and the brand characteristics."""
    out = [t for text in [rec.get("enhanced_title") or "", *_values(rec.get("characteristics"))]
           for t in tokens(text) if is_model_number(t)]
    ch = rec.get("characteristics")
    if isinstance(ch, dict):
        out += [v for k, v in ch.items() if isinstance(k, str) and _BRAND_KEY.search(k) and isinstance(v, str)]
    return list(dict.fromkeys(out))


def unsupported_claims(item: dict, rec: dict) -> list[str]:
    src = compact(_source_text(item))
    return [c for c in claims(rec) if compact(c) and compact(c) not in src]


def title_overlap(original: str, enhanced: str) -> float | None:
    orig = {t for t in tokens(original) if t not in STOP}
    if not orig:
        return None
    return len(orig & set(tokens(enhanced))) / len(orig)


def brand_conflict(item: dict, rec: dict) -> bool | None:
    brand = compact(str(item.get("brand") or ""))
    if not brand:
        return None
    stated = compact(" ".join([rec.get("enhanced_title") or "", *_values(rec.get("characteristics"))]))
    ch = rec.get("characteristics")
    named = [compact(v) for k, v in ch.items() if isinstance(k, str) and _BRAND_KEY.search(k)
             and isinstance(v, str)] if isinstance(ch, dict) else []
    return brand not in stated or any(n and n not in brand and brand not in n for n in named)


def contradiction(item: dict, rec: dict, min_title_overlap: float) -> tuple[bool | None, float | None]:
    overlap = title_overlap(str(item.get("title") or ""), rec.get("enhanced_title") or "")
    conflict = brand_conflict(item, rec)
    if overlap is None or conflict is None:
        return None, overlap
    return overlap < min_title_overlap and conflict, overlap


def _dist(values) -> dict:
    if not len(values):
        return {"n": 0}
    a = np.asarray(values, dtype=float)
    return {"n": int(a.size), "min": float(a.min()), "p10": float(np.percentile(a, 10)),
            "median": float(np.median(a)), "mean": round(float(a.mean()), 3), "p90": float(np.percentile(a, 90)),
            "max": float(a.max())}


def _check(value, threshold, ok, worst, **extra) -> dict:
    return {"value": round(float(value), 6), "threshold": threshold, "ok": bool(ok), "worst": worst, **extra}


def run_checks(items: dict[str, dict], enriched: dict[str, dict], **cfg) -> dict:
    """The checks report (see the module docstring); ``items`` is item.json, ``enriched`` enriched.json."""
    c = {**DEFAULTS, **cfg}
    n_report = c["report_items"]
    n_items, n_rec = len(items), len(enriched)
    schema = {iid: p for iid, rec in enriched.items() if (p := schema_problems(rec, c["max_list_items"]))}
    valid = {iid: rec for iid, rec in enriched.items() if iid not in schema}
    unknown = sorted((i for i in enriched if i not in items), key=str)
    if unknown:
        raise InputError(f"enriched.json: item {unknown[0]!r} is not an item of the category ({len(unknown)} such)")

    groups = defaultdict(list)
    for iid, rec in valid.items():
        key = json.dumps({f: rec[f] for f in FIELDS}, sort_keys=True, ensure_ascii=False).lower()
        groups[key].append(iid)
    dup_groups = sorted((sorted(g, key=int) for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), int(g[0])))
    n_dup = sum(len(g) for g in dup_groups)

    unfaithful, contra, judged, overlaps, image_mismatch = {}, {}, 0, {}, []
    for iid, rec in valid.items():
        item = items[iid]
        bad = unsupported_claims(item, rec)
        if bad:
            unfaithful[iid] = bad
        flag, overlap = contradiction(item, rec, c["min_title_overlap"])
        if flag is not None:
            judged += 1
            overlaps[iid] = overlap
            if flag:
                contra[iid] = overlap
        if rec["has_image"] != bool(item.get("image")):
            image_mismatch.append(iid)

    def rate(k, n):
        return k / n if n else 0.0

    coverage = rate(len(valid), n_items)
    missing = sorted((i for i in items if i not in valid), key=int)
    checks = {
        "coverage": _check(coverage, c["min_coverage"], coverage >= c["min_coverage"],
                           [{"item": i, "why": "no valid enrichment"} for i in missing[:n_report]],
                           items=n_items, enriched=len(valid)),
        "schema": _check(rate(len(schema), n_rec), c["max_schema_error_rate"],
                         rate(len(schema), n_rec) <= c["max_schema_error_rate"],
                         [{"item": i, "why": "; ".join(p)} for i, p in sorted(schema.items(), key=lambda x: int(x[0]))
                          ][:n_report], errors=len(schema)),
        "duplicates": _check(rate(n_dup, len(valid)), c["max_duplicate_rate"],
                             rate(n_dup, len(valid)) <= c["max_duplicate_rate"],
                             [{"item": g[0], "why": f"same enrichment as items {', '.join(g[1:6])}"}
                              for g in dup_groups[:n_report]], items=n_dup, groups=len(dup_groups)),
        "faithfulness": _check(rate(len(unfaithful), len(valid)), c["max_unfaithful_rate"],
                               rate(len(unfaithful), len(valid)) <= c["max_unfaithful_rate"],
                               [{"item": i, "why": "not in the source text: " + ", ".join(v[:5])} for i, v in
                                sorted(unfaithful.items(), key=lambda x: (-len(x[1]), int(x[0])))[:n_report]],
                               flagged=len(unfaithful)),
        "contradiction": _check(rate(len(contra), judged), c["max_contradiction_rate"],
                                rate(len(contra), judged) <= c["max_contradiction_rate"],
                                [{"item": i, "why": f"title overlap {o:.2f} and a different brand: "
                                  f"{items[i].get('title')!r} vs {valid[i]['enhanced_title']!r}"}
                                 for i, o in sorted(contra.items(), key=lambda x: (x[1], int(x[0])))[:n_report]],
                                flagged=len(contra), judged=judged),
    }
    lengths = {
        "enhanced_title_words": _dist([len(r["enhanced_title"].split()) for r in valid.values()]),
        "enhanced_title_chars": _dist([len(r["enhanced_title"]) for r in valid.values()]),
        **{f"{f}_entries": _dist([len(_values(r[f])) for r in valid.values()])
           for f in ("tags", "highlights", "characteristics")},
        "title_overlap": _dist(list(overlaps.values())),
    }
    return {"ok": all(ch["ok"] for ch in checks.values()), "checks": checks, "lengths": lengths,
            "has_image_mismatch": {"items": len(image_mismatch), "examples": image_mismatch[:n_report]},
            "flags": {"schema": sorted(schema, key=int), "unfaithful": sorted(unfaithful, key=int),
                      "contradiction": sorted(contra, key=int),
                      "duplicate": sorted((i for g in dup_groups for i in g), key=int)},
            "config": {k: c[k] for k in sorted(DEFAULTS)}}


def failure_message(report: dict, name: str = "") -> str | None:
    """None when every check passes, else one message naming each failing check and its worst items."""
    parts = []
    for check, r in report["checks"].items():
        if not r["ok"]:
            cmp = "<" if check == "coverage" else ">"
            worst = "; ".join(f"item {w['item']}: {w['why']}" for w in r["worst"][:5])
            parts.append(f"{check} {r['value']:.3f} {cmp} {r['threshold']} (worst: {worst})")
    return f"enrichment checks failed{' for ' + name if name else ''}: " + " | ".join(parts) if parts else None


def checks_markdown(report: dict, name: str) -> str:
    lines = [f"### Enrichment checks: {name}", "",
             f"Overall: **{'pass' if report['ok'] else 'FAIL'}**", "",
             "| check | value | threshold | ok | worst items |", "|---|---:|---:|:-:|---|"]
    for check, r in report["checks"].items():
        worst = "; ".join(f"{w['item']}: {w['why']}" for w in r["worst"][:3]).replace("|", "/")
        lines.append(f"| {check} | {r['value']:.3f} | {r['threshold']} | {'yes' if r['ok'] else 'NO'} | {worst} |")
    lines += ["", "| length | n | min | median | mean | p90 | max |", "|---|---:|---:|---:|---:|---:|---:|"]
    for key, d in report["lengths"].items():
        if d.get("n"):
            lines.append(f"| {key} | {d['n']} | {d['min']:g} | {d['median']:g} | {d['mean']:g} | {d['p90']:g} | "
                         f"{d['max']:g} |")
    lines += ["", f"`has_image` disagrees with the item's image for {report['has_image_mismatch']['items']} items.", ""]
    return "\n".join(lines)


def check_files(item_json, enriched_json, out_json, out_md, name: str, **cfg) -> dict:
    """Run the checks on the files, write the report (JSON + Markdown), raise when a threshold is broken."""
    import logging

    from mmgenrec.io import read_json, write_json, write_text

    report = run_checks(read_json(item_json), read_json(enriched_json), **cfg)
    write_json(out_json, report)
    write_text(out_md, checks_markdown(report, name))
    message = failure_message(report, name)
    if message:
        raise InputError(f"{enriched_json}: {message}")
    logging.getLogger(__name__).info("%s: every enrichment check passes", name)
    return report
