"""The KPI stage's database side: reading the period's responses (from the month frame), storing
results and applied targets in one transaction, and reading stored results back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cxloop.config import Settings
from cxloop.db import session_scope
from cxloop.models import SCOPE_FIELDS, AppliedTarget, KpiResult
from cxloop.tasks import month
from cxloop.tasks.codes import factorize
from cxloop.tasks.kpis.rows import KpiRow
from cxloop.tasks.kpis.specs import BASE_SCOPES, DERIVED_COLUMNS, KPI_COLUMNS, KPI_ORDER, SPECS
from cxloop.tasks.kpis.targets import default_min_n

# The julianday of 1970-01-01 in milliseconds: SQLite keeps a time as whole milliseconds since the
# Julian day epoch.
_JULIAN_EPOCH_MS = 210_866_760_000_000


def _micros(times: pd.Series) -> NDArray[np.int64]:
    """Microseconds since 1970 of each time (garbage where NaT: mask those yourself)."""
    return times.dt.tz_convert(None).to_numpy(dtype="datetime64[us]").view(np.int64)


def _span_hours(start: pd.Series, end: pd.Series, sqlite: bool) -> NDArray[np.float64]:
    """Hours from `start` to `end` exactly as the database computed them before the month frame.

    PostgreSQL's `extract(epoch ...) / 3600` is exact; SQLite's julianday difference rounds each
    time to the millisecond and is a difference of two large day numbers, a few nanoseconds off,
    which moves about one duration in a thousand across a bin edge, so it is reproduced bit for bit
    there to keep stored results as they were."""
    a, b = _micros(start), _micros(end)
    if sqlite:
        days_a = ((a + 500) // 1000 + _JULIAN_EPOCH_MS) / 86_400_000.0
        days_b = ((b + 500) // 1000 + _JULIAN_EPOCH_MS) / 86_400_000.0
        hours = (days_b - days_a) * 24.0
    else:
        hours = (b - a) / 3_600_000_000.0
    hours[(start.isna() | end.isna()).to_numpy()] = np.nan
    hours[hours < 0] = np.nan  # as `_hours`: a response before the ticket opened is a data error
    return hours


def _has_text(comments: pd.Series) -> NDArray[np.bool_]:
    """A comment with something besides spaces, as SQL's `length(trim(comment)) > 0` read it
    (trim removes spaces only); tested once per distinct comment (real comments repeat a lot)."""
    codes, uniques = factorize(comments)
    return np.array([bool(c.strip(" ")) for c in uniques] + [False], dtype=bool)[codes]


def load_responses(settings: Settings, engine: Engine, period: str,
                   columns: Sequence[str] | None = None, *,
                   month_rows: month.Month | None = None) -> pd.DataFrame:
    """All non-quarantined responses of a period, only the columns asked for (default: KPI_COLUMNS).
    `month_rows`: the month the cycle shares among its stages (used when it is this period's).

    Besides the month frame's columns (`tasks.month.COLUMNS`), `columns` may name the derived
    `first_response_hours`, `resolution_hours` (hours from opened_at) and `has_comment`.
    """
    cols, read = _response_columns(columns)
    return _responses(month.of(engine, period, month_rows).rows(read, clean=True), cols, engine)


_FAMILY_COLUMNS: dict[str, tuple[str, ...]] = {
    "cx": ("cx_success", "cx_effort", "cx_emotion"), "complaint": ("is_complaint",),
    "first_response": ("first_response_hours",), "first_response_sla": ("first_response_hours",),
    "resolution": ("resolution_hours",), "resolution_sla": ("resolution_hours",),
    "share": ("themes", "sentiment", "has_comment"), "rows": (),
}


def columns_for(kpi_ids: Sequence[str]) -> list[str]:
    """The response columns the given KPIs need (plus every scope column): a 12-month history of
    a large company, or a second look at one month, is read with a few columns, not all of them."""
    cols = {*SCOPE_FIELDS, "themes"}
    for kpi in kpi_ids:
        spec = SPECS.get(kpi)
        if spec is not None:
            cols.update(_FAMILY_COLUMNS.get(spec.family, (spec.family,)))
    return sorted(cols)


def response_parts(settings: Settings, engine: Engine, period: str,
                   columns: Sequence[str] | None = None, *,
                   month_rows: month.Month | None = None) -> Iterator[pd.DataFrame]:
    """`load_responses` in parts (`tasks.month.Month.parts`), for counting a month too large to
    keep without holding all of its rows: a kept month is one part."""
    cols, read = _response_columns(columns)
    for rows in month.of(engine, period, month_rows).parts(read, clean=True):
        part = _responses(rows, cols, engine)
        del rows
        yield part
        del part  # the caller has done with it: not held while the next part is read


_SOURCES = {"has_comment": ("comment",), "first_response_hours": ("opened_at", "first_response_at"),
            "resolution_hours": ("opened_at", "resolved_at")}


def _response_columns(columns: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(the columns asked for, the month frame's columns they are made of)."""
    cols = list(columns or KPI_COLUMNS)
    unknown = [c for c in cols if c not in month.COLUMNS and c not in DERIVED_COLUMNS]
    if unknown:
        raise ValueError(f"load_responses: unknown column {unknown[0]!r}; use Feedback columns or "
                         f"{', '.join(DERIVED_COLUMNS)}")
    return cols, list(dict.fromkeys(s for c in cols for s in _SOURCES.get(c, (c,))))


def _responses(rows: pd.DataFrame, cols: list[str], engine: Engine) -> pd.DataFrame:
    """The asked columns of month rows, derived ones computed."""
    return response_frame(rows, cols, engine.dialect.name == "sqlite")


def response_frame(rows: pd.DataFrame, cols: list[str], sqlite: bool) -> pd.DataFrame:
    """`_responses` without an engine (a Dask worker has none): `sqlite`, whether the rows came
    from SQLite (its times are read as stored)."""
    out: dict[str, Any] = {}
    for col in cols:
        if col == "has_comment":
            out[col] = _has_text(rows["comment"])
        elif col in _SOURCES:
            start, end = _SOURCES[col]
            out[col] = _span_hours(rows[start], rows[end], sqlite)
        else:
            out[col] = rows[col]
    return pd.DataFrame(out, index=rows.index, copy=False)  # the month frame's columns, not copies


def _upsert(conn: Any, table: Any, rows: list[dict[str, Any]], keys: list[str]) -> None:
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "sqlite":
        insert = sqlite_insert
    elif dialect == "postgresql":
        insert = pg_insert  # type: ignore[assignment]
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise RuntimeError(f"unsupported database {dialect}")
    stmt = insert(table)
    update = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_=update)
    for i in range(0, len(rows), 2000):
        conn.execute(stmt, rows[i:i + 2000])


def _delete_stale(conn: Any, table: Any, period: str, keep: set[tuple[str, ...]], keys: list[str]) -> None:
    existing = conn.execute(select(table.c.id, *[table.c[k] for k in keys]).where(table.c.period == period))
    stale = [r[0] for r in existing if tuple(r[1:]) not in keep]
    for i in range(0, len(stale), 1000):
        conn.execute(delete(table).where(table.c.id.in_(stale[i:i + 1000])))


def applied_targets(settings: Settings) -> list[dict[str, Any]]:
    """The configured targets as stored for a period (later duplicates win)."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for t in settings.targets:
        match = t.match or ""
        out[(t.kpi, t.scope, match)] = {
            "kpi": t.kpi, "scope": t.scope, "match": match, "value": float(t.value),
            "min_n": int(t.min_n if t.min_n is not None else default_min_n(settings, t.kpi)),
        }
    return list(out.values())


def store_results(settings: Settings, engine: Engine, period: str, rows: Sequence[KpiRow]) -> None:
    """Upsert the period's KpiResult and AppliedTarget rows and drop the ones no longer produced."""
    kt = KpiResult.__table__  # type: ignore[attr-defined]
    at = AppliedTarget.__table__  # type: ignore[attr-defined]
    records = [{
        "period": period, "kpi": r.kpi, "scope": r.scope, "scope_value": r.scope_value, "n": r.n,
        "value": r.value, "ci_low": r.ci_low, "ci_high": r.ci_high, "method": r.method,
        "target": r.target, "min_n": r.min_n, "status": r.status, "signal": r.signal,
        "provisional": r.provisional, "stats": r.stats,
    } for r in rows]
    targets = [{"period": period, **t} for t in applied_targets(settings)]
    with session_scope(engine) as session:
        conn = session.connection()
        _delete_stale(conn, kt, period, {r.key for r in rows}, ["kpi", "scope", "scope_value"])
        _upsert(conn, kt, records, ["period", "kpi", "scope", "scope_value"])
        _delete_stale(conn, at, period, {(t["kpi"], t["scope"], t["match"]) for t in targets},
                      ["kpi", "scope", "match"])
        _upsert(conn, at, targets, ["period", "kpi", "scope", "match"])


def stored_rows(engine: Engine, period: str, scope: str | None = None) -> list[KpiRow]:
    """The stored KpiResult rows of a period as KpiRow (stats included), in display order."""
    t = KpiResult.__table__  # type: ignore[attr-defined]
    stmt = select(t).where(t.c.period == period)
    if scope:
        stmt = stmt.where(t.c.scope == scope)
    with engine.connect() as conn:
        recs = conn.execute(stmt).mappings().all()
    kpi_pos = {k: i for i, k in enumerate(KPI_ORDER)}
    scope_pos = {s: i for i, s in enumerate(BASE_SCOPES)}
    out = [KpiRow(kpi=r["kpi"], scope=r["scope"], scope_value=r["scope_value"], n=r["n"],
                  value=r["value"], ci_low=r["ci_low"], ci_high=r["ci_high"], method=r["method"],
                  target=r["target"], min_n=r["min_n"], status=r["status"], signal=r["signal"],
                  provisional=bool(r["provisional"]), period=r["period"], stats=r["stats"] or {})
           for r in recs]
    out.sort(key=lambda r: (scope_pos.get(r.scope, len(scope_pos)), r.scope, r.scope_value,
                            kpi_pos.get(r.kpi, 99)))
    return out
