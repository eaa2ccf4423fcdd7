"""Synthetic raw data and the preparation stage: formats, defects handled, leave-one-out, clear errors."""

from __future__ import annotations

import gzip
import json

import pytest

from mmgenrec.data.images import image_filename, image_urls
from mmgenrec.data.prepare import clean_text, prepare_category
from mmgenrec.data.synthetic import generate_category
from mmgenrec.io import InputError


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw")
    stats = generate_category(out, "Demo", n_groups=4, items_per_group=12, n_users=150, seed=3)
    return out, stats


def _lines(path):
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def test_synthetic_files_are_raw_amazon_format(synthetic):
    out, stats = synthetic
    meta = _lines(out / "meta_Demo.json.gz")
    reviews = _lines(out / "Demo_5.json.gz")
    assert {"asin", "title", "description", "brand", "category"} <= set(meta[0])
    assert isinstance(meta[0]["description"], list) and isinstance(meta[0]["category"], list)
    with_url = [m for m in meta if "imageURLHighRes" in m]
    assert len({m["asin"] for m in meta}) - len({m["asin"] for m in with_url}) == stats["defects"]["missing_images"]
    assert {"reviewerID", "asin", "overall", "unixReviewTime", "reviewTime"} <= set(reviews[0])
    assert len(reviews) == stats["n_reviews"]
    assert len(meta) == stats["n_items"] + 1  # one duplicated line
    assert any("<" in d for m in meta for d in m["description"])  # HTML to clean
    images = sorted(p.name for p in (out / "images").iterdir())
    assert len(images) == stats["n_items"] - stats["defects"]["missing_images"]
    assert all(name.endswith(".jpg") for name in images)


def test_synthetic_is_deterministic(tmp_path):
    a = generate_category(tmp_path / "a", "X", n_groups=3, items_per_group=6, n_users=40, seed=7)
    b = generate_category(tmp_path / "b", "X", n_groups=3, items_per_group=6, n_users=40, seed=7)
    c = generate_category(tmp_path / "c", "X", n_groups=3, items_per_group=6, n_users=40, seed=8)
    for name in ("meta_X.json.gz", "X_5.json.gz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    assert a == b and a != c
    assert sorted((tmp_path / "a" / "images").iterdir())[0].read_bytes() == \
        sorted((tmp_path / "b" / "images").iterdir())[0].read_bytes()


def test_synthetic_users_follow_group_transitions(synthetic):
    """The learnable structure: consecutive items stay in a group or move to the next one, nothing else."""
    out, stats = synthetic
    group = stats["item_group"]
    by_user = {}
    for r in _lines(out / "Demo_5.json.gz"):
        if r["asin"] in group:
            by_user.setdefault(r["reviewerID"], []).append((r["unixReviewTime"], r["asin"]))
    steps = moves = same_or_next = 0
    n = stats["n_groups"]
    for seq in by_user.values():
        seq = [a for _, a in sorted(seq)]  # equal timestamps and repeated reviews may reorder a few steps
        for x, y in zip(seq, seq[1:]):
            d = (group[y] - group[x]) % n
            steps += 1
            moves += d == 1
            same_or_next += d in (0, 1)
    assert same_or_next / steps > 0.85
    assert 0.15 < moves / steps < 0.45  # p_next_group = 0.3


@pytest.fixture(scope="module")
def prepared(synthetic, tmp_path_factory):
    out, _ = synthetic
    dest = tmp_path_factory.mktemp("prep")
    stats = prepare_category(out / "meta_Demo.json.gz", out / "Demo_5.json.gz", out / "images", dest, "Demo")
    return dest, stats


def test_prepare_counts_every_defect(synthetic, prepared):
    _, syn = synthetic
    dest, stats = prepared
    c = stats["counts"]
    assert c["meta_duplicate_asin"] == 1
    assert c["items_dropped_empty_title"] == 1
    assert c["reviews_dropped_repeat"] == syn["defects"]["repeated_user_item_reviews"]
    assert c["reviews_dropped_orphan"] >= syn["defects"]["orphan_reviews"]
    assert c["items_with_image"] + c["items_without_image"] == stats["n_items"]


def test_prepare_k_core_and_leave_one_out(synthetic, prepared):
    out, _ = synthetic
    dest, stats = prepared
    inter = json.loads((dest / "Demo.inter.json").read_text())
    counts = {}
    for seq in inter.values():
        assert len(seq) >= 5 and len(set(seq)) == len(seq)
        for i in seq:
            counts[i] = counts.get(i, 0) + 1
    assert min(counts.values()) >= 5
    assert sorted(counts) == list(range(stats["n_items"]))
    assert sorted(map(int, inter)) == list(range(stats["n_users"]))
    # ids by first appearance: walking users in id order, each new item takes the next id
    nxt = 0
    for u in range(len(inter)):
        for i in inter[str(u)]:
            assert i <= nxt
            nxt = max(nxt, i + 1)
    # chronological: matches the raw review times
    item2id = dict(line.split("\t") for line in (dest / "Demo.item2id").read_text().splitlines())
    user2id = dict(line.split("\t") for line in (dest / "Demo.user2id").read_text().splitlines())
    times = {}
    for r in _lines(out / "Demo_5.json.gz"):
        key = (user2id.get(r["reviewerID"]), item2id.get(r["asin"]))
        times.setdefault(key, r["unixReviewTime"])
        times[key] = min(times[key], r["unixReviewTime"])
    for u, seq in inter.items():
        ts = [times[(u, str(i))] for i in seq]
        assert ts == sorted(ts)
    # RecBole files: test = all but last -> last; valid = all but last two -> second last
    test = (dest / "Demo.test.inter").read_text().splitlines()
    valid = (dest / "Demo.valid.inter").read_text().splitlines()
    assert test[0] == "user_id:token\titem_id_list:token_seq\titem_id:token"
    u, hist, target = test[1].split("\t")
    assert [int(x) for x in hist.split()] == inter[u][:-1][-50:] and int(target) == inter[u][-1]
    u, hist, target = valid[1].split("\t")
    assert [int(x) for x in hist.split()] == inter[u][:-2][-50:] and int(target) == inter[u][-2]
    train = (dest / "Demo.train.inter").read_text().splitlines()
    assert len(train) - 1 == sum(len(s) - 3 for s in inter.values())


def test_prepare_item_json(prepared):
    dest, stats = prepared
    items = json.loads((dest / "Demo.item.json").read_text())
    assert sorted(map(int, items)) == list(range(stats["n_items"]))
    for it in items.values():
        assert set(it) == {"title", "description", "brand", "categories", "asin", "image"}
        assert it["title"] and "<" not in it["description"] and "&amp;" not in it["description"]
        assert it["image"] is None or it["image"] == image_filename(it["asin"])
    assert sum(it["image"] is None for it in items.values()) == stats["counts"]["items_without_image"]


def test_prepare_unreadable_image_is_text_only(synthetic, tmp_path):
    out, _ = synthetic
    images = tmp_path / "images"
    images.mkdir()
    first = next((out / "images").iterdir())
    (images / first.name).write_bytes(first.read_bytes()[:40])  # truncated JPEG
    stats = prepare_category(out / "meta_Demo.json.gz", out / "Demo_5.json.gz", images, tmp_path / "p", "Demo")
    assert stats["counts"]["items_with_image"] == 0


def test_truncated_gzip_is_a_clear_error(synthetic, tmp_path):
    out, _ = synthetic
    bad = tmp_path / "Demo_5.json.gz"
    data = (out / "Demo_5.json.gz").read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"Demo_5\.json\.gz.*truncated"):
        prepare_category(out / "meta_Demo.json.gz", bad, out / "images", tmp_path / "p", "Demo")
    assert not (tmp_path / "p" / "Demo.inter.json").exists()


def test_bad_line_and_missing_field_name_file_line_field(synthetic, tmp_path):
    out, _ = synthetic
    lines = gzip.open(out / "Demo_5.json.gz", "rt").read().splitlines()
    bad = tmp_path / "bad_5.json.gz"
    with gzip.open(bad, "wt") as f:
        f.write("\n".join(lines[:10] + ["{not json"] + lines[10:]) + "\n")
    with pytest.raises(InputError, match=r"bad_5\.json\.gz: line 11: not valid JSON"):
        prepare_category(out / "meta_Demo.json.gz", bad, out / "images", tmp_path / "p", "Demo")
    rec = json.loads(lines[3])
    del rec["unixReviewTime"]
    with gzip.open(bad, "wt") as f:
        f.write("\n".join(lines[:3] + [json.dumps(rec)] + lines[4:]) + "\n")
    with pytest.raises(InputError, match=r"bad_5\.json\.gz: line 4: field 'unixReviewTime'"):
        prepare_category(out / "meta_Demo.json.gz", bad, out / "images", tmp_path / "p", "Demo")


def test_nothing_left_after_k_core(synthetic, tmp_path):
    out, _ = synthetic
    with pytest.raises(InputError, match="no interactions left after the 50-core"):
        prepare_category(out / "meta_Demo.json.gz", out / "Demo_5.json.gz", out / "images", tmp_path, "Demo",
                         min_interactions=50)


def test_clean_text_and_safe_image_names():
    assert clean_text(["<p>A &amp; B</p>", " <br/>C  "]) == "A & B C"
    assert clean_text('<span class="a-size-medium a-color-secondary"') == ""
    assert image_filename("B000123XYZ") == "B000123XYZ.jpg"
    for hostile in ("../../etc/passwd", "a/b", "x y", "ü"):
        name = image_filename(hostile)
        assert "/" not in name and ".." not in name and name.endswith(".jpg")
    meta_old = {"imageURLHighRes": ["https://x/I/1.jpg"], "imageURL": ["https://x/I/1._SS40_.jpg"]}
    assert image_urls(meta_old) == ["https://x/I/1.jpg"]
    meta_new = {"image": ["https://x/I/31AB._SX38_SY50_CR,0,0,38,50_.jpg"]}
    assert image_urls(meta_new) == ["https://x/I/31AB.jpg"]


def test_real_amazon18_slices(shared_data, tmp_path):
    """The published Gift Cards files (current schema) and Magazine metadata (older imageURL schema)."""
    d = shared_data / "amazon18"
    stats = prepare_category(d / "meta_Gift_Cards.json.gz", d / "Gift_Cards_5.json.gz", tmp_path / "none",
                             tmp_path, "Gift_Cards")
    # the published file: 2,972 reviews, 7 repeated (user, item) pairs; 5-core keeps 453 users x 147 items
    assert stats["counts"]["review_lines"] == 2972 and stats["counts"]["reviews_dropped_repeat"] == 7
    assert (stats["n_users"], stats["n_items"], stats["n_interactions"]) == (453, 147, 2941)
    items = json.loads((tmp_path / "Gift_Cards.item.json").read_text())
    assert all(it["title"] and "<" not in it["title"] for it in items.values())
    assert all(it["image"] is None for it in items.values())
    from collections import Counter

    from mmgenrec.data.prepare import read_meta

    c = Counter()
    meta = read_meta(d / "meta_Magazine_Subscriptions.imageURL-variant.json.gz", c)
    assert c["meta_duplicate_asin"] > 0 and c["items_dropped_empty_title"] > 0  # broken '<span' titles
    assert all(m["title"] and "<span" not in m["title"] for m in meta.values())


def test_atomic_outputs_have_normal_permissions_and_no_leftovers(tmp_path):
    import os

    from mmgenrec.io import atomic_path, write_json

    write_json(tmp_path / "a.json", {"x": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "b.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
