"""Reading back what collect stored: the import records, newest first (`cxloop imports`), and
the ones that describe a period's files as they are now (`current_imports`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol, TypeVar

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



class _Imported(Protocol):
    @property
    def id(self) -> int | None: ...
    @property
    def source(self) -> str: ...
    @property
    def file(self) -> str: ...
    @property
    def content_hash(self) -> str: ...
    @property
    def error(self) -> str | None: ...
    @property
    def collect_started(self) -> datetime | None: ...


R = TypeVar("R", bound=_Imported)


def current_imports(records: Iterable[R]) -> list[R]:
    """The records that describe the period's files as they are now, in import order: per
    (source, file), the first import of its newest content (its newest record when that one
    failed). Every collect writes a record for each file it reads, an unchanged file's re-read
    included (every row then counts as a duplicate), so a sum over all records counted each
    file once per run. A corrected file's first import counts the rows it left unchanged as
    duplicates of the earlier version's.

    A failure counts only from its source's latest collect: a source whose files could not be
    listed is recorded under its configured path, not a file's name, so once its glob matches no
    newer record of that name would ever replace the failure. Records written before migration
    0015 have no collect (None), the same for all: a source whose newest record is one of them
    keeps every failure, as before."""
    ordered = sorted(records, key=lambda r: r.id or 0)
    latest = {r.source: r.collect_started for r in ordered}  # its newest record's collect, per source
    files: dict[tuple[str, str], list[R]] = {}
    for r in ordered:
        if not r.error or r.collect_started == latest[r.source]:
            files.setdefault((r.source, r.file), []).append(r)
    out = []
    for group in files.values():
        newest = group[-1]
        same = [r for r in group if r.content_hash == newest.content_hash and not r.error]
        out.append(newest if newest.error or not same else same[0])
    return sorted(out, key=lambda r: r.id or 0)


class _Counted(Protocol):
    @property
    def rows_read(self) -> int: ...
    @property
    def out_of_period(self) -> int: ...


def rows_of_period_read(imports: Iterable[_Counted]) -> int:
    """The rows of the period that `current_imports`' files hold: what validate's record and the
    report's data-quality box both call "read"."""
    return sum(int(i.rows_read) - int(i.out_of_period) for i in imports)


def failures_since(engine: Engine, period: str, since: datetime) -> list[str]:
    """One line per source file a collect of `period` since `since` could not read (a source
    whose glob matched nothing included): the cycle goes on without them, so `cxloop run` names
    them rather than leaving a count in the collect stage's record."""
    it: Table = ImportRecord.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(select(it.c.source, it.c.error).where(
            it.c.period == period, it.c.error.is_not(None), it.c.started_at >= since).order_by(it.c.id)).all()
    return [f"source {source!r}: {error}" for source, error in rows]
