"""The enrichment verdict's one procedure (seeds + users bootstrap of the relative gain) against known answers:
exact cases, the seed-to-seed spread entering the interval, A/A at about rate alpha on identical distributions, and
a planted large effect found."""

from __future__ import annotations

import numpy as np
import pytest

from mmgenrec.enrich.verdict import aa_calibration, bootstrap_relative_gain, compare_arms


def _arm(rng, p_user, n_seeds, seed_sd, gain=1.0):
    """Hits of a recommender: user u hits with probability p_u x gain x exp(seed effect); [seed, user]."""
    effect = rng.normal(0.0, seed_sd, size=(n_seeds, 1))
    p = np.clip(p_user[None, :] * gain * np.exp(effect), 0, 1)
    return (rng.random((n_seeds, len(p_user))) < p).astype(float)


def test_exact_cases():
    rng = np.random.default_rng(0)
    a = rng.random((3, 50)) + 0.1
    same = compare_arms(a, a.copy(), paired_seeds=True, n_boot=300)
    assert same["relative_gain"] == 0.0 and same["ci"] == [0.0, 0.0]  # every replicate: the same sub-matrix twice
    assert same["verdict"] == "no_difference" and not same["significant"]
    double = compare_arms(a, 2 * a, paired_seeds=True, n_boot=300)
    assert double["relative_gain"] == 1.0 and double["ci"] == [1.0, 1.0]  # the ratio survives any resampling
    assert double["verdict"] == "helps"
    half = compare_arms(a, 0.5 * a, paired_seeds=True, n_boot=300)
    assert half["relative_gain"] == -0.5 and half["verdict"] == "hurts"
    small = compare_arms(a, 1.01 * a, paired_seeds=True, n_boot=300, min_rel_gain=0.05)
    assert small["significant"] and small["verdict"] == "no_difference"  # significant but below min_rel_gain
    zero = compare_arms(np.zeros((3, 4)), np.ones((3, 4)))
    assert zero["relative_gain"] is None and zero["verdict"] == "no_difference"


def test_seed_spread_enters_the_interval():
    """Every user has the same value within a seed: only the seeds vary. Arm b's mean is 20 % higher, but arm a's
    seeds spread from 0.6 to 1.4: resampling users alone would give the interval [0.2, 0.2] ("helps"); resampling
    seeds puts 0 inside it."""
    users = np.ones((1, 40))
    a = np.array([[1.0], [1.4], [0.6]]) * users
    b = np.array([[1.1], [1.3], [1.2]]) * users
    r = compare_arms(a, b, n_boot=2000)
    assert r["relative_gain"] == pytest.approx(0.2)
    assert r["ci"][0] < 0 < r["ci"][1] and r["verdict"] == "no_difference"
    # with the seeds paired, the replicate's seeds are the same rows for both arms: rel = b_s / a_s - 1 mixtures
    reps = bootstrap_relative_gain(a, b, n_boot=500, paired_seeds=True)
    assert reps.min() >= 1.3 / 1.4 - 1 - 0.2 and reps.max() <= 1.2 / 0.6 - 1 + 0.5


def test_aa_identical_distributions_come_out_no_difference_at_about_alpha():
    """200 A/A draws (3 seeds against 3 other seeds, the same users, a seed effect of 10 %): the interval excludes
    0 in about alpha of them. Ignoring the seeds (users-only resampling: tried) rejects in 17 %."""
    rng = np.random.default_rng(1)
    alpha, draws = 0.05, 200
    significant = []
    for d in range(draws):
        p_user = rng.beta(1, 4, size=300)
        r = compare_arms(_arm(rng, p_user, 3, 0.1), _arm(rng, p_user, 3, 0.1), alpha=alpha, n_boot=400, seed=d)
        significant.append(r["significant"])
    rate = float(np.mean(significant))
    assert rate <= 2 * alpha, rate


def test_planted_large_effect_helps():
    rng = np.random.default_rng(2)
    verdicts = []
    for d in range(40):
        p_user = rng.beta(1, 4, size=300)
        a, b = _arm(rng, p_user, 3, 0.1), _arm(rng, p_user, 3, 0.1, gain=1.6)
        verdicts.append(compare_arms(a, b, n_boot=400, seed=d, min_rel_gain=0.05)["verdict"])
    assert verdicts.count("helps") >= 36, verdicts  # power >= 90 % for a +60 % effect


def test_aa_calibration_splits():
    rng = np.random.default_rng(3)
    p_user = rng.beta(1, 4, size=200)
    first, second = _arm(rng, p_user, 3, 0.05), _arm(rng, p_user, 3, 0.05)
    aa = aa_calibration(first, second, n_boot=300)
    assert aa["draws"] == 10  # C(6, 3) / 2 distinct halvings of 6 seeds
    assert aa["result"] == compare_arms(first, second, n_boot=300, seed=0)  # the given split is the first draw
    assert aa["result"]["verdict"] == "no_difference"
    assert aa["false_positive_rate"] in {k / 10 for k in range(11)}  # a share of the 10 splits
    planted = aa_calibration(first, 3 * second, n_boot=300)
    assert planted["result"]["verdict"] == "helps"  # the calibration can fail: a real difference is seen
