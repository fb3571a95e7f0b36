"""Control-chart signals (`tasks.spc`) of each result over the stored history of earlier cycles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, select

from cxloop.config import Settings
from cxloop.models import KpiResult
from cxloop.periods import shift_period
from cxloop.tasks import spc
from cxloop.tasks.kpis.rows import KpiRow
from cxloop.tasks.kpis.specs import SPECS
from cxloop.vocabulary import (
    LOWER_IS_BETTER,
    NO_SIGNAL,
)

History = dict[tuple[str, str, str], list[tuple[str, float, int]]]


def load_history(settings: Settings, engine: Engine, period: str) -> History:
    """Earlier non-provisional results within `kpis.history_cycles` months, oldest first."""
    t = KpiResult.__table__  # type: ignore[attr-defined]
    first = shift_period(period, -settings.kpis.history_cycles)
    stmt = (select(t.c.kpi, t.c.scope, t.c.scope_value, t.c.period, t.c.value, t.c.n)
            .where(t.c.period < period, t.c.period >= first, t.c.provisional.is_(False),
                   t.c.value.is_not(None))
            .order_by(t.c.period))
    out: History = {}
    with engine.connect() as conn:
        for kpi, scope, value, per, val, n in conn.execute(stmt):
            out.setdefault((kpi, scope, value), []).append((per, float(val), int(n)))
    return out


def signal_for(row: KpiRow,
               history: Sequence[tuple[str, float, int]]) -> tuple[str | None, dict[str, Any] | None]:
    """('signal_high' | 'signal_low' | None, chart details in KPI units) for one result.

    signal_low is the worse direction: for lower-is-better KPIs a rise is signal_low.
    """
    spec = SPECS[row.kpi]
    if row.value is None or spec.chart is None or row.kpi in NO_SIGNAL:
        return None, None
    if spec.chart == "laney_p":
        res = spc.laney_p([v / 100 for _, v, _ in history], [n for _, _, n in history],
                          row.value / 100, row.n)
        scale = 100.0
    else:
        res = spc.xmr([v for _, v, _ in history], row.value)
        scale = 1.0
    if res is None:
        return None, None
    chart = {"chart": res.chart, "center": res.center * scale, "lcl": res.lcl * scale,
             "ucl": res.ucl * scale, "rule": res.rule, "history_points": res.history_points,
             "p_low": res.p_low, "p_high": res.p_high}
    if res.side is None:
        return None, chart
    better = (res.side == "low") if row.kpi in LOWER_IS_BETTER else (res.side == "high")
    return ("signal_high" if better else "signal_low"), chart


def apply_signals(rows: Sequence[KpiRow], history: History) -> None:
    for row in rows:
        sig, chart = signal_for(row, history.get(row.key, []))
        row.signal = sig
        if chart is not None:
            row.stats["chart"] = chart
