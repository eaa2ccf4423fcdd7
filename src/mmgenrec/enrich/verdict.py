"""One procedure for the enrichment verdict: a two-level (seeds, then users) bootstrap of the relative gain.

The data of one arm is a matrix ``[seed, user]`` of a per-user metric (e.g. NDCG@20 of the user's test item for the
model trained with that seed). The quantity of interest is the **relative gain** of the mean,
``rel = mean(B) / mean(A) - 1``; the test, the confidence interval and the reported effect size are all that one
quantity:

* **Bootstrap**: each replicate resamples the seeds of each arm with replacement (the SAME seed indices for both arms
  when they were trained with the same seeds: seed *s* gives both arms the same initialisation and negatives, so
  the seed is the pairing unit; independent draws otherwise, as in the A/A run), then the users with replacement (the
  same users for both arms: users are paired), and recomputes ``rel`` on the resampled ``[seed, user]`` sub-matrix.
  Resampling both levels of a crossed design (Owen's "pigeonhole" bootstrap) counts the seed x user interaction
  twice, so the interval errs on the wide (conservative) side, never on the narrow side through ignoring seeds.
* **Interval**: the percentile interval ``[alpha/2, 1 - alpha/2]`` of the replicates.
* **Verdict**: ``helps`` when the interval lies above 0 and ``rel >= min_rel_gain``; ``hurts`` when it lies below 0
  and ``rel <= -min_rel_gain``; else ``no_difference``. (``significant`` = the interval excludes 0: the test at
  level ``alpha``.)
* **A/A calibration** (:func:`aa_calibration`): the original arm trained with a second, disjoint set of seeds is
  compared with itself the same way; it must come out ``no_difference``. Over every split of the pooled seeds into
  two sets of the arm's size, the share of significant splits is the observed false-positive rate at ``alpha``.
"""

from __future__ import annotations

import itertools

import numpy as np

CHUNK = 64  # bootstrap replicates per vectorised block (memory: CHUNK x users floats)


def _as_matrix(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name}: expected a [seed, user] matrix, got shape {x.shape}")
    return x


def _widen_seed_effect(x: np.ndarray) -> np.ndarray:
    """Each seed's offset from the mean over seeds scaled by sqrt(S / (S - 1)): resampling S seeds has the variance
    of the ``1/S``-normalised sample variance, too small by (S - 1) / S (a third with 3 seeds)."""
    s = x.shape[0]
    if s < 2:
        return x
    row = x.mean(1, keepdims=True)
    return x + (np.sqrt(s / (s - 1)) - 1.0) * (row - row.mean())


def bootstrap_relative_gain(a, b, *, n_boot: int = 2000, seed: int = 0, paired_seeds: bool = False) -> np.ndarray:
    """``n_boot`` bootstrap replicates of ``mean(b) / mean(a) - 1`` (seeds, then users resampled; module doc)."""
    a, b = _as_matrix(a, "a"), _as_matrix(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the arms have {a.shape[1]} and {b.shape[1]} users: users must be paired")
    if paired_seeds and a.shape[0] != b.shape[0]:
        raise ValueError("paired seeds need the same number of seeds in both arms")
    rng = np.random.default_rng(seed)
    a, b = _widen_seed_effect(a), _widen_seed_effect(b)
    sa, sb, n_users = a.shape[0], b.shape[0], a.shape[1]
    out = np.empty(n_boot)
    for start in range(0, n_boot, CHUNK):
        m = min(CHUNK, n_boot - start)
        ca = rng.multinomial(sa, np.full(sa, 1 / sa), size=m)  # seed counts per replicate
        cb = ca if paired_seeds else rng.multinomial(sb, np.full(sb, 1 / sb), size=m)
        cu = rng.multinomial(n_users, np.full(n_users, 1 / n_users), size=m)  # user counts per replicate
        mean_a = ((ca @ a) * cu).sum(1) / (sa * n_users)
        mean_b = ((cb @ b) * cu).sum(1) / (sb * n_users)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start:start + m] = np.where(mean_a > 0, mean_b / mean_a - 1.0, np.nan)
    return out


def compare_arms(a, b, *, alpha: float = 0.05, min_rel_gain: float = 0.05, n_boot: int = 2000, seed: int = 0,
                 paired_seeds: bool = False) -> dict:
    """The verdict of arm ``b`` against arm ``a`` (module doc): relative gain, its bootstrap interval, verdict."""
    a, b = _as_matrix(a, "a"), _as_matrix(b, "b")
    mean_a, mean_b = float(a.mean()), float(b.mean())
    if mean_a <= 0:  # the relative gain is undefined: nothing can be claimed
        return {"mean_a": mean_a, "mean_b": mean_b, "relative_gain": None, "ci": [None, None],
                "significant": False, "verdict": "no_difference", "n_boot": n_boot}
    rel = mean_b / mean_a - 1.0
    reps = bootstrap_relative_gain(a, b, n_boot=n_boot, seed=seed, paired_seeds=paired_seeds)
    reps = reps[np.isfinite(reps)]
    lo, hi = (np.quantile(reps, [alpha / 2, 1 - alpha / 2]) if reps.size else (np.nan, np.nan))
    significant = bool(lo > 0 or hi < 0)
    verdict = "helps" if lo > 0 and rel >= min_rel_gain else "hurts" if hi < 0 and rel <= -min_rel_gain \
        else "no_difference"
    return {"mean_a": round(mean_a, 6), "mean_b": round(mean_b, 6), "relative_gain": round(rel, 6),
            "ci": [round(float(lo), 6), round(float(hi), 6)], "significant": significant, "verdict": verdict,
            "n_boot": n_boot}


def aa_calibration(first, second, *, alpha: float = 0.05, min_rel_gain: float = 0.05, n_boot: int = 2000,
                   seed: int = 0, max_draws: int = 20) -> dict:
    """A/A: the same arm trained with two disjoint seed sets (``first``, ``second``: ``[seed, user]``).

    ``result``: ``second`` against ``first`` (must be ``no_difference``). ``false_positive_rate``: over the distinct
    splits of the pooled seeds into two sets of ``len(first)`` (at most ``max_draws``, the given split first), the
    share whose interval excludes 0 (the test at ``alpha``); ``verdict_rate``: the share whose verdict is not
    ``no_difference``."""
    first, second = _as_matrix(first, "first"), _as_matrix(second, "second")
    pool = np.vstack([first, second])
    k, n = first.shape[0], pool.shape[0]
    splits = []
    for left in itertools.combinations(range(n), k):
        right = tuple(i for i in range(n) if i not in left)
        if (right, left) not in splits and len(right) >= 1:
            splits.append((left, right))
    splits = splits[:max_draws]  # the first is (0..k-1) vs the rest: the given split
    draws = [compare_arms(pool[list(left)], pool[list(right)], alpha=alpha, min_rel_gain=min_rel_gain,
                          n_boot=n_boot, seed=seed + d) for d, (left, right) in enumerate(splits)]
    return {"result": draws[0], "draws": len(draws),
            "false_positive_rate": round(float(np.mean([d["significant"] for d in draws])), 4),
            "verdict_rate": round(float(np.mean([d["verdict"] != "no_difference" for d in draws])), 4),
            "alpha": alpha}
