"""Process-behaviour (control) charts over a KPI's monthly history: signal versus noise.

A month-to-month wobble is not news. Following domain.md section 4, this cycle's value is judged
against limits computed from the earlier cycles only:

* XmR (individuals) chart for means, NPS, nets and times: centre = mean of history,
  limits = centre +/- 2.66 * mean moving range;
* Laney p' chart for proportions: a p chart whose sigma is scaled by the moving range of the
  history's z-scores, so that large monthly n (where every p chart alarms on overdispersion)
  does not raise false alarms; the limits use this cycle's own n.

Two rules only (Western Electric 1 and 4): a point beyond the limits, or the eighth point in a row
on one side of the centre line (this point plus the previous seven). More rules mean more false
alarms. Without at least `MIN_HISTORY` earlier points no signal is raised.

The implementation follows the formulas directly: SPC packages on PyPI are unmaintained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

MIN_HISTORY = 6
RUN_LENGTH = 8
XMR_FACTOR = 2.66  # 3 / d2 with d2 = 1.128 for moving ranges of two
D2 = 1.128

Side = Literal["high", "low"]


@dataclass(frozen=True)
class ChartResult:
    """Where this cycle's point sits relative to the limits of its history."""

    chart: str  # "xmr" | "laney_p"
    center: float
    lcl: float
    ucl: float
    side: Side | None  # "high" / "low" when a rule fired, else None
    rule: str | None  # "beyond_limits" | "run_of_8" | None
    history_points: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def _judge(chart: str, history: Sequence[float], current: float, center: float, lcl: float,
           ucl: float) -> ChartResult:
    side: Side | None = None
    rule: str | None = None
    if current > ucl:
        side, rule = "high", "beyond_limits"
    elif current < lcl:
        side, rule = "low", "beyond_limits"
    else:
        run = _run_side(history, current, center)
        if run:
            side, rule = run, "run_of_8"
    return ChartResult(chart, center, lcl, ucl, side, rule, len(history))


def xmr(history: Sequence[float], current: float) -> ChartResult | None:
    """Individuals chart: limits from the history's mean and mean moving range."""
    hist = [float(x) for x in history if x is not None and math.isfinite(x)]
    if len(hist) < MIN_HISTORY or not math.isfinite(current):
        return None
    arr = np.asarray(hist)
    center = float(arr.mean())
    mr_bar = float(np.abs(np.diff(arr)).mean())
    return _judge("xmr", hist, current, center, center - XMR_FACTOR * mr_bar,
                  center + XMR_FACTOR * mr_bar)


def laney_p(history_p: Sequence[float], history_n: Sequence[int], current_p: float,
            current_n: int) -> ChartResult | None:
    """Laney p' chart on proportions in 0..1 (returned limits are in the same units).

    p-bar = pooled proportion; z_i = (p_i - p-bar) / sqrt(p-bar (1 - p-bar) / n_i);
    sigma_z = mean |z_i - z_(i-1)| / 1.128; limits p-bar +/- 3 sigma_z sqrt(p-bar (1 - p-bar) / n).
    With p-bar at 0 or 1 the z-scores are undefined; the XmR chart of the proportions is used then.
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
    sigma_i = np.sqrt(p_bar * (1 - p_bar) / n)
    z = (p - p_bar) / sigma_i
    sigma_z = float(np.abs(np.diff(z)).mean() / D2)
    half = 3 * sigma_z * math.sqrt(p_bar * (1 - p_bar) / current_n)
    return _judge("laney_p", list(p), current_p, p_bar, max(0.0, p_bar - half), min(1.0, p_bar + half))
