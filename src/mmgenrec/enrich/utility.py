"""Does the enriched text help an independent multimodal recommender? VBPR (Cornac) on original vs enriched text.

Design (one fair comparison; the two arms differ only in the item text):

* **Split**: each user's chronological sequence (``inter.json``): all but the last two items train, the
  second-to-last validates, the last tests (the leave-one-out split of the rest of the workflow). Ranking is over
  every item, excluding the user's training items (and, for test, the validation item); Recall@K and NDCG@K with
  one relevant item.
* **Text**: the item's text as the rest of the workflow writes it (:func:`mmgenrec.prompts.item_text`), without
  (``original``) and with (``enriched``) the four enriched fields. The SAME encoder for both arms: Cornac's
  ``TfidfVectorizer`` fitted on the union of both arms' texts, then a truncated SVD (``scipy.sparse.linalg.svds``,
  fixed start vector) to ``text_dim`` dimensions, scaled by the union's column spread. Deterministic, CPU, seconds
  for thousands of items; an LLM embedding would cost GPU hours on the real data and, in the demo, comes from a
  random tiny model. **Image**: the same pixels for both arms (a ``image_side``² RGB thumbnail, standardised;
  zeros without an image). VBPR's item feature = [text, image].
* **Model**: Cornac's ``VBPR`` (torch). Its training set subclasses Cornac's ``Dataset`` only to draw the uniform
  negatives vectorised (Cornac's loop indexes a sparse matrix per triple, minutes per epoch on a busy CPU); the
  distribution is the same: a uniform item the user has not interacted with in training.
* **Hyper-parameters**: every combination of ``grid`` (over ``vbpr`` defaults) is trained for both arms with the
  first seed; the combination with the best validation metric averaged over the two arms is used for both arms
  and every seed (same hyper-parameters for both).
* **Seeds**: ``seeds`` (≥3). Reported per arm: mean ± std over seeds of Recall@K and NDCG@K on test.
* **Comparison and verdict** (:mod:`mmgenrec.enrich.verdict`): one quantity, the relative gain of the mean metric
  (enriched / original − 1), with its bootstrap interval over seeds AND users (seeds resampled as pairs: seed *s*
  gives both arms the same initialisation and negatives; then users, paired). Verdict on ``metric`` (NDCG@K by
  default): ``helps`` when the ``1 − alpha`` interval lies above 0 and the gain is ≥ ``min_rel_gain``; ``hurts``
  when it lies below 0 and the gain is ≤ −``min_rel_gain``; else ``no_difference``.
* **A/A calibration**: the original arm is also trained with ``aa_seeds`` (default: as many seeds again, after the
  largest of ``seeds``) and compared with itself by the same procedure; it must come out ``no_difference``.
  ``aa.false_positive_rate``: over the splits of the pooled original seeds into two halves (up to ``aa_draws``),
  the share whose interval excludes 0 (nominally ``alpha``).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import time
from pathlib import Path

import numpy as np

from mmgenrec.enrich.verdict import aa_calibration, compare_arms
from mmgenrec.io import InputError

log = logging.getLogger(__name__)

VBPR_DEFAULTS = {"k": 10, "k2": 10, "n_epochs": 40, "batch_size": 512, "learning_rate": 0.02, "lambda_w": 0.01,
                 "lambda_b": 0.01, "lambda_e": 0.0}


def _uniform_dataset_class():
    from cornac.data import Dataset

    class UniformNegatives(Dataset):
        """Cornac's Dataset with ``uij_iter`` vectorised (same sampling: uniform over the user's non-positives)."""

        def uij_iter(self, batch_size=1, shuffle=False, neg_sampling="uniform"):
            if neg_sampling != "uniform":
                raise ValueError("only uniform negative sampling is vectorised")
            users, pos = self.uir_tuple[0].astype(np.int64), self.uir_tuple[1].astype(np.int64)
            positives = np.sort(users * self.num_items + pos)
            for ids in self.idx_iter(len(users), batch_size, shuffle):
                u = users[ids]
                neg = self.rng.randint(0, self.num_items, size=len(ids))
                while True:
                    bad = np.isin(u * self.num_items + neg, positives)
                    if not bad.any():
                        break
                    neg[bad] = self.rng.randint(0, self.num_items, size=int(bad.sum()))
                yield u, pos[ids], neg

    return UniformNegatives


def text_features(texts_a: list[str], texts_b: list[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """One TF-IDF + truncated-SVD encoder fitted on both lists; their rows in its space."""
    from cornac.data.text import BaseTokenizer, TfidfVectorizer
    from scipy.sparse.linalg import svds

    vectorizer = TfidfVectorizer(tokenizer=BaseTokenizer(), min_doc_freq=2, max_doc_freq=0.5)
    out = vectorizer.fit_transform(texts_a + texts_b)
    X = (out[1] if isinstance(out, tuple) else out).tocsc()
    X = X[:, np.argsort(np.asarray(vectorizer.vocab.idx2tok[: X.shape[1]], dtype=object))]  # columns by token
    k = max(1, min(dim, min(X.shape) - 1))
    if min(X.shape) <= 3000:  # LAPACK: exact and deterministic
        vt = np.linalg.svd(X.toarray(), full_matrices=False)[2][:k]
    else:
        s, vt = svds(X, k=k, v0=np.full(min(X.shape), 1 / np.sqrt(min(X.shape))), random_state=0)[1:]
        vt = vt[np.argsort(-s)]
    vt = vt * np.where(vt[np.arange(len(vt)), np.abs(vt).argmax(1)] < 0, -1.0, 1.0)[:, None]  # fixed signs
    Z = np.asarray(X @ vt.T)
    Z = (Z - Z.mean(0)) / (Z.std(0) + 1e-8)
    return Z[: len(texts_a)], Z[len(texts_a):]


def image_features(items: dict, ids: list[str], image_dir: str | Path, side: int) -> np.ndarray:
    from PIL import Image

    image_dir = Path(image_dir)
    rows = []
    for iid in ids:
        name = items[iid].get("image")
        if name and (image_dir / name).is_file():
            with Image.open(image_dir / name) as im:
                rows.append(np.asarray(im.convert("RGB").resize((side, side), Image.BILINEAR), np.float32).ravel())
        else:
            rows.append(None)
    dim = side * side * 3
    F = np.stack([r if r is not None else np.full(dim, np.nan, np.float32) for r in rows])
    have = ~np.isnan(F[:, 0])
    if not have.any():
        return np.zeros((len(ids), 0), np.float32)
    mu, sd = F[have].mean(0), F[have].std(0) + 1e-6
    F = (F - mu) / sd
    F[~have] = 0.0
    return F


def loo_split(inter: dict[str, list[int]]):
    users = sorted((u for u in inter if len(inter[u]) >= 3), key=int)
    if not users:
        raise InputError("inter.json: no user has 3 or more items (needed for train / valid / test)")
    return users, {u: inter[u][:-2] for u in users}, {u: inter[u][-2] for u in users}, {u: inter[u][-1] for u in users}


def fit_vbpr(train: dict[str, list[int]], users: list[str], n_items: int, features: np.ndarray, hp: dict, seed: int):
    from cornac.data import ImageModality
    from cornac.models import VBPR

    triples = [(u, int(i), 1.0) for u in users for i in train[u]]
    ds = _uniform_dataset_class().build(triples, global_uid_map={u: k for k, u in enumerate(users)},
                                        global_iid_map={i: i for i in range(n_items)}, seed=seed)
    ds.add_modalities(item_image=ImageModality(features=features.astype(np.float32)))
    model = VBPR(**hp, use_gpu=False, verbose=False, seed=seed)
    with contextlib.redirect_stdout(io.StringIO()):  # VBPR prints "Optimization finished!"
        model.fit(ds)
    return model


def rank_metrics(model, users, exclude: dict[str, list[int]], target: dict[str, int], k: int):
    """Per user: recall@k (hit) and NDCG@k of the one target item, ranked over all items minus ``exclude``."""
    recall, ndcg = np.zeros(len(users)), np.zeros(len(users))
    for row, u in enumerate(users):
        scores = np.array(model.score(row), dtype=np.float64)
        scores[exclude[u]] = -np.inf
        rank = int((scores > scores[target[u]]).sum())
        if rank < k:
            recall[row], ndcg[row] = 1.0, 1.0 / np.log2(rank + 2)
    return recall, ndcg


def _stat(x) -> dict:
    x = np.asarray(x, dtype=float)
    return {"mean": round(float(x.mean()), 6), "std": round(float(x.std(ddof=1)) if x.size > 1 else 0.0, 6)}


def run_utility(
    inter: dict,
    items: dict,
    enriched: dict,
    image_dir: str | Path,
    *,
    seeds: list[int] = (0, 1, 2),
    top_k: int = 20,
    text_dim: int = 16,
    image_side: int = 4,
    vbpr: dict | None = None,
    grid: dict | None = None,
    alpha: float = 0.05,
    min_rel_gain: float = 0.05,
    metric: str = "ndcg",
    aa_seeds: list[int] | None = None,
    n_boot: int = 2000,
    aa_draws: int = 20,
) -> dict:
    """The utility report (module docstring)."""
    from mmgenrec.prompts import item_text

    t0 = time.time()
    seeds = list(seeds)
    n_items = len(items)
    ids = [str(i) for i in range(n_items)]
    if set(items) != set(ids):
        raise InputError(f"item.json: item ids must be 0..{n_items - 1}")
    users, train, valid, test = loo_split(inter)
    original = [item_text(items[i]) for i in ids]
    rich = [item_text(items[i], enriched.get(i)) for i in ids]
    text_o, text_e = text_features(original, rich, text_dim)
    img = image_features(items, ids, image_dir, image_side)
    arms = {"original": np.hstack([text_o, img]), "enriched": np.hstack([text_e, img])}
    exclude_valid = train
    exclude_test = {u: train[u] + [valid[u]] for u in users}

    base = {**VBPR_DEFAULTS, **(vbpr or {})}
    grid = grid or {}
    combos = [dict(zip(grid, vals)) for vals in itertools.product(*grid.values())] or [{}]
    fits = {}  # (combo index, arm, seed) -> (valid metrics, test metrics)

    def evaluate(ci, arm, seed):
        if (ci, arm, seed) not in fits:
            model = fit_vbpr(train, users, n_items, arms[arm], {**base, **combos[ci]}, seed)
            fits[ci, arm, seed] = (rank_metrics(model, users, exclude_valid, valid, top_k),
                                   rank_metrics(model, users, exclude_test, test, top_k))
        return fits[ci, arm, seed]

    mi = 0 if metric == "recall" else 1
    selection = []
    for ci, combo in enumerate(combos):
        v = {arm: float(evaluate(ci, arm, seeds[0])[0][mi].mean()) for arm in arms}
        selection.append({"params": combo, f"valid_{metric}@{top_k}": v, "mean": round(float(np.mean(list(v.values()))), 6)})
        log.info("grid %s: valid %s@%d %s", combo, metric, top_k, v)
    best = max(range(len(combos)), key=lambda ci: (selection[ci]["mean"], -ci))
    per_user = {arm: [evaluate(best, arm, s)[1] for s in seeds] for arm in arms}  # [seed] -> (recall, ndcg)

    result_arms, matrices = {}, {}
    for arm in arms:
        rec = np.stack([r for r, _ in per_user[arm]])  # [seed, user]
        nd = np.stack([n for _, n in per_user[arm]])
        result_arms[arm] = {f"recall@{top_k}": _stat(rec.mean(1)), f"ndcg@{top_k}": _stat(nd.mean(1)),
                            f"valid_{metric}@{top_k}": _stat([evaluate(best, arm, s)[0][mi].mean() for s in seeds])}
        matrices[arm] = {"recall": rec, "ndcg": nd}

    comparison = {}
    for m in ("recall", "ndcg"):
        a, b = matrices["original"][m], matrices["enriched"][m]
        du = b.mean(0) - a.mean(0)
        c = compare_arms(a, b, alpha=alpha, min_rel_gain=min_rel_gain, n_boot=n_boot, seed=0, paired_seeds=True)
        comparison[f"{m}@{top_k}"] = {
            "relative_change": c["relative_gain"], "ci": c["ci"], "significant": c["significant"],
            "verdict": c["verdict"], "mean_difference": round(float(du.mean()), 6),
            "per_seed_difference": [round(float(x), 6) for x in b.mean(1) - a.mean(1)],
            "users_better": int((du > 0).sum()), "users_worse": int((du < 0).sum()),
            "users_equal": int((du == 0).sum()),
        }
    verdict = comparison[f"{metric}@{top_k}"]["verdict"]

    # A/A: the original arm with a second, disjoint seed set against itself (must be no_difference)
    aa_seeds = list(aa_seeds) if aa_seeds is not None else [max(seeds) + 1 + i for i in range(len(seeds))]
    if set(aa_seeds) & set(seeds):
        raise ValueError(f"enrich.utility.aa_seeds {aa_seeds} must not share a seed with seeds {seeds}")
    aa = None
    if aa_seeds:
        aa_second = np.stack([evaluate(best, "original", s)[1][mi] for s in aa_seeds])
        aa = {"seeds": aa_seeds, **aa_calibration(matrices["original"][metric], aa_second, alpha=alpha,
                                                  min_rel_gain=min_rel_gain, n_boot=n_boot, seed=1,
                                                  max_draws=aa_draws)}
        log.info("A/A (original, seeds %s vs %s): %s", seeds, aa_seeds, aa["result"])
    lo_hi = f"{1 - alpha:.0%}"
    rule = (f"{metric}@{top_k}: relative gain of the mean (enriched / original - 1) with its {lo_hi} bootstrap "
            f"interval (seeds, then users resampled; {n_boot} replicates): 'helps' if the interval lies above 0 and "
            f"the gain >= {min_rel_gain}; 'hurts' if it lies below 0 and the gain <= -{min_rel_gain}; "
            f"else 'no_difference'")
    return {
        "verdict": verdict, "rule": rule, "metric": f"{metric}@{top_k}", "alpha": alpha,
        "arms": result_arms, "comparison": comparison, **({"aa": aa} if aa else {}),
        "hyperparameters": {**base, **combos[best]}, "selection": selection, "seeds": seeds,
        "data": {"users": len(users), "items": n_items, "train_interactions": sum(len(v) for v in train.values()),
                 "items_enriched": sum(i in enriched for i in ids),
                 "features": {"text_dim": int(text_o.shape[1]), "image_dim": int(img.shape[1])}},
        "model": "cornac.models.VBPR", "text_encoder": "cornac TfidfVectorizer (union of both arms) + scipy svds",
        "seconds": round(time.time() - t0, 1),
    }


def utility_markdown(report: dict, name: str) -> str:
    m = report["metric"].split("@")[1]
    lines = [f"### Does the enriched text help? {name}", "",
             f"Verdict: **{report['verdict']}** ({report['rule']}).", "",
             f"VBPR, {len(report['seeds'])} seeds, {report['data']['users']} users, {report['data']['items']} items; "
             f"hyper-parameters chosen on validation: `{report['hyperparameters']}`.", "",
             f"| text | Recall@{m} | NDCG@{m} |", "|---|---|---|"]
    for arm, r in report["arms"].items():
        lines.append(f"| {arm} | {r[f'recall@{m}']['mean']:.4f} ± {r[f'recall@{m}']['std']:.4f} | "
                     f"{r[f'ndcg@{m}']['mean']:.4f} ± {r[f'ndcg@{m}']['std']:.4f} |")
    lines += ["", f"| metric | mean diff | relative gain | {1 - report.get('alpha', 0.05):.0%} CI "
              "(seeds + users bootstrap) | users better / worse | verdict |", "|---|---:|---:|---|---|---|"]
    for key, c in report["comparison"].items():
        rel = f"{c['relative_change']:+.1%}" if c["relative_change"] is not None else "n/a"
        ci = f"[{c['ci'][0]:+.1%}, {c['ci'][1]:+.1%}]" if c["ci"][0] is not None else "n/a"
        lines.append(f"| {key} | {c['mean_difference']:+.4f} | {rel} | {ci} | {c['users_better']} / "
                     f"{c['users_worse']} | {c['verdict']} |")
    if "aa" in report:
        aa, r = report["aa"], report["aa"]["result"]
        rel = f"{r['relative_gain']:+.1%}" if r["relative_gain"] is not None else "n/a"
        lines += ["", f"A/A calibration (original text, seeds {report['seeds']} vs {aa['seeds']}, same procedure): "
                  f"**{r['verdict']}** (relative gain {rel}, CI [{r['ci'][0]:+.1%}, {r['ci'][1]:+.1%}]); "
                  f"false-positive rate over {aa['draws']} splits of the pooled seeds: {aa['false_positive_rate']:.0%} "
                  f"at alpha = {aa['alpha']}."]
    return "\n".join(lines) + "\n"


def utility_files(inter_json, item_json, enriched_json, image_dir, out_json, out_md, name: str, **cfg) -> dict:
    from mmgenrec.io import read_json, write_json, write_text

    report = run_utility(read_json(inter_json), read_json(item_json), read_json(enriched_json), image_dir, **cfg)
    write_json(out_json, report)
    write_text(out_md, utility_markdown(report, name))
    log.info("%s: enriched text %s (%s)", name, report["verdict"], report["comparison"][report["metric"]])
    return report
