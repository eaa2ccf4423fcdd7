"""The embedded default's data: a small category in the *raw Amazon-2018 format*, made by our own code.

What it writes into ``out_dir`` (the same files the real download produces)::

    meta_<stem>.json.gz      one JSON object per line: asin, title, description (list, with HTML), brand,
                             category (list), imageURLHighRes / imageURL, price
    <stem>_5.json.gz         one review per line: reviewerID, asin, overall, unixReviewTime, reviewTime, ...
    images/<asin>.jpg        one small JPEG per item (a few items have none)
    synthetic_stats.json     the ground truth: each item's latent group, counts of every injected defect
    <stem>.item_enriched_v2.json   the "provided" enrichment, keyed by asin (see below)

Learnable structure
    Items belong to ``n_groups`` latent groups. A group is visible in the text (product type, adjectives, brand,
    category path) and in the image (background colour and shape). A user starts in a random group and, at each
    step, either stays in the group (probability ``1 - p_next_group``) or moves on to the *next* group
    (``g -> g + 1``); within a group, items are drawn from a Zipf law. A model that learns the transitions beats
    popularity; popularity alone still gets something (Zipf).

Defects the preparation must handle (counts in ``synthetic_stats.json``)
    lines in random order, users too short for 5-core, repeated (user, item) reviews, reviews of asins that have
    no metadata (``orphan_reviews``), one duplicated metadata line, one item with an empty title, HTML in
    descriptions, items without an image (``missing_images``), and equal timestamps.

Provided enrichment (``enrich_signal``)
    Each item gets the four enriched fields plus ``has_image``. They restate facts of the item (brand, product
    type, the image's colour and shape) and add one fact that is *not* in the raw text: the product line
    (flagship / pro / standard / basic), which follows the item's rank in its group, i.e. how often users pick
    it (the Zipf law above). So with ``enrich_signal: true`` the enriched text carries real, useful signal;
    with ``false`` the same records are dealt to the items in a random order, so they describe other items
    (no signal, and the checks flag them as unfaithful / contradicting the title). The enrichment uses its own
    random stream: the other files are byte-identical whatever ``enrich_signal`` is.

Everything is deterministic for a given seed (gzip mtime 0, fixed JPEG encoder settings).
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mmgenrec.data.images import image_filename
from mmgenrec.io import atomic_dir, atomic_path, write_json

log = logging.getLogger(__name__)

# (product type, adjectives, brands, category path, background colour, shape)
THEMES = [
    ("guitar strings", ["bright", "nickel", "phosphor"], ["Ernie", "Daddario"], ["Strings", "Guitar Strings"], (200, 40, 40), "circle"),
    ("drum sticks", ["hickory", "maple", "light"], ["Vater", "Zildjan"], ["Drums", "Sticks"], (40, 160, 60), "square"),
    ("condenser microphone", ["studio", "cardioid", "vocal"], ["Rode", "Audix"], ["Recording", "Microphones"], (40, 70, 200), "triangle"),
    ("keyboard stand", ["folding", "steel", "double"], ["Quiklok", "Onstage"], ["Keyboards", "Stands"], (220, 200, 40), "hstripes"),
    ("studio headphones", ["closed", "monitor", "wired"], ["Sennhauser", "Audiotek"], ["Audio", "Headphones"], (150, 60, 180), "vstripes"),
    ("instrument cable", ["braided", "shielded", "right-angle"], ["Mogami", "Hosa"], ["Accessories", "Cables"], (40, 180, 180), "cross"),
    ("effects pedal", ["overdrive", "delay", "fuzz"], ["Boss", "Electro"], ["Effects", "Pedals"], (240, 130, 30), "ring"),
    ("guitar capo", ["quick-change", "spring", "trigger"], ["Kyser", "Shubb"], ["Accessories", "Capos"], (120, 120, 120), "diamond"),
    ("clip tuner", ["chromatic", "backlit", "compact"], ["Snark", "Korg"], ["Tuners", "Clip-On"], (250, 250, 250), "dots"),
    ("practice amplifier", ["tube", "modeling", "portable"], ["Fendor", "Marsall"], ["Amplifiers", "Combo"], (90, 50, 20), "grid"),
    ("game controller", ["wireless", "ergonomic", "pro"], ["Padmax", "Joyco"], ["Gaming", "Controllers"], (20, 20, 20), "circle"),
    ("bluetooth speaker", ["waterproof", "bass", "mini"], ["Boomly", "Soundcore"], ["Audio", "Speakers"], (250, 160, 200), "square"),
]
COLOUR_NAMES = ["red", "green", "blue", "yellow", "purple", "teal", "orange", "grey", "white", "brown", "black",
                "pink"]
USES = ["live shows", "home practice", "the studio", "beginners", "touring musicians", "everyday use"]


def _group_theme(g: int):
    noun, adjs, brands, cats, colour, shape = THEMES[g % len(THEMES)]
    series = g // len(THEMES)
    if series:  # more groups than themes: same look, distinct words
        noun = f"{noun} series {series + 1}"
        colour = tuple((c + 70 * series) % 256 for c in colour)
    return noun, adjs, brands, cats, colour, shape


def _draw_image(g: int, j: int, size: int, rng: random.Random) -> bytes:
    """A JPEG whose colour and shape show the group; size, position and shade vary per item."""
    _, _, _, _, colour, shape = _group_theme(g)
    shade = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in colour)
    im = Image.new("RGB", (size, size), shade)
    d = ImageDraw.Draw(im)
    fg = tuple(255 - c for c in colour)
    m = size // 8 + (j % 4)
    box = [m, m, size - m - 1, size - m - 1]
    if shape == "circle":
        d.ellipse(box, fill=fg)
    elif shape == "square":
        d.rectangle(box, fill=fg)
    elif shape == "triangle":
        d.polygon([(size // 2, m), (m, size - m), (size - m, size - m)], fill=fg)
    elif shape in ("hstripes", "vstripes"):
        for k in range(m, size - m, 6):
            line = [m, k, size - m, k] if shape == "hstripes" else [k, m, k, size - m]
            d.line(line, fill=fg, width=3)
    elif shape == "cross":
        d.rectangle([size // 2 - 4, m, size // 2 + 4, size - m], fill=fg)
        d.rectangle([m, size // 2 - 4, size - m, size // 2 + 4], fill=fg)
    elif shape == "ring":
        d.ellipse(box, outline=fg, width=5)
    elif shape == "diamond":
        c = size // 2
        d.polygon([(c, m), (size - m, c), (c, size - m), (m, c)], fill=fg)
    elif shape == "dots":
        for x in range(m, size - m, 10):
            for y in range(m, size - m, 10):
                d.ellipse([x, y, x + 4, y + 4], fill=fg)
    else:  # grid
        for k in range(m, size - m, 8):
            d.line([m, k, size - m, k], fill=fg, width=1)
            d.line([k, m, k, size - m], fill=fg, width=1)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _make_items(n_groups: int, items_per_group: int, rng: random.Random) -> list[dict]:
    items = []
    for g in range(n_groups):
        noun, adjs, brands, cats, _, _ = _group_theme(g)
        for j in range(items_per_group):
            asin = f"B0{g:03d}{j:03d}{rng.randint(0, 9999):04d}"
            adj = adjs[j % len(adjs)]
            brand = brands[j % len(brands)]
            model = f"{chr(65 + g % 26)}{j:02d}"
            items.append({
                "asin": asin, "group": g, "rank_in_group": j,
                "title": f"{brand} {adj.title()} {noun.title()} {model}",
                "description": [f"<p>A {adj} {noun} for {USES[(g + j) % len(USES)]}.</p>",
                                f"<b>{brand}</b> quality &amp; a {rng.choice(adjs)} finish."],
                "brand": brand,
                "category": ["Musical Instruments", *cats],
                "price": f"${5 + (g * 7 + j * 3) % 90}.99",
            })
    return items


def _zipf_weights(n: int, a: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** a
    return w / w.sum()


def _user_sequences(items, n_groups, items_per_group, n_users, min_len, max_len, p_next_group, zipf_a, rng, nprng):
    by_group = [[it for it in items if it["group"] == g] for g in range(n_groups)]
    weights = _zipf_weights(items_per_group, zipf_a)
    sequences = []
    for u in range(n_users):
        length = rng.randint(min_len, max_len)
        g = rng.randrange(n_groups)
        seen: set[str] = set()
        seq = []
        for _ in range(length):
            if seq and rng.random() < p_next_group:
                g = (g + 1) % n_groups
            w = np.array([0.0 if it["asin"] in seen else weights[it["rank_in_group"]] for it in by_group[g]])
            if w.sum() == 0:
                break
            it = by_group[g][int(nprng.choice(len(w), p=w / w.sum()))]
            seen.add(it["asin"])
            seq.append(it["asin"])
        sequences.append((f"A{u:05d}{rng.randint(0, 99999):05d}", seq))
    return sequences


def _write_gz_lines(path: Path, records: list[dict]) -> None:
    with atomic_path(path, suffix=".gz") as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
            for r in records:
                gz.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))


def generate_category(
    out_dir: str | Path,
    file_stem: str,
    *,
    n_groups: int = 8,
    items_per_group: int = 24,
    n_users: int = 400,
    min_len: int = 3,
    max_len: int = 14,
    p_next_group: float = 0.3,
    zipf_a: float = 0.8,
    image_size: int = 64,
    orphan_reviews: int = 5,
    missing_images: int = 3,
    enrich_signal: bool = True,
    seed: int = 0,
) -> dict:
    """Write one synthetic category into ``out_dir`` (see the module docstring); return its stats."""
    if min_len > max_len:
        raise ValueError(f"synthetic: min_len ({min_len}) > max_len ({max_len})")
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    items = _make_items(n_groups, items_per_group, rng)

    # Defects in the metadata: one empty title, a few items without any image, one duplicated line.
    items[rng.randrange(len(items))]["title"] = ""
    no_image = {it["asin"] for it in rng.sample(items, min(missing_images, len(items)))}
    meta = []
    for it in items:
        rec = {k: it[k] for k in ("asin", "title", "description", "brand", "category", "price")}
        if it["asin"] not in no_image:
            url = f"https://images-na.ssl-images-amazon.com/images/I/{it['asin']}.jpg"
            rec["imageURLHighRes"] = [url]
            rec["imageURL"] = [url.replace(".jpg", "._SS40_.jpg")]
        meta.append(rec)
    dup = dict(rng.choice(meta))
    dup["title"] = dup["title"] + " (duplicate listing)"
    meta.append(dup)
    rng.shuffle(meta)

    # Reviews: user journeys, then defects (repeated pairs, orphans, equal timestamps), then shuffled lines.
    sequences = _user_sequences(items, n_groups, items_per_group, n_users, min_len, max_len, p_next_group, zipf_a,
                                rng, nprng)
    reviews = []
    n_ties = 0
    for user, seq in sequences:
        t = 1_400_000_000 + rng.randrange(0, 4 * 365) * 86400
        for pos, asin in enumerate(seq):
            if pos:
                gap = rng.choice([0, 1, 2, 3, 5, 8, 13, 30]) * 86400
                n_ties += gap == 0
                t += gap
            reviews.append(_review(user, asin, t, rng))
    n_repeats = max(1, len(sequences) // 50)
    for user, seq in rng.sample([s for s in sequences if s[1]], n_repeats):
        later = max(r["unixReviewTime"] for r in reviews if r["reviewerID"] == user) + 86400
        reviews.append(_review(user, seq[0], later, rng))
    users = [u for u, _ in sequences]
    for k in range(orphan_reviews):
        reviews.append(_review(rng.choice(users), f"B9ORPHAN{k:03d}", 1_500_000_000 + k * 86400, rng))
    rng.shuffle(reviews)

    _write_gz_lines(out_dir / f"meta_{file_stem}.json.gz", meta)
    _write_gz_lines(out_dir / f"{file_stem}_5.json.gz", reviews)
    with atomic_dir(out_dir / "images") as tmp:
        img_rng = random.Random(seed + 1)
        for it in items:
            if it["asin"] not in no_image:
                (tmp / image_filename(it["asin"])).write_bytes(
                    _draw_image(it["group"], it["rank_in_group"], image_size, img_rng))
    enriched = synthetic_enrichment(items, no_image, signal=enrich_signal, seed=seed)
    write_json(out_dir / f"{file_stem}.item_enriched_v2.json", enriched)
    stats = {
        "n_items": len(items), "n_groups": n_groups, "n_users": n_users, "n_reviews": len(reviews),
        "defects": {"empty_title": 1, "duplicate_meta_lines": 1, "missing_images": len(no_image),
                    "repeated_user_item_reviews": n_repeats, "orphan_reviews": orphan_reviews,
                    "equal_timestamps": n_ties,
                    "short_users": sum(len(s) < 5 for _, s in sequences)},
        "item_group": {it["asin"]: it["group"] for it in items},
        "params": {"n_groups": n_groups, "items_per_group": items_per_group, "n_users": n_users,
                   "min_len": min_len, "max_len": max_len, "p_next_group": p_next_group, "zipf_a": zipf_a,
                   "image_size": image_size, "seed": seed},
    }
    if not enrich_signal:  # recorded only when set, so that the default's stats file stays as it was
        stats["params"]["enrich_signal"] = False
    write_json(out_dir / "synthetic_stats.json", stats)
    log.info("synthetic %s: %d items, %d users, %d reviews -> %s", file_stem, len(items), n_users, len(reviews),
             out_dir)
    return stats


def product_line(rank_in_group: int) -> str:
    """The enrichment's hidden fact: the product line, from the item's popularity rank in its group."""
    return "flagship" if rank_in_group < 2 else "pro" if rank_in_group < 5 else "standard" if rank_in_group < 10 \
        else "basic"


def synthetic_enrichment(items: list[dict], no_image: set[str], *, signal: bool, seed: int) -> dict[str, dict]:
    """``{asin: {enhanced_title, tags, highlights, characteristics, has_image}}`` (module docstring)."""
    records = []
    for it in items:
        g, j = it["group"], it["rank_in_group"]
        noun, adjs, brands, _, _, shape = _group_theme(g)
        colour = COLOUR_NAMES[g % len(COLOUR_NAMES)]
        brand, adj, line = brands[j % len(brands)], adjs[j % len(adjs)], product_line(j)
        model = f"{chr(65 + g % 26)}{j:02d}"
        records.append({
            "enhanced_title": f"{brand} {adj.title()} {noun.title()} {model}, {line.title()} Line",
            "tags": [noun, adj, f"{line} line", colour],
            "highlights": [f"{line.title()} line {noun} by {brand}", f"{colour} {shape} on the product image"],
            "characteristics": {"Brand": brand, "Type": noun, "Line": line, "Colour": colour},
        })
    if not signal:  # the same records, dealt to the items in a random order
        random.Random(seed + 2).shuffle(records)
    return {it["asin"]: {**rec, "has_image": it["asin"] not in no_image} for it, rec in zip(items, records)}


def _review(user: str, asin: str, t: int, rng: random.Random) -> dict:
    import datetime

    day = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return {"overall": float(rng.choice([3, 4, 5, 5, 5])), "verified": True,
            "reviewTime": f"{day.month:02d} {day.day}, {day.year}", "reviewerID": user, "asin": asin,
            "reviewerName": "Demo User", "reviewText": "Works as described.", "summary": "Good",
            "unixReviewTime": t}


def vocabulary_corpus() -> list[str]:
    """Text the demo's tiny tokenizer is trained on: every word the synthetic data and the prompts use."""
    from mmgenrec.prompts import SEQREC_TEMPLATES

    lines = []
    for g in range(len(THEMES) * 2):
        noun, adjs, brands, cats, _, _ = _group_theme(g)
        for adj in adjs:
            for brand in brands:
                lines.append(f"{brand} {adj.title()} {noun.title()} {chr(65 + g % 26)}{g:02d}")
                lines.append(f"A {adj} {noun} for {', '.join(USES)}. {brand} quality & a {adj} finish.")
        lines.append("Musical Instruments, " + ", ".join(cats))
    lines += [t.format(history="<a_1><b_2>, <a_3><b_4>") for t in SEQREC_TEMPLATES]
    lines += ["Title: Brand: Categories: Description: Enhanced title: Tags: Highlights: Characteristics:",
              "0123456789 $.99 - ( ) duplicate listing series"]
    return lines * 3
