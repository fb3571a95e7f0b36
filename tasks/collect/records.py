"""Reading back what collect stored: the import records (`cxloop imports`) and the period's rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Table, func, select

from cxloop.models import (
    Feedback,
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


def feedback_count(engine: Engine, period: str) -> int:
    fb: Table = Feedback.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        q = select(func.count()).select_from(fb).where(fb.c.period == period)
        return int(conn.execute(q).scalar_one())
