"""Process-behaviour (control) charts over a KPI's monthly history: signal versus noise.

A month-to-month wobble is not news. This cycle's value is judged against limits computed from
the earlier cycles only (docs/methods.md, "Control charts"):

* XmR (individuals) chart for means, NPS, nets and times: centre = mean of the history, sigma =
  mean moving range / 1.128;
* Laney p' chart for proportions: a p chart whose sigma is scaled by the moving range of the
  history's z-scores, so that large monthly n (where every p chart alarms on overdispersion)
  does not raise false alarms; the limits use this cycle's own n.

Limits estimated from a short history are themselves uncertain: with 6 points the textbook
+/- 3 sigma limits flag several times the nominal 0.27% of a stable process's points. The limits
here are prediction limits instead: sigma's uncertainty enters through a t quantile with the
moving-range estimate's effective degrees of freedom (about 0.62 (m - 1) for m points), and the
centre's through sqrt(1 + 1/m). With 24 or more points they approach the classic 2.66 mR-bar.

Two rules only: a point beyond the limits, or the ninth point in a row on one side of the centre
(Nelson's rule 2; eight in a row alone adds ~0.4% false signals per point with 24 points of history).
More rules mean more false alarms. Without at least `MIN_HISTORY` earlier points no chart is drawn.

Each chart also gives the one-sided tail probabilities of this cycle's point under the same
predictive distribution (`p_low`, `p_high`): the decision step uses them as evidence alongside the
target test and controls their false discoveries across the whole cycle (`tasks.kpis.decisions`).

The implementation follows the formulas directly: SPC packages on PyPI are unmaintained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from scipy import special

MIN_HISTORY = 6
RUN_LENGTH = 9
ALPHA = 0.0027  # two-sided false-alarm share of classic 3-sigma limits with known parameters
D2 = 1.128  # E(moving range of two) / sigma

Side = Literal["high", "low"]


@dataclass(frozen=True)
class ChartResult:
    """Where this cycle's point sits relative to the limits of its history."""

    chart: str  # "xmr" | "laney_p"
    center: float
    lcl: float
    ucl: float
    side: Side | None  # "high" / "low" when a rule fired, else None
    rule: str | None  # "beyond_limits" | "run_of_9" | None
    history_points: int
    p_low: float = 0.5  # P(a point this low or lower | stable process)
    p_high: float = 0.5  # P(a point this high or higher | stable process)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def degrees_of_freedom(points: int) -> float:
    """Effective degrees of freedom of sigma estimated from the mean moving range of `points` points."""
    return max(0.62 * (points - 1), 1.0)


@lru_cache(maxsize=256)
def limit_factor(points: int) -> float:
    """Half-width of the prediction limits in sigmas, for limits estimated from `points` points."""
    return float(special.stdtrit(degrees_of_freedom(points), 1 - ALPHA / 2) * math.sqrt(1 + 1 / points))


def _run_side(history: Sequence[float], current: float, center: float) -> Side | None:
    """'high'/'low' when this point and the previous RUN_LENGTH - 1 all lie on one side."""
    if len(history) < RUN_LENGTH - 1:
        return None
    points = [*history[-(RUN_LENGTH - 1):], current]
    if all(p > center for p in points):
        return "high"
    if all(p < center for p in points):
        return "low"
    return None


def _judge(chart: str, history: Sequence[float], current: float, center: float, sigma: float) -> ChartResult:
    """Limits, rules and tail probabilities of `current` given the history's centre and sigma
    (sigma of one point, before the prediction factor)."""
    m = len(history)
    scale = sigma * math.sqrt(1 + 1 / m)
    half = limit_factor(m) * sigma
    lcl, ucl = center - half, center + half
    if scale > 0:
        t_stat = (current - center) / scale  # scipy.special's t CDF: ~100x cheaper than stats.t per call
        p_low = float(special.stdtr(degrees_of_freedom(m), t_stat))
        p_high = float(special.stdtr(degrees_of_freedom(m), -t_stat))
    else:  # a flat history: any departure is beyond it
        p_low = 0.0 if current < center else 1.0 if current > center else 0.5
        p_high = 0.0 if current > center else 1.0 if current < center else 0.5
    side: Side | None = None
    rule: str | None = None
    if current > ucl:
        side, rule = "high", "beyond_limits"
    elif current < lcl:
        side, rule = "low", "beyond_limits"
    else:
        run = _run_side(history, current, center)
        if run:
            side, rule = run, f"run_of_{RUN_LENGTH}"
    return ChartResult(chart, center, lcl, ucl, side, rule, m, p_low, p_high)


def xmr(history: Sequence[float], current: float) -> ChartResult | None:
    """Individuals chart: prediction limits from the history's mean and mean moving range."""
    hist = [float(x) for x in history if x is not None and math.isfinite(x)]
    if len(hist) < MIN_HISTORY or not math.isfinite(current):
        return None
    arr = np.asarray(hist)
    center = float(arr.mean())
    sigma = float(np.abs(np.diff(arr)).mean()) / D2
    return _judge("xmr", hist, current, center, sigma)


def laney_p(history_p: Sequence[float], history_n: Sequence[int], current_p: float,
            current_n: int) -> ChartResult | None:
    """Laney p' chart on proportions in 0..1 (returned limits are in the same units).

    p-bar = pooled proportion; z_i = (p_i - p-bar) / sqrt(p-bar (1 - p-bar) / n_i);
    sigma_z = mean |z_i - z_(i-1)| / 1.128; sigma of this point = sigma_z sqrt(p-bar (1 - p-bar) / n).
    Limits are clipped to 0..1. With p-bar at 0 or 1 the z-scores are undefined; the XmR chart of
    the proportions is used then.
    """
    pairs = [(float(p), int(n)) for p, n in zip(history_p, history_n, strict=True)
             if p is not None and n and math.isfinite(p)]
    if len(pairs) < MIN_HISTORY or not current_n or not math.isfinite(current_p):
        return None
    p = np.asarray([x for x, _ in pairs])
    n = np.asarray([m for _, m in pairs], dtype=float)
    p_bar = float((p * n).sum() / n.sum())
    if p_bar <= 0 or p_bar >= 1:
        return xmr(list(p), current_p)
    z = (p - p_bar) / np.sqrt(p_bar * (1 - p_bar) / n)
    sigma_z = float(np.abs(np.diff(z)).mean() / D2)
    res = _judge("laney_p", list(p), current_p, p_bar, sigma_z * math.sqrt(p_bar * (1 - p_bar) / current_n))
    return ChartResult(res.chart, res.center, max(0.0, res.lcl), min(1.0, res.ucl), res.side, res.rule,
                       res.history_points, res.p_low, res.p_high)
