"""H&M preparation: the real sample (counts, formats identical to the Amazon preparation, images) and a tiny
hand-made case with exact sequences, leading-zero ids, same-day ties and clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from mmgenrec.data.hm import prepare_hm
from mmgenrec.data.images import is_readable_image
from mmgenrec.data.prepare import prepare_category
from mmgenrec.data.synthetic import generate_category
from mmgenrec.io import InputError

RECBOLE_HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token"
SUFFIXES = ("inter.json", "item.json", "item2id", "user2id", "train.inter", "valid.inter", "test.inter", "stats.json")


def _sample(shared_data):
    d = shared_data / "hm-sample"
    if not (d / "transactions_train_sample.csv").is_file():
        pytest.skip(f"{d} not present")
    return (d / "articles_train_sample.csv", d / "customers_sample.csv", d / "transactions_train_sample.csv",
            d / "images")


@pytest.fixture(scope="module")
def hm_prepared(tmp_path_factory):
    # module scope, so the function-scoped ``shared_data`` fixture cannot be used; same rule as conftest.py
    shared = Path(os.environ.get("MMGENREC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not shared.is_dir():
        pytest.skip(f"real data slices not found at {shared} (set MMGENREC_SHARED_DATA)")
    paths = _sample(shared)
    out = tmp_path_factory.mktemp("hm")
    # 3-core: the sample is too sparse for a 5-core (see test_hm_sample_five_core_is_empty)
    stats = prepare_hm(*paths, out, "HM", min_interactions=3)
    return paths, out, stats


def test_hm_sample_counts(shared_data, hm_prepared):
    (articles, _, transactions, _), out, stats = hm_prepared
    c = stats["counts"]
    # What was read: 11,800 articles (all with a name, no repeated id), 1,364 customers, 31,662 transactions.
    assert (c["article_rows"], c["article_duplicate_id"], c["items_dropped_empty_title"]) == (11800, 0, 0)
    assert (c["customer_rows"], c["transaction_rows"], c["transactions_unknown_customer"]) == (1364, 31662, 0)
    # The transactions name 17,033 articles, of which the articles file covers only 4,116 (MANIFEST.md):
    # 21,737 of 31,662 rows are dropped; the 9,925 left hold 1,468 repeat purchases of the same article,
    # so 8,457 unique (customer, article) pairs enter the k-core.
    assert c["transactions_dropped_unknown_article"] == 21737
    assert c["transactions_dropped_repeat"] == 1468
    assert c["transactions_unique_known"] == 8457 == 31662 - 21737 - 1468
    # Cross-check those three numbers independently with plain pandas.
    t = pd.read_csv(transactions, dtype=str)
    a = pd.read_csv(articles, dtype=str, usecols=["article_id"])
    assert t["article_id"].str.len().eq(10).all() and t["article_id"].str.startswith("0").all()
    known = t[t["article_id"].isin(set(a["article_id"]))]
    assert (len(t), len(t) - len(known), t["article_id"].nunique(), known["article_id"].nunique()) == \
        (31662, 21737, 17033, 4116)
    assert len(known) - len(known.drop_duplicates(["customer_id", "article_id"])) == 1468
    # After the iterative 3-core (7 rounds): 458 customers, 724 articles, 3,459 purchases.
    assert (stats["n_users"], stats["n_items"], stats["n_interactions"], c["k_core_rounds"]) == (458, 724, 3459, 7)
    assert stats["seq_len"] == {"min": 3, "median": 6, "max": 51, "mean": 7.552}
    # 85 of the 724 kept articles have one of the 246 sample images.
    assert (c["items_with_image"], c["items_without_image"]) == (85, 639)


def test_hm_sample_five_core_is_empty(shared_data, tmp_path):
    """1,364 customers buying from 17,033 articles: only 572 articles have 5 distinct buyers at all, 329 of them
    with metadata, and the iterative 5-core peels everything away. That is a clear error, not empty files."""
    with pytest.raises(InputError, match=r"no interactions left after the 5-core filter \(31662 transactions"):
        prepare_hm(*_sample(shared_data), tmp_path / "p5", "HM")
    assert not (tmp_path / "p5" / "HM.inter.json").exists()


def test_hm_files_match_amazon_format(hm_prepared, tmp_path):
    (_, _, transactions, _), out, stats = hm_prepared
    amazon = tmp_path / "amazon"
    generate_category(amazon / "raw", "Demo", n_groups=3, items_per_group=8, n_users=60, seed=1)
    a_stats = prepare_category(amazon / "raw" / "meta_Demo.json.gz", amazon / "raw" / "Demo_5.json.gz",
                               amazon / "raw" / "images", amazon / "p", "Demo")
    assert sorted(p.name.removeprefix("HM.") for p in out.iterdir()) == \
        sorted(p.name.removeprefix("Demo.") for p in (amazon / "p").iterdir())  # files and images/
    assert set(a_stats) <= set(stats) and set(stats["seq_len"]) == set(a_stats["seq_len"])
    hm_items = json.loads((out / "HM.item.json").read_text())
    demo_items = json.loads((amazon / "p" / "Demo.item.json").read_text())
    assert {tuple(v) for v in hm_items.values()} == {tuple(v) for v in demo_items.values()} == \
        {("title", "description", "brand", "categories", "asin", "image")}
    # inter.json: compact, contiguous ids, >= 3 unique items per user; ids by first appearance
    assert (out / "HM.inter.json").read_text().count("\n") == 1
    inter = json.loads((out / "HM.inter.json").read_text())
    assert sorted(map(int, inter)) == list(range(458))
    assert sorted({i for s in inter.values() for i in s}) == list(range(724)) == sorted(map(int, hm_items))
    assert all(len(s) >= 3 and len(set(s)) == len(s) for s in inter.values())
    nxt = 0
    for u in range(len(inter)):
        for i in inter[str(u)]:
            assert i <= nxt
            nxt = max(nxt, i + 1)
    # item2id / user2id: leading zeros kept, consistent with item.json
    item2id = dict(line.split("\t") for line in (out / "HM.item2id").read_text().splitlines())
    assert len(item2id) == 724 and all(len(a) == 10 and a[0] == "0" for a in item2id)
    assert all(hm_items[i]["asin"] == a for a, i in item2id.items())
    user2id = dict(line.split("\t") for line in (out / "HM.user2id").read_text().splitlines())
    assert len(user2id) == 458 and all(len(u) == 64 for u in user2id)
    # chronological: t_dat of each user's sequence never decreases
    t = pd.read_csv(transactions, dtype=str)
    first_day = t.drop_duplicates(["customer_id", "article_id"]).set_index(["customer_id", "article_id"])["t_dat"]
    id2asin = {int(i): a for a, i in item2id.items()}
    for user, uid in list(user2id.items())[:50]:
        days = [first_day[(user, id2asin[i])] for i in inter[uid]]
        assert days == sorted(days)
    # RecBole splits
    for split, rows in (("train", 3459 - 3 * 458), ("valid", 458), ("test", 458)):
        lines = (out / f"HM.{split}.inter").read_text().splitlines()
        assert lines[0] == RECBOLE_HEADER and len(lines) - 1 == rows
    u, hist, target = (out / "HM.test.inter").read_text().splitlines()[1].split("\t")
    assert [int(x) for x in hist.split()] == inter[u][:-1][-50:] and int(target) == inter[u][-1]
    # item text
    item = hm_items["2"]
    assert item == {"title": "Isabella (White)", "description": item["description"], "brand": "H&M",
                    "categories": "Garment Upper body, Shirt, Womens Tailoring, Blouses",
                    "asin": "0507910001", "image": "0507910001.jpg"}
    assert item["description"].startswith("Fitted shirt in a stretch weave")


def test_hm_images_linked(hm_prepared):
    (_, _, _, image_root), out, stats = hm_prepared
    items = json.loads((out / "HM.item.json").read_text())
    with_image = {it["asin"]: it["image"] for it in items.values() if it["image"]}
    assert len(with_image) == 85
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(with_image.values())
    for asin, name in with_image.items():
        assert name == f"{asin}.jpg"
        assert (out / "images" / name).read_bytes() == (image_root / asin[:3] / name).read_bytes()
        assert is_readable_image(out / "images" / name)
    # every kept article without an image really has none in the source tree
    for it in items.values():
        if it["image"] is None:
            assert not (image_root / it["asin"][:3] / f"{it['asin']}.jpg").exists()


# ------------------------------------------------------------------------------------------- hand-made case


ART_HEADER = ("article_id,product_code,prod_name,product_type_name,product_group_name,colour_group_name,"
              "index_group_name,section_name,garment_group_name,detail_desc")


def _article(aid, name, colour="Black", desc="Soft.", ptype="Top", group="Garment Upper body"):
    return f'{aid},{aid[:7]},{name},{ptype},{group},{colour},Ladieswear,"Womens Basic, Tops",Jersey Basic,{desc}'


def _write_case(tmp_path: Path):
    a = [ART_HEADER,
         _article("0100000001", "Tee"),
         _article("0100000002", "Tank", colour="White"),
         _article("0100000003", "Black dress", colour="Black", desc=""),  # colour already in the name
         _article("0200000004", "Skirt", ptype="Skirt", group="Garment Lower body"),
         _article("0200000005", "Sock", ptype="Socks", group="Socks & Tights"),
         _article("0300000006", "Hat")]
    (tmp_path / "articles.csv").write_text("\n".join(a) + "\n")
    (tmp_path / "customers.csv").write_text("customer_id,age\ncA,30\ncB,41\ncD,25\n")
    t = ["t_dat,customer_id,article_id,price,sales_channel_id",
         "2020-01-02,cB,0100000003,0.01,2",   # row 1
         "2020-01-01,cA,0100000002,0.02,2",   # row 2
         "2020-01-01,cA,0100000001,0.02,1",   # row 3: same day as row 2 -> after it (file order)
         "2020-01-03,cA,0100000002,0.02,1",   # row 4: repeat of row 2 -> dropped (dedupe="first")
         "2020-01-05,cA,0200000004,0.03,1",   # row 5: nobody else buys it -> removed by the 3-core
         "2020-01-04,cA,0999999999,0.03,1",   # row 6: article not in articles.csv -> dropped
         "2020-01-04,cA,0100000003,0.03,1",   # row 7: earlier date than row 5
         "2020-01-02,cB,0100000001,0.01,2",   # row 8: same day as row 1 -> after it
         "2020-01-03,cB,0100000002,0.01,2",   # row 9
         "2020-01-01,cC,0200000005,0.01,2",   # row 10: cC is not in customers.csv (counted, kept) and
         "2020-01-02,cC,0300000006,0.01,2",   # row 11:   has only 2 items -> removed by the 3-core
         "2020-01-02,cD,0100000003,0.01,1",   # row 12
         "2020-01-02,cD,0100000001,0.01,1",   # row 13: same day as row 12 -> after it
         "2019-12-31,cD,0100000002,0.01,1"]   # row 14: the earliest purchase in the file
    (tmp_path / "transactions.csv").write_text("\n".join(t) + "\n")
    img = tmp_path / "images" / "010"
    img.mkdir(parents=True)
    Image.new("RGB", (8, 12), (200, 10, 10)).save(img / "0100000001.jpg")
    (img / "0100000002.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")  # unreadable -> no image
    return [tmp_path / n for n in ("articles.csv", "customers.csv", "transactions.csv", "images")]


def test_hm_tiny_case_exact(tmp_path):
    paths = _write_case(tmp_path)
    stats = prepare_hm(*paths, tmp_path / "out", "Tiny", min_interactions=3)
    out = tmp_path / "out"
    inter = json.loads((out / "Tiny.inter.json").read_text())
    # Round 1 of the 3-core drops 0200000004 (1 buyer), cC (2 items) with 0200000005 / 0300000006; round 2
    # changes nothing. Users by first purchase (day, row): cD (2019-12-31), cA (01-01), cB (01-02).
    #   cD: 0100000002 (12-31), 0100000003 (01-02, row 12), 0100000001 (01-02, row 13)
    #   cA: 0100000002 (01-01, row 2), 0100000001 (01-01, row 3), 0100000003 (01-04)
    #   cB: 0100000003 (01-02, row 1), 0100000001 (01-02, row 8), 0100000002 (01-03)
    # Items by first appearance walking cD, cA, cB: 0100000002 -> 0, 0100000003 -> 1, 0100000001 -> 2.
    assert inter == {"0": [0, 1, 2], "1": [0, 2, 1], "2": [1, 2, 0]}
    assert (out / "Tiny.item2id").read_text() == "0100000002\t0\n0100000003\t1\n0100000001\t2\n"
    assert (out / "Tiny.user2id").read_text() == "cD\t0\ncA\t1\ncB\t2\n"
    items = json.loads((out / "Tiny.item.json").read_text())
    assert items["0"] == {"title": "Tank (White)", "description": "Soft.", "brand": "H&M",
                          "categories": "Garment Upper body, Top, Womens Basic, Tops, Jersey Basic",
                          "asin": "0100000002", "image": None}  # its image does not decode
    assert items["2"]["image"] == "0100000001.jpg" and items["2"]["title"] == "Tee (Black)"
    assert items["1"]["title"] == "Black dress" and items["1"]["description"] == ""  # colour already in name
    assert [p.name for p in (out / "images").iterdir()] == ["0100000001.jpg"]
    assert (out / "Tiny.test.inter").read_text() == f"{RECBOLE_HEADER}\n0\t0 1\t2\n1\t0 2\t1\n2\t1 2\t0\n"
    assert (out / "Tiny.valid.inter").read_text() == f"{RECBOLE_HEADER}\n0\t0\t1\n1\t0\t2\n2\t1\t2\n"
    assert (out / "Tiny.train.inter").read_text() == f"{RECBOLE_HEADER}\n"  # 3 items: nothing before valid
    assert stats["counts"] == {
        "article_rows": 6, "article_duplicate_id": 0, "items_dropped_empty_title": 0, "customer_rows": 3,
        "transaction_rows": 14, "transactions_dropped_unknown_article": 1, "transactions_unknown_customer": 2,
        "transactions_dropped_repeat": 1, "transactions_unique_known": 12, "k_core_rounds": 2,
        "items_with_image": 1, "items_without_image": 2}
    assert (stats["n_users"], stats["n_items"], stats["n_interactions"]) == (3, 3, 9)

def test_hm_tiny_case_dedupe_last(tmp_path):
    paths = _write_case(tmp_path)
    prepare_hm(*paths, tmp_path / "out", "Tiny", min_interactions=3, dedupe="last")
    inter = json.loads((tmp_path / "out" / "Tiny.inter.json").read_text())
    # cA's repeat of 0100000002 (01-03, row 4) is kept instead of row 2: it now comes after 0100000001 (01-01)
    assert inter == {"0": [0, 1, 2], "1": [2, 0, 1], "2": [1, 2, 0]}
    assert (tmp_path / "out" / "Tiny.item2id").read_text() == "0100000002\t0\n0100000003\t1\n0100000001\t2\n"

def test_hm_missing_column_is_a_clear_error(tmp_path):
    paths = _write_case(tmp_path)
    t = pd.read_csv(paths[2], dtype=str).drop(columns=["t_dat"])
    t.to_csv(tmp_path / "no_date.csv", index=False)
    with pytest.raises(InputError, match=r"no_date\.csv: required column\(s\) 't_dat' missing"):
        prepare_hm(paths[0], paths[1], tmp_path / "no_date.csv", paths[3], tmp_path / "out", "Tiny")
    a = pd.read_csv(paths[0], dtype=str).drop(columns=["prod_name", "detail_desc"])
    a.to_csv(tmp_path / "art.csv", index=False)
    with pytest.raises(InputError, match=r"art\.csv: required column\(s\) 'prod_name', 'detail_desc' missing"):
        prepare_hm(tmp_path / "art.csv", paths[1], paths[2], paths[3], tmp_path / "out", "Tiny")
    assert not (tmp_path / "out").exists()


def test_hm_bad_values_are_clear_errors(tmp_path):
    paths = _write_case(tmp_path)
    lines = paths[2].read_text().splitlines()
    lines[3] = lines[3].replace("2020-01-01", "01/13/2020x")
    (tmp_path / "bad_date.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"bad_date\.csv: row 3: column 't_dat' is not a date \('01/13/2020x'\)"):
        prepare_hm(paths[0], paths[1], tmp_path / "bad_date.csv", paths[3], tmp_path / "out", "Tiny")
    lines = paths[2].read_text().splitlines()
    lines[5] = lines[5].replace("0200000004", "")
    (tmp_path / "no_id.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"no_id\.csv: row 5: column 'article_id' is empty"):
        prepare_hm(paths[0], paths[1], tmp_path / "no_id.csv", paths[3], tmp_path / "out", "Tiny")
    with pytest.raises(InputError, match=r"nope\.csv: file not found"):
        prepare_hm(paths[0], paths[1], tmp_path / "nope.csv", paths[3], tmp_path / "out", "Tiny")
