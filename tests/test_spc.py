"""Control-chart rules: beyond the limits, eight in a row, and a wobble that is not a signal."""

from __future__ import annotations

import numpy as np
import pytest

from tasks import spc

WOBBLE = [30.0, 33.0, 29.0, 32.0, 31.0, 28.0, 32.0, 30.0]


def test_xmr_limits_by_hand() -> None:
    hist = [10.0, 12.0, 11.0, 13.0, 12.0, 14.0]
    res = spc.xmr(hist, 12.0)
    assert res is not None
    mr_bar = (2 + 1 + 2 + 1 + 2) / 5
    assert res.center == pytest.approx(12.0)
    assert res.ucl == pytest.approx(12.0 + 2.66 * mr_bar)
    assert res.lcl == pytest.approx(12.0 - 2.66 * mr_bar)
    assert res.side is None and res.rule is None


def test_point_beyond_limits_is_a_signal_both_ways() -> None:
    high = spc.xmr(WOBBLE, 45.0)
    low = spc.xmr(WOBBLE, 15.0)
    assert high is not None and high.side == "high" and high.rule == "beyond_limits"
    assert low is not None and low.side == "low" and low.rule == "beyond_limits"


def test_wobble_inside_limits_is_not_a_signal() -> None:
    for current in (27.0, 29.5, 33.5, 34.0):
        res = spc.xmr(WOBBLE, current)
        assert res is not None and res.side is None, current


def test_eight_in_a_row_on_one_side() -> None:
    # History: six points around 30 then seven just below; this cycle the eighth, still inside limits.
    hist = [30.0, 34.0, 27.0, 33.0, 26.0, 34.0, 29.0, 28.5, 29.0, 28.0, 29.5, 28.8, 29.2]
    center = float(np.mean(hist))
    res = spc.xmr(hist, 28.9)
    assert res is not None and res.lcl < 28.9 < center
    assert res.side == "low" and res.rule == "run_of_8"
    # Seven in a row only (the eighth crosses the centre line): no signal.
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
    half = 3 * sigma_z * np.sqrt(p_bar * (1 - p_bar) / 500)
    assert res.center == pytest.approx(p_bar)
    assert res.ucl == pytest.approx(p_bar + half)
    assert res.lcl == pytest.approx(p_bar - half)
    assert res.side is None


def test_laney_absorbs_overdispersion_that_a_p_chart_flags() -> None:
    # Large monthly n with month-to-month variation beyond binomial noise (overdispersion):
    # a plain p chart's limits (+/- 3 sqrt(p(1-p)/n)) would flag 0.13, Laney's widened ones do not.
    p = [0.10, 0.125, 0.095, 0.12, 0.09, 0.115, 0.10, 0.12]
    n = [20000] * 8
    p_bar = float(np.mean(p))
    plain_ucl = p_bar + 3 * np.sqrt(p_bar * (1 - p_bar) / 20000)
    assert plain_ucl < 0.13
    res = spc.laney_p(p, n, 0.13, 20000)
    assert res is not None and res.side is None and res.ucl > 0.13
    far = spc.laney_p(p, n, 0.20, 20000)
    assert far is not None and far.side == "high"


def test_false_alarm_rate_of_stable_process_is_low() -> None:
    rng = np.random.default_rng(11)
    alarms = 0
    trials = 2000
    for _ in range(trials):
        series = rng.normal(30, 3, 13)
        res = spc.xmr(list(series[:12]), float(series[12]))
        alarms += res is not None and res.side is not None
    assert alarms / trials < 0.03
