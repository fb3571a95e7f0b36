"""The validate stage of one period: load the rows, run row and batch checks, quarantine the failing
rows (or readmit the fixed ones) and store the checks, in one transaction.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, bindparam, delete, func, insert, select, update

from cxloop.config import Settings
from cxloop.db import session_scope
from cxloop.models import (
    CANONICAL_FIELDS,
    QualityCheck,
    QuarantinedRow,
    utcnow,
)
from cxloop.tasks import month
from cxloop.tasks.collect.records import current_imports, rows_of_period_read
from cxloop.tasks.validate.batch import batch_frames, check_batch
from cxloop.tasks.validate.gx import build_gx, run_expectations
from cxloop.tasks.validate.messages import json_safe
from cxloop.tasks.validate.partitions import in_order, merge_outcomes, partitionable
from cxloop.tasks.validate.report import write_report
from cxloop.tasks.validate.results import GateResult
from cxloop.tasks.validate.rows import checks_and_reasons, keyed_row_frame, keys_by_equality, needed_columns
from cxloop.tasks.validate.suites import (
    ROW_FRAME,
    STAGE,
    Expectation,
    expectations_of,
    load_suites,
    placeholder_values,
)
from cxloop.tasks.validate.tables import FB, FT, IR, QC, QR, QT

_CHUNK = 900
_BULK = 5_000  # rows per executemany of quarantine inserts/updates


def load_period_rows(month_rows: month.Month, columns: list[str] | None = None) -> pd.DataFrame:
    """Feedback rows of the period, clean and quarantined: id, source, quarantined and `columns`
    (default: every canonical field), typed as `tasks.month` types them (text columns of pandas'
    `str` type, datetimes in UTC, scores float).

    The rows come from the `Month` handed over: inside a cycle run the month is read once and
    shared by the stages; on its own, this reads the period from the database.
    """
    wanted = [c for c in CANONICAL_FIELDS if columns is None or c in columns]
    return month_rows.rows(["id", "source", "quarantined", *wanted])


def _raw_values(engine: Engine, ids: list[int]) -> dict[int, tuple[dict[str, Any], str | None]]:
    """Every canonical value of the given rows, JSON-safe, and the file that loaded each (its import
    record's): what quarantine keeps of a row, so `quarantine show` / `export` say where to fix
    it. (Not the line: a stored row does not keep it; its response id finds it in the file.)"""
    out: dict[int, tuple[dict[str, Any], str | None]] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            query = (select(FB.id, IR.file.label("loaded_from"), *[FB[c] for c in CANONICAL_FIELDS])
                     .select_from(FT.outerjoin(IR.id.table, FB.import_id == IR.id)).where(FB.id.in_(chunk)))
            for row in conn.execute(query).mappings():
                out[int(row["id"])] = ({c: json_safe(row[c]) for c in CANONICAL_FIELDS}, row["loaded_from"])
    return out


@contextmanager
def _on_cluster(settings: Settings, period: str, month_rows: month.Month, row_exps: list[Expectation]
                ) -> Iterator[Callable[[], list[tuple[Expectation, dict[str, Any]]]] | None]:
    """With `[engine] dask_address` and the month read from its columnar copy (a cycle run keeps no
    month in memory then, `flows.context`): the partitionable row expectations submitted to the
    cluster, one task per `month.PART_ROWS` rows of the copy, and a call that waits for them and
    gives their merged outcomes (`tasks.validate.partitions`), equal to the local run's. None
    otherwise: everything runs here, as without a cluster."""
    parted = [e for e in row_exps if partitionable(e)]
    address = settings.engine.dask_address
    if not address or not parted or month_rows.period != period or not month_rows.columnar():
        yield None
        return
    from cxloop.tasks import dask_work

    assert month_rows.copies is not None
    client = dask_work.connect(address)
    try:
        futures = dask_work.submit_row_checks(client, month_rows.copies, period, parted, month.PART_ROWS)
        yield lambda: merge_outcomes(parted, dask_work.gather(client, futures))
    finally:
        client.close()  # type: ignore[attr-defined]


def validate_period(settings: Settings, engine: Engine, period: str, now: datetime | None = None,
                    lang: str | None = None, *, month_rows: month.Month | None = None) -> GateResult:
    """Validate all rows of a period, update quarantine and checks, write the report, decide the gate.
    `month_rows`: the month the cycle shares among its stages (None: read from the database)."""
    month_rows = month_rows or month.Month(engine, period)
    now = now or utcnow()
    params = placeholder_values(settings, period, now)
    exps = [e for s in load_suites(settings) for e in expectations_of(s, settings, params)]
    build_gx(exps)  # a broken suite file fails here, before anything is written
    row_exps = [e for e in exps if e.level == "row"]
    batch_exps = [e for e in exps if e.level == "batch"]

    with _on_cluster(settings, period, month_rows, row_exps) as cluster:
        # Without a cluster every row expectation runs here on the whole month, as always; with
        # one, those that test each row on its own run on the workers meanwhile, and only the
        # dataset-level ones (uniqueness across the month, table-level) here.
        whole = [e for e in row_exps if cluster is None or not partitionable(e)]
        needed = needed_columns(whole)
        raw_df = load_period_rows(month_rows, needed)
        df, row_keys = keyed_row_frame(raw_df, numbers=keys_by_equality(whole), every_field=needed is None,
                                  stored=True)
        del raw_df
        outcomes = run_expectations(whole, df, ROW_FRAME, row_keys)
        if cluster is not None:
            outcomes = in_order(row_exps, outcomes, cluster())
    row_checks, reasons = checks_and_reasons(outcomes)
    if len(df) > month.KEEP_ROWS:  # GX's batch objects hold the columns in reference cycles: free
        gc.collect()  # a large month's now, not at Python's next full collection (~1 s at 10M rows)
    bad_keys = set(reasons)
    is_bad = pd.Series(row_keys.among(bad_keys), index=df.index)

    bad_rows = df.loc[is_bad, ["id", "source", "response_id"]]
    bad_rows = bad_rows.assign(row_key=row_keys.text(np.flatnonzero(is_bad.to_numpy())))
    bad = bad_rows.to_dict("records")
    raws = _raw_values(engine, [int(r["id"]) for r in bad])
    readmitted = 0
    # Core statements, not ORM objects: building a SQLModel instance per quarantined row costs
    # about 0.4 ms (8 s for the 20,000 bad rows of a 1M-row month).
    with engine.begin() as conn:
        was_q = df["quarantined"].fillna(False).astype(bool)
        to_set = [int(i) for i in df.loc[is_bad & ~was_q, "id"]]
        to_clear = [int(i) for i in df.loc[~is_bad & was_q, "id"]]
        for ids, flag in ((to_set, True), (to_clear, False)):
            for start in range(0, len(ids), _CHUNK):
                conn.execute(update(FT).where(FB.id.in_(ids[start:start + _CHUNK]))
                             .values(quarantined=flag))
        existing = {(r.source, r.row_key): r for r in conn.execute(
            select(QR.id, QR.source, QR.row_key, QR.stage, QR.raw, QR.reasons, QR.readmitted_at, QR.file)
            .where(QR.period == period))}
        # "source|response_id" of the period's rows that have a quarantine entry (a set of all 1M
        # keys costs more than looking the entries' keys up)
        entry_keys = {f"{s}|{k}" for s, k in existing}
        present = set(row_keys.text(np.flatnonzero(row_keys.among(entry_keys))).tolist())
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        created = utcnow()
        for rec in bad:
            key = (str(rec["source"]), str(rec["response_id"]))
            row_reasons = reasons[rec["row_key"]]
            raw, file = raws[int(rec["id"])]
            q = existing.get(key)
            if q is None:
                inserts.append({"period": period, "source": key[0], "row_key": key[1], "response_id": key[1],
                                "file": file, "line": None, "stage": STAGE, "raw": raw,
                                "reasons": row_reasons, "created_at": created, "readmitted_at": None})
            elif (q.stage != STAGE or q.readmitted_at is not None or q.reasons != row_reasons
                  or q.raw != raw or q.file != file):
                updates.append({"b_id": q.id, "stage": STAGE, "raw": raw, "reasons": row_reasons,
                                "readmitted_at": None, "response_id": key[1], "file": file})
        for start in range(0, len(inserts), _BULK):
            conn.execute(insert(QT), inserts[start:start + _BULK])
        if updates:
            stmt = update(QT).where(QR.id == bindparam("b_id")).values(
                {k: bindparam(k) for k in updates[0] if k != "b_id"})
            for start in range(0, len(updates), _BULK):
                conn.execute(stmt, updates[start:start + _BULK])
        bad_pairs = {(str(r["source"]), str(r["response_id"])) for r in bad}
        readmit_ids = [q.id for key, q in existing.items()
                       if q.stage == STAGE and q.readmitted_at is None and key not in bad_pairs
                       and f"{key[0]}|{key[1]}" in present]
        for start in range(0, len(readmit_ids), _CHUNK):
            conn.execute(update(QT).where(QR.id.in_(readmit_ids[start:start + _CHUNK]))
                         .values(readmitted_at=now))
        readmitted = len(readmit_ids)
        collect_rows = [q for q in existing.values() if q.stage == "collect" and q.readmitted_at is None
                        and f"{q.source}|{q.row_key}" not in present]
        imports = current_imports(conn.execute(
            select(IR.id, IR.source, IR.file, IR.content_hash, IR.error, IR.collect_started, IR.rows_read,
                   IR.out_of_period, IR.duplicates).where(IR.period == period)))
    # The flags are committed: the month frame kept for the cycle's later stages follows them.
    month_rows.patch(to_set, {"quarantined": True})
    month_rows.patch(to_clear, {"quarantined": False})

    collect_by_source: dict[str, int] = defaultdict(int)
    for q in collect_rows:
        collect_by_source[q.source] += 1
    quarantined = int(is_bad.sum())
    frames = batch_frames(settings, engine, period, df, quarantined, len(collect_rows), collect_by_source)
    batch_checks = check_batch(batch_exps, frames)
    checks = row_checks + batch_checks
    failed_critical = [c.expectation for c in checks if c.gating]
    total = len(df) + len(collect_rows)  # the month's responses: loaded + quarantined
    # Rows read that repeat a response of the month. Not the import records' `duplicates`: a
    # corrected file's import also counts there the rows it left unchanged, which are loaded. (Stored
    # rows that no file read now holds - a file removed since - leave read short of the month's
    # rows: the figures cannot add up then, and duplicates is 0.)
    read = rows_of_period_read(imports) if imports else total
    duplicates = max(0, read - total)
    result = GateResult(
        period=period, status="held" if failed_critical else "passed", checks=checks,
        failed_critical=failed_critical, rows=len(df), quarantined=quarantined,
        collect_quarantined=len(collect_rows),
        quarantine_share=(quarantined + len(collect_rows)) / total if total else 0.0,
        report_path=None, readmitted=readmitted, duplicates=duplicates,
        read=read)

    with session_scope(engine) as session:
        session.execute(delete(QualityCheck).where(QC.period == period))
        session.add_all([QualityCheck(
            period=period, suite=c.suite, expectation=c.expectation, column=c.column, level=c.level,
            severity=c.severity, success=c.success, unexpected_count=c.unexpected_count,
            observed={**c.observed, "type": c.type, "frame": c.frame, "element_count": c.element_count,
                      "message": c.message, "gating": c.gating},
            sample=c.sample) for c in checks])

    result.report_path = write_report(settings, result, bad_rows, reasons,
                                      lang or settings.project.language, now)
    return result


def readmit(settings: Settings, engine: Engine, period: str, now: datetime | None = None) -> dict[str, Any]:
    """Re-run the checks after the source was fixed; report how many quarantined rows came back."""
    with engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(QuarantinedRow).where(
            QR.period == period, QR.stage == STAGE,
            QR.readmitted_at.is_(None))).scalar_one()
    gate = validate_period(settings, engine, period, now=now)
    return {"period": period, "quarantined_before": int(before), "readmitted": gate.readmitted,
            "still_quarantined": gate.quarantined, "newly_quarantined": max(
                0, gate.quarantined - (int(before) - gate.readmitted)),
            "collect_quarantined": gate.collect_quarantined, "status": gate.status,
            "report": str(gate.report_path) if gate.report_path else None}
