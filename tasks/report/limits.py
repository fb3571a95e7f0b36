"""Control limits of a KPI's trend line: the ones the KPI stage stored with the row, else XmR over
the earlier cycles.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Sequence
from typing import Any

from cxloop.tasks import charts
from cxloop.tasks.report.data import StoredKpi


@functools.cache
def _sibling(name: str) -> Any | None:
    """tasks.kpis / tasks.spc when they exist: the report prefers the shared formulas (looked up
    once per process: `find_spec` walks the import path, and this is asked per page and KPI)."""
    if importlib.util.find_spec(f"cxloop.tasks.{name}") is None:
        return None
    return importlib.import_module(f"cxloop.tasks.{name}")


def control_limits(series: Sequence[StoredKpi]) -> charts.Limits | None:
    """Control limits for the trend line of a KPI, the last row being this cycle.

    Preferred: the limits the KPI stage stored with the row (`stats["chart"]`), i.e. exactly what
    this cycle's signal was judged against (XmR, or Laney p' for proportions). Otherwise XmR over
    the earlier cycles (tasks.spc when present, else mean +/- 2.66 x mean moving range here)."""
    if not series:
        return None
    stored = (series[-1].stats or {}).get("chart") if isinstance(series[-1].stats, dict) else None
    if stored and all(stored.get(k) is not None for k in ("center", "lcl", "ucl")):
        return charts.Limits(float(stored["center"]), float(stored["lcl"]), float(stored["ucl"]))
    history = [float(r.value) for r in series[:-1] if r.value is not None]
    current = series[-1].value
    spc = _sibling("spc")
    if spc is not None and hasattr(spc, "xmr") and current is not None:
        res = spc.xmr(history, float(current))
        return charts.Limits(res.center, res.lcl, res.ucl) if res is not None else None
    return xmr_limits(history)


def xmr_limits(values: Sequence[float]) -> charts.Limits | None:
    """XmR (individuals) chart limits: mean +/- 2.66 x mean moving range, the textbook limits
    (docs/methods.md, "Control charts"), drawn only when `tasks.spc` is absent.

    Fewer than four points give no useful limits, so none are drawn."""
    vals = [float(v) for v in values if v is not None and not math.isnan(v)]
    if len(vals) < 4:
        return None
    center = sum(vals) / len(vals)
    mr = [abs(b - a) for a, b in zip(vals, vals[1:], strict=False)]
    mr_bar = sum(mr) / len(mr)
    return charts.Limits(center, center - 2.66 * mr_bar, center + 2.66 * mr_bar)
