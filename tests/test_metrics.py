import math

import numpy as np
import pytest

from mmgenrec.evaluate.metrics import per_user_metrics, popularity_topk, rank_metrics, target_ranks

KEYS = ["HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR"]


def test_target_at_rank_0_2_6_12_and_absent():
    topk = [
        [7, 1, 2, 3, 4],                        # rank 0
        [1, 2, 7, 3, 4],                        # rank 2
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],        # rank 6: in top 10, not top 5
        list(range(20, 32)) + [7],              # rank 12: outside top 10, but counts for MRR
        [1, 2, 3],                              # absent (short list)
    ]
    targets = [7] * 5
    per_user = per_user_metrics(topk, targets, ks=(1, 5, 10), ndcg_ks=(5, 10))
    assert list(per_user) == KEYS
    np.testing.assert_array_equal(target_ranks(topk, targets), [0, 2, 6, 12, -1])
    np.testing.assert_array_equal(per_user["HR@1"], [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(per_user["HR@5"], [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(per_user["HR@10"], [1, 1, 1, 0, 0])
    np.testing.assert_allclose(per_user["NDCG@5"], [1.0, 0.5, 0, 0, 0])  # 1/log2(4) = 0.5
    np.testing.assert_allclose(per_user["NDCG@10"], [1.0, 0.5, 1 / 3.0, 0, 0])  # 1/log2(8) = 1/3
    np.testing.assert_allclose(per_user["MRR"], [1.0, 1 / 3, 1 / 7, 1 / 13, 0])

    means = rank_metrics(topk, targets, ks=(1, 5, 10), ndcg_ks=(5, 10))
    assert list(means) == KEYS
    assert all(isinstance(v, float) for v in means.values())
    assert means["HR@1"] == pytest.approx(0.2)
    assert means["HR@5"] == pytest.approx(0.4)
    assert means["HR@10"] == pytest.approx(0.6)
    assert means["NDCG@5"] == pytest.approx(1.5 / 5)
    assert means["NDCG@10"] == pytest.approx((1.5 + 1 / 3) / 5)
    assert means["MRR"] == pytest.approx((1 + 1 / 3 + 1 / 7 + 1 / 13) / 5)


def test_ndcg_formula_every_rank_and_first_occurrence():
    for rank in range(10):
        items = [100 + i for i in range(10)]
        items[rank] = 5
        m = rank_metrics([items + [5]], [5], ks=(10,), ndcg_ks=(10,))  # a duplicate later does not count
        assert m["NDCG@10"] == pytest.approx(1 / math.log2(rank + 2))
        assert m["MRR"] == pytest.approx(1 / (rank + 1))


def test_numpy_input_and_custom_ks():
    topk = np.array([[3, 4, 5], [5, 4, 3]])
    m = rank_metrics(topk, np.array([5, 5]), ks=(2, 3), ndcg_ks=(3,))
    assert list(m) == ["HR@2", "HR@3", "NDCG@3", "MRR"]
    assert m["HR@2"] == 0.5 and m["HR@3"] == 1.0
    assert m["NDCG@3"] == pytest.approx((0.5 + 1.0) / 2)


def test_length_mismatch_and_bad_ks():
    with pytest.raises(ValueError, match="2 ranked lists but 3 targets"):
        rank_metrics([[1], [2]], [1, 2, 3])
    with pytest.raises(ValueError):
        per_user_metrics([[1]], [1, 2])
    with pytest.raises(ValueError):
        rank_metrics([[1]], [1], ks=(0,))
    with pytest.raises(ValueError, match="no users"):
        rank_metrics([], [])


def test_popularity_order_and_ties():
    train = [[3, 1, 3], [2, 1], [3, 4], [4, 0]]
    # counts: 0:1, 1:2, 2:1, 3:3, 4:2, 5:0
    assert popularity_topk(train, n_items=6, k=6) == [3, 1, 4, 0, 2, 5]
    assert popularity_topk(train, n_items=6, k=3) == [3, 1, 4]
    assert popularity_topk([], n_items=3, k=5) == [0, 1, 2]
    with pytest.raises(ValueError):
        popularity_topk([[7]], n_items=3, k=2)


# ------------------------------------------------------------------------------------------- bootstrap, collisions
from mmgenrec.evaluate.metrics import collided_items, collision_groups, paired_bootstrap  # noqa: E402


def test_paired_bootstrap_two_users_exact_distribution():
    """Two users with differences 0 and 1: a resample's mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4
    (hand-computed), so the 90 % interval is [0, 1] and the p-value of "no difference" is 2 x 1/4 = 0.5."""
    r = paired_bootstrap([1.0, 1.0], [1.0, 0.0], n_boot=20000, seed=1, ci=0.9)
    assert r["diff"] == 0.5 and r["ci_low"] == 0.0 and r["ci_high"] == 1.0
    assert r["p_value"] == pytest.approx(0.5, abs=0.02)
    assert r["n_users"] == 2 and r["n_boot"] == 20000


def test_paired_bootstrap_interval_width_is_the_standard_error():
    """Known property: the percentile interval of a mean of n i.i.d. differences is about
    mean +- z * sd / sqrt(n) (z = 1.96 at 95 %, 1.645 at 90 %)."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.3, 1.0, 400), rng.normal(0.0, 1.0, 400)
    d = a - b
    se = d.std() / np.sqrt(d.size)
    for ci, z in ((0.95, 1.959964), (0.9, 1.644854)):
        r = paired_bootstrap(a, b, n_boot=4000, seed=2, ci=ci)
        assert r["ci_high"] - r["ci_low"] == pytest.approx(2 * z * se, rel=0.08)
        assert (r["ci_low"] + r["ci_high"]) / 2 == pytest.approx(d.mean(), abs=0.15 * se)
    assert r["p_value"] < 0.01  # a 0.3 shift over 400 users is about 4 standard errors


def test_paired_bootstrap_symmetries():
    a = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    b = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    r = paired_bootstrap(a, b, n_boot=300, seed=3, ci=0.9)
    assert r["diff"] == pytest.approx(2 / 6)
    swapped = paired_bootstrap(b, a, n_boot=300, seed=3, ci=0.9)  # same draws, differences negated
    assert swapped["diff"] == -r["diff"] and swapped["ci_low"] == pytest.approx(-r["ci_high"])
    assert swapped["ci_high"] == pytest.approx(-r["ci_low"]) and swapped["p_value"] == r["p_value"]
    shifted = paired_bootstrap(a + 0.25, b, n_boot=300, seed=3, ci=0.9)  # every difference + 0.25
    assert shifted["ci_low"] == pytest.approx(r["ci_low"] + 0.25)
    assert shifted["ci_high"] == pytest.approx(r["ci_high"] + 0.25)
    assert paired_bootstrap(a, b, n_boot=300, seed=3, ci=0.9, chunk=7) == r  # chunking must not change the draws
    assert paired_bootstrap(a, b, n_boot=300, seed=3, ci=0.9) == r  # seeded: reproducible


def test_paired_bootstrap_degenerate_cases():
    same = paired_bootstrap([0.2, 0.5, 0.9], [0.2, 0.5, 0.9], n_boot=100)
    assert same["diff"] == same["ci_low"] == same["ci_high"] == 0.0 and same["p_value"] == 1.0
    const = paired_bootstrap([1.0] * 5, [0.0] * 5, n_boot=100)
    assert const["ci_low"] == const["ci_high"] == 1.0 and const["p_value"] == 0.0
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        paired_bootstrap([], [])


def test_collision_groups():
    index = {0: ["<a_1>", "<b_2>"], 1: ["<a_1>", "<b_3>"], 2: ["<a_1>", "<b_2>"], 3: ["<a_0>", "<b_0>"]}
    groups = collision_groups(index)
    assert groups[("<a_1>", "<b_2>")] == [0, 2] and len(groups) == 3
    assert collided_items(index) == {0, 2}
