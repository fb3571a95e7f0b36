"""Files imported before with the same content and mapping are not parsed again when nothing can
change for this period: their counts are taken from what is stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from sqlalchemy import Engine, Table, insert, select

from cxloop.config import Settings, SourceConfig
from cxloop.models import (
    ImportRecord,
    QuarantinedRow,
    utcnow,
)
from cxloop.tasks.collect.summary import ImportSummary

# Bump when `prepare` maps the same file differently: earlier imports then no longer vouch for it.
_PREPARE_VERSION = 2  # 2: NUL characters removed from cells (issue 21)


def _fingerprint(settings: Settings, source: SourceConfig) -> str:
    """What besides the file's bytes decides its canonical rows: the source's mapping, the time
    zone, the department ownership (derived departments) and the mapping code's version."""
    spec = {"v": _PREPARE_VERSION, "source": source.model_dump(mode="json"), "tz": str(settings.tz),
            "departments": {k: d.model_dump(mode="json") for k, d in settings.departments.items()}}
    if source.drivers:  # a driver's scale and "not rated" answers decide its stored ratings
        spec["drivers"] = [d.model_dump(mode="json") for d in settings.drivers if d.name in source.drivers]
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _may_hold(source: SourceConfig, data: bytes, response_id: str) -> bool:
    """Could the file mention this response id? A byte search in the usual encodings (and JSON
    escapes); compressed Excel files cannot be searched, so they may hold anything."""
    if source.kind == "excel":
        return True
    forms = {response_id, json.dumps(response_id)[1:-1]}
    for text in forms:
        for enc in ("utf-8", "gb18030", "utf-16-le", "utf-16-be"):
            try:
                if text.encode(enc) in data:
                    return True
            except UnicodeEncodeError:
                continue
    return False


def _reuse(engine: Engine, source: SourceConfig, label: str, data: Callable[[], bytes], digest: str,
           fingerprint: str, period: str, imp: ImportSummary) -> bool:
    """Record a file without parsing it, when an earlier import of the same bytes under the same
    mapping shows that parsing it would change nothing for `period`:

    - it has no row for this period (every row is dated, in other months), or
    - the latest import of this file for this period was of these bytes: its rows are stored.

    The import record is written as the parse would have written it (rows_read = the file's
    rows; out_of_period, rejected as before; the rows stored earlier count as duplicates), with
    `periods.reused` naming the import it relied on. Not used when the source has a collect-stage
    quarantine entry for the period that a parse of this file could change: one of this file's
    own that another file readmitted, or another file's whose response id occurs in this file
    (a parse would readmit it if the row is valid here).
    """
    it: Table = ImportRecord.__table__  # type: ignore[attr-defined]
    qt: Table = QuarantinedRow.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        earlier = conn.execute(
            select(it.c.id, it.c.period, it.c.content_hash, it.c.periods, it.c.rows_read, it.c.loaded,
                   it.c.updated, it.c.duplicates, it.c.rejected, it.c.out_of_period)
            .where(it.c.source == source.name, it.c.file == label, it.c.error.is_(None))
            .order_by(it.c.id.desc())).all()
        vouched = [r for r in earlier if r.content_hash == digest and isinstance(r.periods, dict)
                   and r.periods.get("config") == fingerprint]
        if not vouched:
            return False
        last_here = next((r for r in earlier if r.period == period), None)
        ref = None
        if last_here is not None and last_here in vouched:
            ref = last_here
            counts = {"rows_read": ref.rows_read, "loaded": 0, "updated": 0,
                      "duplicates": ref.loaded + ref.updated + ref.duplicates, "rejected": ref.rejected,
                      "out_of_period": ref.out_of_period}
        else:
            latest = vouched[0]
            info = latest.periods
            if int(info.get("undated", 1)) or int((info.get("rows") or {}).get(period, 0)):
                return False
            ref = latest
            counts = {"rows_read": ref.rows_read, "loaded": 0, "updated": 0, "duplicates": 0,
                      "rejected": 0, "out_of_period": ref.rows_read}
        entries = conn.execute(
            select(qt.c.response_id, qt.c.file, qt.c.readmitted_at)
            .where(qt.c.period == period, qt.c.source == source.name, qt.c.stage == "collect")).all()
        for rid, file, readmitted in entries:
            if file == label:
                if readmitted is not None:  # a parse would put this file's rejection back
                    return False
            elif rid is not None and _may_hold(source, data(), str(rid)):
                return False  # a parse might readmit (or take over) another file's rejection
    periods = {**ref.periods, "reused": int(ref.id)}
    with engine.begin() as conn:
        imp.import_id = int(conn.execute(insert(it).values(
            source=source.name, file=label, content_hash=digest, period=period, started_at=utcnow(),
            collect_started=imp.collect_started,
            error=None, periods=periods, **counts,
        )).inserted_primary_key[0])  # type: ignore[index]
    for name, value in counts.items():
        setattr(imp, name, int(value))
    return True
