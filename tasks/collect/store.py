"""One file's prepared rows into the database in one transaction: new rows inserted, changed rows
updated, rejected rows quarantined (or readmitted), the import recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from datetime import datetime
from itertools import repeat
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, Table, and_, bindparam, insert, select, update

from cxloop.config import SourceConfig
from cxloop.models import (
    Feedback,
    ImportRecord,
    QuarantinedRow,
    utcnow,
)
from cxloop.tasks.cases.contacts import store_contacts
from cxloop.tasks.collect.bulk import _IN_CHUNK, _bulk_insert, _bulk_update, _chunks, _existing
from cxloop.tasks.collect.ratings import store_file_ratings
from cxloop.tasks.collect.summary import COUNT_NAMES, ImportSummary
from cxloop.tasks.collect.values import _null_columns, _row_columns
from cxloop.tasks.mapping import Prepared, Rejection

_FB: Table = Feedback.__table__  # type: ignore[attr-defined]


def _store(engine: Engine, source: SourceConfig, prep: Prepared, period: str, imp: ImportSummary,
           content_hash: str, periods: dict[str, Any] | None = None) -> None:
    """Upsert the accepted rows, quarantine the rejected ones and write the import record, in one
    transaction."""
    fb: Table = Feedback.__table__  # type: ignore[attr-defined]
    qt: Table = QuarantinedRow.__table__  # type: ignore[attr-defined]
    it: Table = ImportRecord.__table__  # type: ignore[attr-defined]
    now = utcnow()
    with engine.begin() as conn:
        import_id = conn.execute(insert(it).values(
            source=source.name, file=imp.file, content_hash=content_hash, period=period, started_at=now,
            collect_started=imp.collect_started,
            **dict.fromkeys(COUNT_NAMES, 0), error=None, periods=periods, warnings=prep.warnings or None,
        )).inserted_primary_key[0]  # type: ignore[index]
        imp.import_id = int(import_id)
        imp.warnings = prep.warnings
        records = store_contacts(conn, source.name, prep.records)  # contact details: their own table
        new_idx: list[int] = []
        changed: list[tuple[int, int]] = []
        same = 0
        if len(records):
            keys = records["response_id"].tolist()
            stored = _existing(conn, fb, source.name, keys)
            if not stored:  # none of these ids stored yet: every row is new
                new_idx = list(range(len(keys)))
            else:
                for pos, (rid, h) in enumerate(zip(keys, records["content_hash"].tolist(), strict=True)):
                    hit = stored.get(rid)
                    if hit is None:
                        new_idx.append(pos)
                    elif hit[1] == h:
                        same += 1
                    else:
                        changed.append((pos, hit[0]))
        dialect = conn.dialect.name
        if new_idx:
            fresh = records if len(new_idx) == len(records) else records.iloc[new_idx]
            imp.inserted = fresh.drop(columns="content_hash").assign(source=source.name)
            names, columns, constants = _row_columns(fresh, {
                    "source": source.name, "period": period, "import_id": import_id, "quarantined": False,
                    "loaded_at": now, "updated_at": None, "sentiment": None, "sentiment_score": None,
                    "themes": None,
                }, dialect)
            _bulk_insert(conn, fb.name, names, columns, constants)
        _update_changed(conn, records, changed, {
            "period": period, "import_id": import_id, "updated_at": now,
            # The content changed: the comments stage must look at it again.
            "sentiment": None, "sentiment_score": None, "themes": None,
        })
        if len(records):
            store_file_ratings(conn, source.name, period, records["response_id"].tolist(), prep.ratings)
        _quarantine(conn, qt, source.name, period, prep.rejected, lambda: prep.fixed_keys, imp.file, now)
        imp.rows_read, imp.loaded, imp.updated = prep.rows_read, len(new_idx), len(changed)
        imp.duplicates, imp.rejected = same + prep.repeated, len(prep.rejected)
        imp.out_of_period = prep.out_of_period
        conn.execute(update(it).where(it.c.id == import_id).values(
            rows_read=imp.rows_read, loaded=imp.loaded, updated=imp.updated, duplicates=imp.duplicates,
            rejected=imp.rejected, out_of_period=imp.out_of_period))


def _update_changed(conn: Connection, records: pd.DataFrame, changed: Sequence[tuple[int, int]],
                    extra: dict[str, Any]) -> None:
    """Overwrite stored rows with new content: `changed` = (position in `records`, row id)."""
    if not changed:
        return
    fb: Table = Feedback.__table__  # type: ignore[attr-defined]
    names, columns, constants = _row_columns(records.iloc[[p for p, _ in changed]], extra,
                                             conn.dialect.name)
    ids = [row_id for _, row_id in changed]
    _bulk_update(conn, fb.name, [*names, *constants],
                 list(zip(*columns, *(repeat(v, len(ids)) for v in constants.values()), ids,
                          strict=True)),
                 _null_columns([*names, *constants], extra))


def _quarantine(conn: Connection, qt: Table, source: str, period: str, rejected: Sequence[Rejection],
                fixed: Callable[[], Container[str]], file: str, now: datetime) -> None:
    """Keep every rejected row with its reasons; readmit earlier rejections that parse now
    (`fixed`: the row keys that parse now, asked for only when an entry could be readmitted)."""
    stored = {key: (qid, stage, readmitted) for key, qid, stage, readmitted in conn.execute(
        select(qt.c.row_key, qt.c.id, qt.c.stage, qt.c.readmitted_at)
        .where(and_(qt.c.period == period, qt.c.source == source)))}
    latest = {r.row_key: r for r in rejected}  # a key repeated in the file: its last row
    inserts, updates = [], []
    for key, rej in latest.items():
        values = {"response_id": rej.response_id, "file": file, "line": rej.row, "stage": "collect",
                  "raw": rej.raw, "reasons": rej.reasons, "readmitted_at": None}
        if key in stored:
            updates.append({**{f"v_{k}": v for k, v in values.items()}, "b_id": stored[key][0]})
        else:
            inserts.append({**values, "period": period, "source": source, "row_key": key, "created_at": now})
    for part in _chunks(inserts):
        conn.execute(insert(qt), list(part))
    if updates:
        stmt = update(qt).where(qt.c.id == bindparam("b_id")).values(
            {k[2:]: bindparam(k) for k in updates[0] if k != "b_id"})
        for part in _chunks(updates):
            conn.execute(stmt, list(part))
    candidates = [(key, qid) for key, (qid, stage, readmitted) in stored.items()
                  if stage == "collect" and readmitted is None and key not in latest]
    fixed_keys = fixed() if candidates else frozenset()
    readmit = [qid for key, qid in candidates if key in fixed_keys]
    for part in _chunks(readmit, _IN_CHUNK):
        conn.execute(update(qt).where(qt.c.id.in_(list(part))).values(readmitted_at=now))


def _record_failure(engine: Engine, period: str, imp: ImportSummary, content_hash: str) -> None:
    it: Table = ImportRecord.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        imp.import_id = int(conn.execute(insert(it).values(
            source=imp.source, file=imp.file, content_hash=content_hash, period=period,
            started_at=utcnow(), collect_started=imp.collect_started, error=imp.error,
            **dict.fromkeys(COUNT_NAMES, 0),
        )).inserted_primary_key[0])  # type: ignore[index]
