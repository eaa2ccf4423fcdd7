"""A small synthetic category in the H&M Kaggle format (``source: synthetic_hm``), so the demo covers H&M.

Writes into ``out_dir``: ``articles.csv`` (article_id with its leading zero, prod_name, product_type_name,
product_group_name, colour_group_name, section_name, garment_group_name, detail_desc), ``customers.csv``
(customer_id), ``transactions_train.csv`` (t_dat, customer_id, article_id, price, sales_channel_id) and
``images/<first 3 digits>/<article_id>.jpg`` -- exactly what :func:`mmgenrec.data.hm.prepare_hm` reads.

Learnable pattern: articles belong to ``n_groups`` product types, each with its own colour and shape in the
image. A customer starts in a random group and at every purchase stays in it (probability ``p_stay``) or moves on
to the next group (``g -> g + 1``); within a group articles follow a Zipf law. Deterministic for a seed.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import random
from pathlib import Path

from PIL import Image, ImageDraw

from mmgenrec.io import atomic_dir

TYPES = [("Dress", "Garment Full body", "Womens Everyday", "Dresses Ladies", (200, 40, 40), "circle"),
         ("Trousers", "Garment Lower body", "Mens Casual", "Trousers", (40, 160, 60), "square"),
         ("Sweater", "Garment Upper body", "Womens Knitwear", "Knitwear", (40, 70, 200), "triangle"),
         ("Sneakers", "Shoes", "Mens Shoes", "Shoes", (220, 200, 40), "hstripes"),
         ("Socks", "Socks & Tights", "Kids Accessories", "Socks and Tights", (150, 60, 180), "vstripes"),
         ("Hat", "Accessories", "Ladies Accessories", "Accessories", (40, 180, 180), "cross"),
         ("Bikini top", "Swimwear", "Womens Swimwear", "Swimwear", (240, 130, 30), "ring"),
         ("Jacket", "Garment Upper body", "Mens Outdoor", "Outdoor", (120, 120, 120), "diamond")]
COLOURS = ["Black", "White", "Dark Blue", "Light Pink", "Beige", "Grey", "Red", "Green"]
ARTICLE_HEADER = ["article_id", "prod_name", "product_type_name", "product_group_name", "colour_group_name",
                  "section_name", "garment_group_name", "detail_desc"]


def _image(colour, shape: str, j: int, size: int) -> Image.Image:
    im = Image.new("RGB", (size, size), colour)
    d = ImageDraw.Draw(im)
    fg = tuple(255 - c for c in colour)
    m = size // 8 + j % 3
    box = [m, m, size - m - 1, size - m - 1]
    if shape == "circle":
        d.ellipse(box, fill=fg)
    elif shape == "square":
        d.rectangle(box, fill=fg)
    elif shape == "triangle":
        d.polygon([(size // 2, m), (m, size - m), (size - m, size - m)], fill=fg)
    elif shape in ("hstripes", "vstripes"):
        for k in range(m, size - m, 6):
            d.line([m, k, size - m, k] if shape == "hstripes" else [k, m, k, size - m], fill=fg, width=3)
    elif shape == "cross":
        d.rectangle([size // 2 - 3, m, size // 2 + 3, size - m], fill=fg)
        d.rectangle([m, size // 2 - 3, size - m, size // 2 + 3], fill=fg)
    elif shape == "ring":
        d.ellipse(box, outline=fg, width=4)
    else:
        c = size // 2
        d.polygon([(c, m), (size - m, c), (c, size - m), (m, c)], fill=fg)
    return im


def synthesize_hm(out_dir: str | Path, *, n_groups: int = 6, items_per_group: int = 10, n_customers: int = 150,
                  min_len: int = 6, max_len: int = 10, p_stay: float = 0.3, zipf: float = 1.2,
                  image_size: int = 48, seed: int = 0) -> dict:
    """Write the four inputs of the H&M preparation; return counts."""
    if not 1 <= n_groups <= len(TYPES):
        raise ValueError(f"n_groups={n_groups}: expected 1..{len(TYPES)}")
    rng = random.Random(seed)
    groups = []
    with atomic_dir(out_dir) as tmp:
        rows = []
        for g in range(n_groups):
            name, group, section, garment, colour, shape = TYPES[g]
            ids = []
            for j in range(items_per_group):
                aid = f"0{100 + g}{j:06d}"  # 10 characters with the leading zero, 3-digit folder 0<g>..
                ids.append(aid)
                col = COLOURS[j % len(COLOURS)]
                rows.append([aid, f"{name} {chr(65 + j)}", name, group, col, section, garment,
                             f"A {col.lower()} {name.lower()} from {section}."])
                folder = tmp / "images" / aid[:3]
                folder.mkdir(parents=True, exist_ok=True)
                _image(colour, shape, j, image_size).save(folder / f"{aid}.jpg", format="JPEG", quality=90)
            groups.append(ids)
        with open(tmp / "articles.csv", "w", newline="") as f:
            csv.writer(f).writerows([ARTICLE_HEADER, *rows])
        weights = [1 / (r + 1) ** zipf for r in range(items_per_group)]
        customers, tx = [], []
        start = dt.date(2019, 1, 1)
        for c in range(n_customers):
            cid = hashlib.sha256(f"{seed}-{c}".encode()).hexdigest()
            customers.append(cid)
            g, day, bought = rng.randrange(n_groups), rng.randrange(30), set()
            for _ in range(rng.randint(min_len, max_len)):
                for _ in range(20):  # a customer buys each article once (repeats would be dropped anyway)
                    aid = rng.choices(groups[g], weights)[0]
                    if aid not in bought:
                        break
                bought.add(aid)
                tx.append(((start + dt.timedelta(days=day)).isoformat(), cid, aid,
                           f"{0.01 + 0.005 * (g + 1):.4f}", rng.choice((1, 2))))
                day += rng.randint(1, 5)
                if rng.random() >= p_stay:
                    g = (g + 1) % n_groups
        tx.sort(key=lambda r: r[0])
        with open(tmp / "customers.csv", "w", newline="") as f:
            csv.writer(f).writerows([["customer_id"], *[[c] for c in customers]])
        with open(tmp / "transactions_train.csv", "w", newline="") as f:
            csv.writer(f).writerows([["t_dat", "customer_id", "article_id", "price", "sales_channel_id"], *tx])
    return {"articles": len(rows), "customers": len(customers), "transactions": len(tx)}
