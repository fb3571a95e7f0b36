"""Control limits of a KPI's trend line: the ones the KPI stage stored with the row, else XmR over
the earlier cycles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from cxloop.tasks import charts, spc
from cxloop.tasks.report.data import StoredKpi


def control_limits(series: Sequence[StoredKpi]) -> charts.Limits | None:
    """Control limits for the trend line of a KPI, the last row being this cycle.

    Preferred: the limits the KPI stage stored with the row (`stats["chart"]`), i.e. exactly what
    this cycle's signal was judged against (XmR, or Laney p' for proportions). Otherwise XmR over
    the earlier cycles (`tasks.spc.xmr`; without this cycle's value, `xmr_limits`)."""
    if not series:
        return None
    stored = (series[-1].stats or {}).get("chart") if isinstance(series[-1].stats, dict) else None
    if stored and all(stored.get(k) is not None for k in ("center", "lcl", "ucl")):
        return charts.Limits(float(stored["center"]), float(stored["lcl"]), float(stored["ucl"]))
    history = [float(r.value) for r in series[:-1] if r.value is not None]
    current = series[-1].value
    if current is not None:
        res = spc.xmr(history, float(current))
        return charts.Limits(res.center, res.lcl, res.ucl) if res is not None else None
    return xmr_limits(history)


def xmr_limits(values: Sequence[float]) -> charts.Limits | None:
    """XmR (individuals) chart limits: mean +/- 2.66 x mean moving range, the textbook limits
    (docs/methods.md, "Control charts"), for a trend line whose last cycle has no value.

    Fewer than four points give no useful limits, so none are drawn."""
    vals = [float(v) for v in values if v is not None and not math.isnan(v)]
    if len(vals) < 4:
        return None
    center = sum(vals) / len(vals)
    mr = [abs(b - a) for a, b in zip(vals, vals[1:], strict=False)]
    mr_bar = sum(mr) / len(mr)
    return charts.Limits(center, center - 2.66 * mr_bar, center + 2.66 * mr_bar)
