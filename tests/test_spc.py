"""Control-chart rules: beyond the prediction limits, nine in a row, and a wobble that is not a signal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cxloop.tasks import spc

WOBBLE = [30.0, 33.0, 29.0, 32.0, 31.0, 28.0, 32.0, 30.0, 29.0, 31.0, 33.0, 30.0, 28.0, 31.0, 32.0, 30.0]


def test_xmr_limits_by_hand() -> None:
    hist = [10.0, 12.0, 11.0, 13.0, 12.0, 14.0]
    res = spc.xmr(hist, 12.0)
    assert res is not None
    sigma = (2 + 1 + 2 + 1 + 2) / 5 / 1.128
    # Prediction limits: t quantile (0.99865) with 0.62 (m - 1) degrees of freedom, times sqrt(1 + 1/m).
    factor = float(stats.t.ppf(1 - 0.0027 / 2, 0.62 * 5) * np.sqrt(1 + 1 / 6))
    assert res.center == pytest.approx(12.0)
    assert res.ucl == pytest.approx(12.0 + factor * sigma)
    assert res.lcl == pytest.approx(12.0 - factor * sigma)
    assert res.side is None and res.rule is None
    assert res.p_low == pytest.approx(0.5) and res.p_high == pytest.approx(0.5)


def test_limits_approach_the_classic_ones_with_long_history() -> None:
    # 2.66 mR-bar = 3 sigma with known parameters; estimated from few points the limits are wider.
    assert spc.limit_factor(6) > 2 * spc.limit_factor(24)
    assert 3.0 < spc.limit_factor(200) < 3.2


def test_point_beyond_limits_is_a_signal_both_ways() -> None:
    high = spc.xmr(WOBBLE, 45.0)
    low = spc.xmr(WOBBLE, 15.0)
    assert high is not None and high.side == "high" and high.rule == "beyond_limits"
    assert low is not None and low.side == "low" and low.rule == "beyond_limits"


def test_wobble_inside_limits_is_not_a_signal() -> None:
    for current in (27.0, 29.5, 33.5, 34.0):
        res = spc.xmr(WOBBLE, current)
        assert res is not None and res.side is None, current


def test_nine_in_a_row_on_one_side() -> None:
    # History: six points around 30 then eight just below; this cycle the ninth, still inside limits.
    hist = [30.0, 34.0, 27.0, 33.0, 26.0, 34.0, 29.0, 28.7, 28.5, 29.0, 28.0, 29.5, 28.8, 29.2]
    center = float(np.mean(hist))
    res = spc.xmr(hist, 28.9)
    assert res is not None and res.lcl < 28.9 < center
    assert res.side == "low" and res.rule == "run_of_9"
    # Eight in a row only (the ninth crosses the centre line): no signal.
    res = spc.xmr(hist, 31.0)
    assert res is not None and res.side is None


def test_too_little_history_gives_no_chart() -> None:
    assert spc.xmr([30.0] * (spc.MIN_HISTORY - 1), 90.0) is None
    assert spc.laney_p([0.1] * 5, [100] * 5, 0.9, 100) is None


def test_laney_p_by_hand() -> None:
    p = [0.10, 0.12, 0.11, 0.09, 0.10, 0.12]
    n = [500, 400, 600, 500, 450, 550]
    res = spc.laney_p(p, n, 0.105, 500)
    assert res is not None
    p_bar = sum(pi * ni for pi, ni in zip(p, n, strict=True)) / sum(n)
    sig = [np.sqrt(p_bar * (1 - p_bar) / ni) for ni in n]
    z = [(pi - p_bar) / s for pi, s in zip(p, sig, strict=True)]
    sigma_z = np.mean(np.abs(np.diff(z))) / 1.128
    half = spc.limit_factor(6) * sigma_z * np.sqrt(p_bar * (1 - p_bar) / 500)
    assert res.center == pytest.approx(p_bar)
    assert res.ucl == pytest.approx(p_bar + half)
    assert res.lcl == pytest.approx(max(0.0, p_bar - half))
    assert res.side is None


def test_laney_absorbs_overdispersion_that_a_p_chart_flags() -> None:
    # Large monthly n with month-to-month variation beyond binomial noise (overdispersion):
    # a plain p chart's limits (+/- 3 sqrt(p(1-p)/n)) would flag 0.13, Laney's widened ones do not.
    p = [0.10, 0.125, 0.095, 0.12, 0.09, 0.115, 0.10, 0.12] * 2
    n = [20000] * 16
    p_bar = float(np.mean(p))
    plain_ucl = p_bar + 3 * np.sqrt(p_bar * (1 - p_bar) / 20000)
    assert plain_ucl < 0.13
    res = spc.laney_p(p, n, 0.13, 20000)
    assert res is not None and res.side is None and res.ucl > 0.13
    far = spc.laney_p(p, n, 0.20, 20000)
    assert far is not None and far.side == "high"


@pytest.mark.parametrize("points", [6, 12, 24])
def test_false_signal_rate_of_a_stable_process_is_at_most_half_a_percent(points: int) -> None:
    # Limits from 6-24 points of a stable process: at most 0.5% of points signal (either rule, either
    # side). Textbook 2.66 mR-bar limits flag 2-4% at 6-12 points, and eight in a row adds ~0.4% at 24.
    rng = np.random.default_rng(11)
    trials = 4000
    alarms = 0
    for series in rng.normal(30, 3, (trials, points + 1)):
        res = spc.xmr(list(series[:points]), float(series[points]))
        alarms += res is not None and res.side is not None
    assert alarms / trials <= 0.005


def test_tail_probability_of_a_point_far_below() -> None:
    res = spc.xmr(WOBBLE, 15.0)
    assert res is not None and res.p_low < 0.01 < 0.99 < res.p_high
    assert res.p_low + res.p_high == pytest.approx(1.0)
