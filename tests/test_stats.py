"""Intervals against hand-computed values and the worked examples of docs/methods.md, "Intervals"."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import bootstrap

from cxloop.tasks import stats


def _nps_counts(n: int, p: float = 0.4, d: float = 0.2) -> tuple[float, float, float]:
    return n * p, n * (1 - p - d), n * d


@pytest.mark.parametrize(("n", "margin"), [(30, 25), (100, 14), (400, 7)])
def test_nps_adjusted_wald_margins_match_domain_examples(n: int, margin: float) -> None:
    lo, hi = stats.adjusted_wald_net(*_nps_counts(n))
    assert lo is not None and hi is not None
    assert (hi - lo) / 2 == pytest.approx(margin, abs=0.6)


def test_nps_adjusted_wald_by_hand() -> None:
    # n=30: 12 promoters, 12 passives, 6 detractors. Adjusted: p'=12.75/33, d'=6.75/33.
    p, d = 12.75 / 33, 6.75 / 33
    se = math.sqrt((p + d - (p - d) ** 2) / 33)
    lo, hi = stats.adjusted_wald_net(12, 12, 6)
    assert lo == pytest.approx((p - d - 1.959964 * se) * 100, abs=1e-4)
    assert hi == pytest.approx((p - d + 1.959964 * se) * 100, abs=1e-4)
    assert stats.net_score(12, 12, 6) == pytest.approx(20.0)


def test_nps_edge_cases() -> None:
    assert stats.adjusted_wald_net(0, 0, 0) == (None, None)
    assert stats.net_score(0, 0, 0) is None
    lo, hi = stats.adjusted_wald_net(50, 0, 0)  # all promoters: interval stays inside the scale
    assert lo is not None and hi == 100.0 and 80 < lo < 100
    lo, hi = stats.adjusted_wald_net(1, 0, 0)  # a single response: very wide
    assert lo is not None and hi is not None and hi - lo > 100


def test_nps_difference_z_by_hand() -> None:
    a, b = (12.0, 12.0, 6.0), (20.0, 8.0, 2.0)
    diff, lo, hi, z = stats.net_difference(a, b)
    pa, da = 12.75 / 33, 6.75 / 33
    pb, db = 20.75 / 33, 2.75 / 33
    va, vb = (pa + da - (pa - da) ** 2) / 33, (pb + db - (pb - db) ** 2) / 33
    assert diff == pytest.approx(((pb - db) - (pa - da)) * 100)
    assert z == pytest.approx(((pb - db) - (pa - da)) / math.sqrt(va + vb))
    assert lo is not None and hi is not None and diff is not None and lo < diff < hi
    assert stats.net_difference((0, 0, 0), b) == (None, None, None, None)


def test_wilson_matches_hand_formula() -> None:
    count, n, z = 40, 100, 1.959964
    phat = count / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n))
    lo, hi = stats.wilson(count, n)
    assert lo == pytest.approx((centre - half) * 100, abs=1e-4)
    assert hi == pytest.approx((centre + half) * 100, abs=1e-4)


def test_wilson_edges() -> None:
    assert stats.wilson(0, 0) == (None, None)
    lo, hi = stats.wilson(0, 20)
    assert lo == pytest.approx(0.0) and hi is not None and 0 < hi < 20
    lo, hi = stats.wilson(20, 20)
    assert hi == pytest.approx(100.0) and lo is not None and 80 < lo < 100
    lo_many, hi_many = stats.wilson_many([0, 5, 3], [0, 10, 3])
    assert math.isnan(lo_many[0]) and lo_many[1] < 50 < hi_many[1]


def test_hist_quantile_equals_numpy_on_raw_rows() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        raw = rng.integers(0, 12, rng.integers(1, 40)).astype(float)
        values, counts = np.unique(raw, return_counts=True)
        for q in (0.5, 0.9):
            assert stats.hist_quantile(values, counts, q) == pytest.approx(
                float(np.quantile(raw, q, method="averaged_inverted_cdf")))
    assert stats.hist_quantile([1, 2, 3, 4], [1, 1, 1, 1], 0.5) == 2.5
    assert stats.hist_quantile([], [], 0.5) is None


def test_exact_quantile_bootstrap_agrees_with_resampling() -> None:
    rng = np.random.default_rng(5)
    raw = np.round(rng.exponential(8, 300), 1)
    values, counts = np.unique(raw, return_counts=True)
    lo, hi = stats.quantile_interval(values, counts, 0.5)
    # The B -> infinity limit of scipy's percentile bootstrap of the lower median order statistic.
    res = bootstrap((raw,), lambda x, axis: np.quantile(x, 0.5, axis=axis, method="inverted_cdf"),
                    method="percentile", n_resamples=4000, random_state=1)
    assert lo == pytest.approx(res.confidence_interval.low, abs=0.35)
    assert hi == pytest.approx(res.confidence_interval.high, abs=0.35)
    assert lo is not None and hi is not None and lo <= float(np.median(raw)) <= hi


def test_quantile_interval_single_response_and_constant() -> None:
    assert stats.quantile_interval([5.0], [1], 0.9) == (5.0, 5.0)
    assert stats.quantile_interval([2.0], [50], 0.5) == (2.0, 2.0)
    assert stats.quantile_interval([], [], 0.5) == (None, None)


def test_bootstrap_mean_close_to_t_interval_and_deterministic() -> None:
    values = np.arange(1.0, 8.0)
    counts = np.array([5, 10, 15, 30, 40, 30, 20], dtype=float)
    raw = np.repeat(values, counts.astype(int))
    se = raw.std(ddof=1) / math.sqrt(raw.size)
    lo, hi = stats.bootstrap_mean(values, counts, 2000, stats.rng_for("ces", "x"))
    assert lo == pytest.approx(raw.mean() - 1.96 * se, abs=0.04)
    assert hi == pytest.approx(raw.mean() + 1.96 * se, abs=0.04)
    assert stats.bootstrap_mean(values, counts, 2000, stats.rng_for("ces", "x")) == (lo, hi)
    assert stats.bootstrap_mean(values, np.zeros(7), 99, stats.rng_for("x")) == (None, None)


def test_mean_of_nets_delta_by_hand_and_against_bootstrap() -> None:
    # Two questions, complete answers: the index is the mean of the per-respondent mean score.
    answered = np.array([[True, True], [True, True], [True, False], [False, True]])
    scores = np.array([[100.0, 100.0], [-100.0, 0.0], [100.0, 0.0], [0.0, -100.0]])
    counts = np.array([30.0, 20.0, 0.0, 0.0])
    est, se = stats.mean_of_nets_se(counts, answered, scores)
    per_resp = np.repeat([100.0, -50.0], [30, 20])
    assert est == pytest.approx(per_resp.mean())
    assert se == pytest.approx(per_resp.std(ddof=0) / math.sqrt(50))
    # With partial answers the delta SE matches a respondent bootstrap of the mean of nets.
    counts = np.array([30.0, 20.0, 15.0, 10.0])
    est, se = stats.mean_of_nets_se(counts, answered, scores)
    rng = np.random.default_rng(0)
    draws = rng.multinomial(75, counts / 75, size=4000).astype(float)
    ans = answered.astype(float)
    nets = (draws @ (ans * scores)) / (draws @ ans)
    boot = nets.mean(axis=1)
    assert est == pytest.approx(((30 * 100 - 20 * 100 + 15 * 100) / 65 + (30 * 100 - 10 * 100) / 60) / 2)
    assert se == pytest.approx(boot.std(), rel=0.08)
    assert stats.mean_of_nets_se(np.zeros(4), answered, scores) == (None, None)
