"""The stored KPI results a page shows: headline cards, the scorecard and their labels, read from
`KpiResult` (never recomputed, so the report and `cxloop kpis` agree).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import cast

from sqlalchemy import select
from sqlmodel import Session

from cxloop.config import Settings
from cxloop.models import (
    KpiResult,
)
from cxloop.periods import shift_period
from cxloop.tasks import charts
from cxloop.tasks.comments import load_taxonomy  # the configured topics, or the shipped default taxonomy
from cxloop.tasks.rendering import translate
from cxloop.tasks.report.data import Headline, KpiCell, ScoreRow, StoredKpi
from cxloop.tasks.report.formatting import (
    HEADLINE_KPIS,
    SCORECARD_KPIS,
    TREND_CYCLES,
    _domain,
    fmt,
    kpi_digits,
    label,
)
from cxloop.tasks.report.limits import control_limits
from cxloop.vocabulary import (
    kpi_label,
    lower_is_better,
    scope_label,
)

_KPI_TABLE = KpiResult.__table__  # type: ignore[attr-defined]


def _kpi_rows(session: Session, periods: Sequence[str], kpis: Iterable[str] | None = None,
              scope: str | None = None, scope_value: str | None = None) -> list[StoredKpi]:
    """Rows of the table, not ORM objects: a page reads a few hundred, and building a `KpiResult`
    of each cost 0.2 ms (0.4 s for the six pages of a month)."""
    t = _KPI_TABLE
    stmt = select(t).where(t.c.period.in_(list(periods)))
    if kpis is not None:
        stmt = stmt.where(t.c.kpi.in_(list(kpis)))
    if scope is not None:
        stmt = stmt.where(t.c.scope == scope)
    if scope_value is not None:
        stmt = stmt.where(t.c.scope_value == scope_value)
    return cast(list[StoredKpi], list(session.execute(stmt)))


def _headlines(session: Session, settings: Settings, period: str, scope: str, scope_value: str,
               lang: str) -> list[Headline]:
    first = shift_period(period, -(TREND_CYCLES - 1))
    periods = [shift_period(first, i) for i in range(TREND_CYCLES)]
    rows = _kpi_rows(session, periods, HEADLINE_KPIS, scope, scope_value)
    by_kpi: dict[str, dict[str, StoredKpi]] = {}
    for r in rows:
        by_kpi.setdefault(r.kpi, {})[r.period] = r
    labels = {"ucl": translate("UCL", lang), "lcl": translate("LCL", lang),
              "center": translate("mean", lang), "target": translate("target", lang)}
    out = []
    for kpi in HEADLINE_KPIS:
        hist = by_kpi.get(kpi, {})
        cur = hist.get(period)
        if cur is None and scope != "overall":
            continue  # a department without this KPI: no empty tile
        lo, hi = _domain(kpi, [r.value for r in hist.values()])
        cell = KpiCell.of(cur, lo, hi) if cur else None
        earlier = sorted(p for p in hist if p < period and hist[p].value is not None)
        prev = hist[earlier[-1]] if earlier else None
        change = significant = None
        if cur and prev and cur.value is not None and prev.value is not None:
            change = cur.value - prev.value
            significant = _significant(cur, prev, change)
        series = [hist[p] for p in sorted(hist) if p <= period and hist[p].value is not None]
        points = [charts.TrendPoint(p.period[2:], float(p.value or 0), p.ci_low, p.ci_high,
                                    p.signal is not None) for p in series]
        limits = control_limits(series)
        title = f"{kpi_label(kpi, lang)} {series[0].period if series else ''}–{period}"
        chart = charts.trend_chart(points, limits=limits, target=cur.target if cur else None,
                                   title=title, labels=labels, digits=kpi_digits(kpi))
        out.append(Headline(
            kpi=kpi, label=kpi_label(kpi, lang), cell=cell,
            target_text=fmt(kpi, cur.target) if cur and cur.target is not None else "",
            change=change, change_text=(f"{change:+.{kpi_digits(kpi, change)}f}" if change is not None
                                        else ""),
            change_significant=bool(significant),
            change_better=change is not None and (change < 0 if lower_is_better(kpi) else change > 0),
            previous_period=prev.period if prev else None,
            chart=chart))
    return out


def _significant(cur: StoredKpi, prev: StoredKpi, change: float) -> bool:
    """A change is called real when it exceeds the combined half-widths of the two intervals
    (a z-test of the difference, with standard errors read back from the stored intervals)."""
    halves = []
    for r in (cur, prev):
        if r.ci_low is None or r.ci_high is None:
            return False
        halves.append((r.ci_high - r.ci_low) / 2)
    return abs(change) > math.hypot(*halves)


def _scorecard(session: Session, settings: Settings, period: str, department: str | None,
               lang: str) -> tuple[list[str], list[ScoreRow]]:
    rows = _kpi_rows(session, [period], SCORECARD_KPIS)
    index = {(r.kpi, r.scope, r.scope_value): r for r in rows}
    wanted: list[tuple[str, str, str]] = []  # (scope, value, label)
    if department is None:
        wanted.append(("overall", "all", translate("Company", lang)))
        depts = list(settings.departments)
        depts += sorted({r.scope_value for r in rows if r.scope == "department"} - set(depts))
        wanted += [("department", d, _dept_name(settings, d)) for d in depts]
    else:
        wanted.append(("department", department, _dept_name(settings, department)))
        owns = settings.departments[department].owns if department in settings.departments else {}
        for scope, values in owns.items():
            for v in values:
                label = _value_label(settings, scope, v, lang)
                wanted.append((scope, v, f"{scope_label(scope, lang)}: {label}"))
    present = {(r.scope, r.scope_value) for r in rows}
    if department is None:
        overall = {r.scope_value for r in rows if r.scope == "overall"}
        if overall and ("overall", "all") not in present:
            wanted[0] = ("overall", sorted(overall)[0], wanted[0][2])
    wanted = [w for w in wanted if (w[0], w[1]) in present]
    used_kpis = [k for k in SCORECARD_KPIS if any((k, s, v) in index for s, v, _ in wanted)]
    domains = {k: _domain(k, [r.value for r in rows if r.kpi == k]) for k in used_kpis}
    out = []
    for scope, value, label in wanted:
        cells: list[KpiCell | None] = []
        for k in used_kpis:
            r = index.get((k, scope, value))
            cells.append(KpiCell.of(r, *domains[k]) if r else None)
        out.append(ScoreRow(label, scope, cells))
    return used_kpis, out


def _dept_name(settings: Settings, dept: str) -> str:
    d = settings.departments.get(dept)
    return d.name if d else dept


def _value_label(settings: Settings, scope: str, value: str, lang: str) -> str:
    if scope == "topic":
        return _topic_names(settings, lang).get(value, value)
    if scope == "department":
        return _dept_name(settings, value)
    return label(value, lang)


def _topic_names(settings: Settings, lang: str) -> dict[str, str]:

    return {t.id: (t.name_zh if lang == "zh" else t.name_en) for t in load_taxonomy(settings)}
