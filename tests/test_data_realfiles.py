"""Findings on real Amazon-2018 files: Magazine_Subscriptions' scraped-HTML titles (the real metadata file, reviews
written in the published format over its asins), empty metadata / review files on the ``local`` source."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from mmgenrec.data.prepare import prepare_category
from mmgenrec.data.sources import prepare_source
from mmgenrec.io import InputError

MAGAZINE = "meta_Magazine_Subscriptions.imageURL-variant.json.gz"


def _magazine_reviews(meta_path, out):
    """30 asins whose every metadata line has the '<span' title (and a plain description), 3 asins with a real
    title, 2 asins absent from the metadata; 40 users x 8 of the 33 items (ring), 5 reviews of each absent one."""
    lines: dict[str, list[dict]] = {}
    with gzip.open(meta_path, "rt") as f:
        for line in f:
            rec = json.loads(line)
            lines.setdefault(rec["asin"], []).append(rec)
    span = [a for a, recs in lines.items() if all(r.get("title", "").startswith("<span class=") for r in recs)
            and recs[0].get("description") and re.fullmatch(r"[\w ,.'-]{60,}", recs[0]["description"][0][:80])]
    titled = [a for a, recs in lines.items() if re.fullmatch(r"[A-Za-z][\w ,.'&-]{3,}", recs[0].get("title", ""))]
    items = span[:30] + titled[:3]
    assert len(items) == 33
    reviews = []
    for u in range(40):
        for j in range(8):
            reviews.append({"overall": 5.0, "reviewerID": f"U{u:03d}", "asin": items[(u + j) % 33],
                            "unixReviewTime": 1_500_000_000 + 1000 * j + u})
    for k, asin in enumerate(("B0NOMETA01", "B0NOMETA02")):
        reviews += [{"overall": 4.0, "reviewerID": f"U{u:03d}", "asin": asin, "unixReviewTime": 1_400_000_000 + u}
                    for u in range(5 * k, 5 * k + 5)]
    path = out / "Magazine_Subscriptions_5.json.gz"
    with gzip.open(path, "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in reviews))
    return path, {a: lines[a][0] for a in items}


def test_magazine_html_titles_are_counted_explained_and_can_fall_back(shared_data, tmp_path):
    meta = shared_data / "amazon18" / MAGAZINE
    reviews, raw = _magazine_reviews(meta, tmp_path)
    out = tmp_path / "prepared"
    with pytest.raises(InputError) as err:
        prepare_category(meta, reviews, tmp_path / "none", out, "Magazine_Subscriptions")
    msg = str(err.value)
    # 330 review lines over 35 items: the ring's reviews of the 30 '<span' items, 10 of the 2 asins without
    # metadata; the rest (the 3 titled items) go into the 5-core, where no user has 5 of them
    ring_reviews_of_span = sum(1 for u in range(40) for j in range(8) if (u + j) % 33 < 30)
    assert ("330 review lines cover 35 items: 30 of them have metadata whose title is empty once HTML is removed "
            f"({ring_reviews_of_span} reviews dropped; e.g. asin ") in msg
    assert "title '<span class=\"a-size-medium a-color-secondary\"'" in msg
    assert "2 have no metadata line (10 reviews dropped)" in msg
    assert f"{320 - ring_reviews_of_span} reviews of 3 items by" in msg and "which kept none" in msg
    assert "Set prepare.fallback_title" in msg
    failed = json.loads((out / "Magazine_Subscriptions.stats.failed.json").read_text())
    assert failed["error"] == msg
    c = failed["counts"]
    assert (c["review_lines"], c["reviewed_items"], c["reviewed_items_empty_title"], c["reviewed_items_orphan"],
            c["reviews_dropped_empty_title"], c["reviews_dropped_orphan"], c["k_core_items_in"]) == (
        330, 35, 30, 2, ring_reviews_of_span, 10, 3)
    assert c["items_dropped_empty_title"] > 2000  # the whole file: 2163 asins left with only a "<span" title
    assert not (out / "Magazine_Subscriptions.stats.json").exists()  # a failure leaves no output behind

    stats = prepare_source("local", {"meta": meta, "reviews": reviews}, out, "Magazine_Subscriptions",
                           image_dir=tmp_path / "none", fallback_title=["description", "brand"])
    c = stats["counts"]
    assert (stats["n_users"], stats["n_items"], stats["n_interactions"]) == (40, 33, 320)
    assert c["reviews_dropped_empty_title"] == 0 and c["reviews_dropped_orphan"] == 10
    assert c["items_fallback_title"] > 2000 and c["items_dropped_empty_title"] < 300
    items = {it["asin"]: it for it in json.loads((out / "Magazine_Subscriptions.item.json").read_text()).values()}
    for asin, rec in raw.items():
        title = items[asin]["title"]
        if rec["title"].startswith("<span"):  # the description's opening words, cut at a word boundary
            assert len(title) <= 123 and rec["description"][0].startswith(title.removesuffix("..."))
        else:
            assert title == rec["title"]
    assert not (out / "Magazine_Subscriptions.stats.failed.json").exists()  # removed by the successful run


@pytest.mark.parametrize("content", [b"", gzip.compress(b"")], ids=["zero_bytes", "empty_gzip"])
def test_empty_metadata_or_reviews_on_the_local_source_is_named(shared_data, tmp_path, content):
    d = shared_data / "amazon18"
    empty = tmp_path / "meta_Gift_Cards.json.gz"
    empty.write_bytes(content)
    with pytest.raises(InputError, match=re.escape(f"{empty}: the metadata file holds no records")):
        prepare_source("local", {"meta": empty, "reviews": d / "Gift_Cards_5.json.gz"}, tmp_path / "p",
                       "Gift_Cards", image_dir=tmp_path / "none")
    empty_reviews = tmp_path / "Gift_Cards_5.json.gz"
    empty_reviews.write_bytes(content)
    with pytest.raises(InputError, match=re.escape(f"{empty_reviews}: the review file holds no records")):
        prepare_source("local", {"meta": d / "meta_Gift_Cards.json.gz", "reviews": empty_reviews}, tmp_path / "p",
                       "Gift_Cards", image_dir=tmp_path / "none")
