"""Reading back what collect stored: the import records, newest first (`cxloop imports`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Table, select

from cxloop.models import (
    ImportRecord,
    as_utc,
)


def list_imports(engine: Engine, period: str | None = None, source: str | None = None,
                 limit: int | None = None) -> list[dict[str, Any]]:
    """Import records, newest first, for `cxloop imports`."""
    it: Table = ImportRecord.__table__  # type: ignore[attr-defined]
    q = select(it).order_by(it.c.id.desc())
    if period:
        q = q.where(it.c.period == period)
    if source:
        q = q.where(it.c.source == source)
    if limit:
        q = q.limit(limit)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    for r in rows:
        r["started_at"] = as_utc(r["started_at"])
    return rows

