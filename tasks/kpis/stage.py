"""The KPI stage of one period: compute every row, judge signals and decisions, store."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import pandas as pd
from sqlalchemy import Engine

from cxloop.config import Settings
from cxloop.periods import shift_period
from cxloop.tasks.kpis import decisions
from cxloop.tasks.kpis.histograms import histograms, merge_histograms
from cxloop.tasks.kpis.rows import KpiRow, rows_from_histograms
from cxloop.tasks.kpis.signals import apply_signals, load_history
from cxloop.tasks.kpis.store import columns_for, response_parts, store_results, stored_rows
from cxloop.tasks.month import Month


def compute_rows(settings: Settings, engine: Engine, period: str, provisional: bool = False, *,
                 month_rows: Month | None = None) -> list[KpiRow]:
    """Every KPI row of the period with status, signals and decisions, without storing anything."""
    hist = _on_cluster(settings, engine, period, month_rows)
    if hist is None:
        parts = []  # one histogram per part: a month too large to keep is never held whole
        for responses in response_parts(settings, engine, period, month_rows=month_rows):
            parts.append(histograms(responses, settings))
            del responses  # before the next part is read
        hist = merge_histograms(parts)
    hist = merge_histograms([hist, _case_histograms(settings, engine, period)])
    rows = rows_from_histograms(hist, settings, period=period, provisional=provisional)
    apply_signals(rows, load_history(settings, engine, period))
    judge_cycle(rows, load_previous(engine, period), settings,
                lambda columns: response_parts(settings, engine, period, columns, month_rows=month_rows))
    return rows


def _on_cluster(settings: Settings, engine: Engine, period: str, month_rows: Month | None
                ) -> pd.DataFrame | None:
    """The histogram counted on the Dask cluster (`[engine] dask_address`) from the month's
    columnar copy; None without a cluster or a copy (then counted here, with the same result)."""
    address = settings.engine.dask_address
    if not address or month_rows is None or month_rows.period != period or not month_rows.columnar():
        return None
    from cxloop.tasks import dask_work
    from cxloop.tasks.kpis.store import _response_columns
    from cxloop.tasks.month import PART_ROWS

    assert month_rows.copies is not None
    cols, read = _response_columns(None)
    client = dask_work.connect(address)
    try:
        return dask_work.kpi_histograms(client, month_rows.copies, period, read, cols,
                                        engine.dialect.name == "sqlite", settings, PART_ROWS)
    finally:
        client.close()  # type: ignore[attr-defined]


def _case_histograms(settings: Settings, engine: Engine, period: str) -> pd.DataFrame:
    """The period's follow-up cases as histograms (issue 19): empty without cases. Imported here,
    not at the top: `tasks.cases.kpis` reads this package's time bins."""
    from cxloop.tasks.cases.kpis import case_histograms

    return case_histograms(settings, engine, period)


def judge_cycle(rows: Sequence[KpiRow], previous: dict[tuple[str, str, str], KpiRow],
                settings: Settings | None,
                parts: Callable[[list[str]], Iterable[pd.DataFrame]]) -> None:
    """The cycle's decisions (`tasks.kpis.decisions`): which results act, and which broader ones are
    explained by a more specific one. That needs the responses again, only when two results of one
    KPI act: `parts(columns)` reads the columns the acting KPIs need."""
    rules = decisions.Rules.of(settings)
    decisions.decide(rows, previous, rules)
    if decisions.needs_nesting(rows):
        columns = columns_for(sorted({r.kpi for r in decisions.acting(rows)}))
        decisions.explain_nested(rows, parts(columns), settings, rules)
        decisions.refine(rows, rules)


def load_previous(engine: Engine, period: str) -> dict[tuple[str, str, str], KpiRow]:
    """The previous cycle's results (histograms included), for pooling two cycles' evidence; none
    when that cycle was held (provisional)."""
    rows = stored_rows(engine, shift_period(period, -1))
    return {} if any(r.provisional for r in rows) else {r.key: r for r in rows}


def compute_kpis(settings: Settings, engine: Engine, period: str, provisional: bool = False, *,
                 month_rows: Month | None = None) -> list[KpiRow]:
    """The KPI stage: compute every KPI of every scope for the period and store the results.
    `month_rows`: the month the cycle shares among its stages (None: read from the database)."""
    rows = compute_rows(settings, engine, period, provisional, month_rows=month_rows)
    store_results(settings, engine, period, rows)
    return rows


def counts(rows: Sequence[KpiRow]) -> dict[str, int]:
    """Figures for the cycle's stage record: results per status and signals, and decisions."""
    out: dict[str, int] = {"results": len(rows), **decisions.summary(rows)}
    for r in rows:
        out[r.status] = out.get(r.status, 0) + 1
        if r.signal:
            out[r.signal] = out.get(r.signal, 0) + 1
    return out
