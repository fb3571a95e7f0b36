"""Key-driver analysis (cxloop.tasks.drivers) on planted data whose true importances are known.

The population relative weights are computed from the population correlation matrix, so an estimate
can be checked against the truth, not against itself. Seeds are fixed: every test is deterministic.
"""

from __future__ import annotations

from itertools import combinations
from math import factorial

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from cxloop.tasks.drivers import (
    analyse_drivers,
    block_moments,
    nearest_correlation,
    pairwise_correlations,
    priorities,
    relative_weights,
    shapley_r2,
)

NAMES = ["seat", "food", "staff", "wifi", "noise"]
# Drivers correlated 0.5 with each other; "noise" has no effect on the outcome.
BETA = np.array([0.6, 0.3, 0.3, 0.15, 0.0])
COV = 0.5 * np.ones((5, 5)) + 0.5 * np.eye(5)


def population_r() -> np.ndarray:
    """The population correlation matrix of (outcome, drivers) for y = X beta + N(0, 1)."""
    var_y = BETA @ COV @ BETA + 1.0
    r = np.eye(6)
    r[1:, 1:] = COV
    r[1:, 0] = r[0, 1:] = COV @ BETA / np.sqrt(var_y)
    return r


def planted(n: int, seed: int, missing: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.multivariate_normal(np.zeros(5), COV, size=n)
    y = x @ BETA + rng.normal(size=n)
    if missing:
        x[rng.random(x.shape) < missing] = np.nan
    return y, x


def test_planted_correlated_weights_are_recovered_within_their_intervals() -> None:
    truth = relative_weights(population_r())
    y, x = planted(4000, seed=11)
    result = analyse_drivers(y, x, NAMES, confidence=0.99, seed_key=("planted",))
    assert result is not None
    by_name = {d.driver: d for d in result.drivers}
    for name, true_w in zip(NAMES, truth, strict=True):
        d = by_name[name]
        assert d.weight_low <= true_w <= d.weight_high, (name, d.weight_low, true_w, d.weight_high)
        assert d.weight_high - d.weight_low < 0.05  # an interval, not "anything goes"
    true_r2 = float(truth.sum())
    assert result.r2_low <= true_r2 <= result.r2_high


def test_a_driver_without_effect_is_ranked_below_every_driver_with_one() -> None:
    y, x = planted(3000, seed=5)
    result = analyse_drivers(y, x, NAMES, seed_key=("null",))
    assert result is not None
    by_name = {d.driver: d for d in result.drivers}
    for name in NAMES[:-1]:
        assert by_name[name].rank < by_name["noise"].rank
        assert by_name[name].weight > by_name["noise"].weight
    assert result.ranked()[-1].driver == "noise"


def test_equal_drivers_are_tied_not_ranked() -> None:
    """food and staff have the same true weight: neither may be put above the other."""
    y, x = planted(3000, seed=8)
    result = analyse_drivers(y, x, NAMES, seed_key=("ties",))
    assert result is not None
    by_name = {d.driver: d for d in result.drivers}
    assert by_name["food"].rank == by_name["staff"].rank
    assert by_name["food"].tied and by_name["staff"].tied
    assert by_name["seat"].rank == 1 and not by_name["seat"].tied  # a clear leader stays alone


def test_not_rated_answers_do_not_bias_the_importances() -> None:
    """30% of every rating missing at random: the estimates still cover the truth; filling the
    gaps with zero (what a naive pipeline does with "not rated") would not."""
    truth = relative_weights(population_r())
    y, x = planted(6000, seed=21, missing=0.3)
    result = analyse_drivers(y, x, NAMES, confidence=0.99, seed_key=("missing",))
    assert result is not None
    for d, true_w in zip(result.drivers, truth, strict=True):
        assert d.weight_low <= true_w <= d.weight_high, (d.driver, d.weight_low, true_w, d.weight_high)
        assert d.n == pytest.approx(6000 * 0.7, rel=0.05)
    zero_filled = analyse_drivers(y, np.nan_to_num(x + 3.0), NAMES, seed_key=("missing",))  # ratings > 0
    assert zero_filled is not None
    assert zero_filled.r2 < result.r2_low  # the zero-filled analysis is biased, so this test can fail


def test_importances_sum_to_r_squared_and_match_exact_shapley() -> None:
    y, x = planted(2000, seed=3)
    result = analyse_drivers(y, x, NAMES, seed_key=("sum",))
    assert result is not None
    ols = sm.OLS(y, sm.add_constant(x)).fit()
    assert sum(d.weight for d in result.drivers) == pytest.approx(ols.rsquared, abs=1e-9)
    assert result.r2 == pytest.approx(ols.rsquared, abs=1e-9)
    assert sum(d.share for d in result.drivers) == pytest.approx(100.0)
    # Shapley decomposition from the correlation matrix against one from OLS fits of every subset.
    r = np.corrcoef(np.column_stack([y, x]), rowvar=False)
    phi = shapley_r2(r)
    brute = brute_force_shapley(y, x)
    np.testing.assert_allclose(phi, brute, atol=1e-9)
    assert phi.sum() == pytest.approx(ols.rsquared, abs=1e-9)
    weights = np.array([d.weight for d in result.drivers])
    np.testing.assert_allclose(weights, phi, atol=0.01)  # relative weights approximate Shapley


def brute_force_shapley(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Shapley values of R^2 by fitting OLS (statsmodels) on every subset of drivers."""
    k = x.shape[1]
    r2: dict[tuple[int, ...], float] = {(): 0.0}
    for size in range(1, k + 1):
        for subset in combinations(range(k), size):
            r2[subset] = sm.OLS(y, sm.add_constant(x[:, subset])).fit().rsquared
    phi = np.zeros(k)
    for j in range(k):
        for subset, value in r2.items():
            if j in subset:
                continue
            with_j = tuple(sorted((*subset, j)))
            s = len(subset)
            phi[j] += factorial(s) * factorial(k - s - 1) / factorial(k) * (r2[with_j] - value)
    return phi


def test_pairwise_correlations_match_pandas_pairwise_complete() -> None:
    y, x = planted(500, seed=2, missing=0.25)
    data = np.column_stack([y, x])
    moments, _ = block_moments(data, 37, np.random.default_rng(0))
    r, n = pairwise_correlations(moments.sum(axis=0))
    expected = pd.DataFrame(data).corr(min_periods=1).to_numpy()
    np.testing.assert_allclose(r, expected, atol=1e-10)
    both = (~np.isnan(data)).astype(int)
    np.testing.assert_array_equal(n, both.T @ both)


def test_nearest_correlation_repairs_an_indefinite_pairwise_matrix() -> None:
    bad = np.array([[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]])
    assert np.linalg.eigvalsh(bad).min() < 0
    fixed = nearest_correlation(bad)
    assert np.linalg.eigvalsh(fixed).min() > 0
    np.testing.assert_allclose(np.diag(fixed), 1.0)
    good = np.asarray(np.corrcoef(np.random.default_rng(1).normal(size=(50, 3)), rowvar=False))
    np.testing.assert_array_equal(nearest_correlation(good), good)


def test_block_bootstrap_of_a_large_sample_gives_the_textbook_interval() -> None:
    """Above 1,000 responses the bootstrap resamples blocks of responses; the interval of a mean
    must still match mean +/- 1.96 sd / sqrt(n)."""
    rng = np.random.default_rng(4)
    n = 50_000
    x = rng.integers(1, 6, size=(n, 2)).astype(float)
    y = x.sum(axis=1) + rng.normal(size=n)
    result = analyse_drivers(y, x, ["a", "b"], resamples=1000, seed_key=("blocks",))
    assert result is not None
    d = result.drivers[0]
    half = 1.96 * x[:, 0].std() / np.sqrt(n)
    assert d.mean == pytest.approx(x[:, 0].mean())
    assert (d.mean_high - d.mean_low) / 2 == pytest.approx(half, rel=0.15)


def test_results_are_deterministic_and_do_not_depend_on_row_order() -> None:
    y, x = planted(800, seed=9, missing=0.1)
    a = analyse_drivers(y, x, NAMES, seed_key=("det",))
    b = analyse_drivers(y, x, NAMES, seed_key=("det",))
    assert a == b
    perm = np.random.default_rng(0).permutation(y.size)
    c = analyse_drivers(y[perm], x[perm], NAMES, seed_key=("det",))
    assert a is not None and c is not None
    for da, dc in zip(a.drivers, c.drivers, strict=True):
        assert da.weight == pytest.approx(dc.weight, abs=1e-12)
        assert da.mean == pytest.approx(dc.mean, abs=1e-12)


def test_drivers_without_enough_answers_or_variation_are_excluded_with_a_reason() -> None:
    y, x = planted(300, seed=1)
    x[:, 3] = np.nan
    x[:5, 3] = 4.0
    x[:, 4] = 3.0
    result = analyse_drivers(y, x, NAMES, outcome_name="nps", seed_key=("excl",))
    assert result is not None
    assert [d.driver for d in result.drivers] == ["seat", "food", "staff"]
    assert result.excluded["wifi"] == "only 5 responses rated it and answered nps"
    assert "no variation" in result.excluded["noise"]
    assert analyse_drivers(y, x[:, 3:], ["wifi", "noise"]) is None


def test_performance_and_priority_quadrants() -> None:
    """The most important driver performing worst is the first to fix; performance is 0..100
    over the declared scale."""
    rng = np.random.default_rng(6)
    n = 2000
    x = rng.integers(1, 6, size=(n, 3)).astype(float)
    x[:, 0] = np.clip(x[:, 0] - 2, 1, 5)  # the important driver is rated low
    y = 2.0 * x[:, 0] + 0.5 * x[:, 1] + 0.1 * x[:, 2] + rng.normal(size=n)
    result = analyse_drivers(y, x, ["checkout", "staff", "parking"], scales=[(1, 5)] * 3, seed_key=("q",))
    assert result is not None
    first = result.ranked()[0]
    assert first.driver == "checkout" and first.quadrant == "fix"
    assert first.performance == pytest.approx((x[:, 0].mean() - 1) / 4 * 100)
    assert [d.driver for d in priorities(result)] == ["checkout"]
    assert priorities(result, owned=["staff", "parking"]) == []
