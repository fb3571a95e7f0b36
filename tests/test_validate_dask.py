"""Validate's row checks in partitions (issue 20, item 2): the row expectations that test each row on
its own run on ranges of the month's rows, on a real Dask LocalCluster of two workers with
`[engine] dask_address`, and give the gate, the quarantined rows with their reasons and the counts
of the local run; dataset-level ones (uniqueness across the month) stay whole-month."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, delete, select, update

import cxloop.tasks.month as month
from cxloop.config import Settings, settings_from_dict
from cxloop.db import session_scope
from cxloop.models import Feedback, QualityCheck, QuarantinedRow
from cxloop.tasks import validate as v
from cxloop.tasks.columnar import Copies
from cxloop.tasks.validate import partitions as parts
from cxloop.tasks.validate.results import GateResult
from cxloop.tasks.validate.rows import checks_and_reasons

PERIOD = "2026-10"
NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
MID = datetime(2026, 10, 15, 4, 0, tzinfo=UTC)
N, PART = 40, 7  # six partitions: rows 0-6, 7-13, ..., 35-39


def _row(i: int, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "source": "shop" if i % 4 == 0 else "web", "response_id": f"r{i}",
        "submitted_at": MID + timedelta(minutes=i), "channel": ["web", "app", "hotline"][i % 3],
        "journey_stage": "purchase", "touchpoint": "app", "nps": i % 11, "csat": 1 + i % 5,
        "ces": 1 + i % 7, "cx_success": 1 + i % 7, "cx_effort": 1 + (i + 1) % 7,
        "cx_emotion": 1 + (i + 2) % 7, "opened_at": MID, "first_response_at": MID + timedelta(hours=1),
        "resolved_at": MID + timedelta(days=1), "comment": None if i < PART else "ok", "region": "north",
    }
    row.update(over)
    return row


# Row -> what breaks it: failing rows in every partition, one row failing four checks, and a
# response id under two sources at rows 2 and 37 (partitions 0 and 5) for the house suite's
# whole-month uniqueness check.
BROKEN: dict[int, dict[str, Any]] = {
    3: {"nps": 12}, 8: {"csat": 9}, 12: {"nps": 12, "channel": "fax", "region": "mars",
                                           "resolved_at": MID - timedelta(days=1)},
    20: {"submitted_at": NOW + timedelta(days=2)}, 25: {"nps": 12, "touchpoint": "kiosk"},
    30: {"csat": 0, "first_response_at": MID - timedelta(hours=2)},
    37: {"source": "shop", "response_id": "r2"},
    38: {"nps": 12, "region": None},
}


def _settings(base: Path, **engine: Any) -> Settings:
    """Two sources, and a house row suite: a critical check with a row condition, a critical
    dataset-level uniqueness of response ids across sources, and a warning with `mostly` that one
    partition alone fails (its comments are all missing) but the month passes."""
    folder = base / "expectations"
    folder.mkdir(exist_ok=True)
    (folder / "house_rules.json").write_text(json.dumps({
        "name": "house_rules", "meta": {"level": "row"},
        "expectations": [
            {"type": "expect_column_values_to_be_in_set",
             "kwargs": {"column": "region", "value_set": ["north", "south"], "row_condition": "nps >= 0",
                        "condition_parser": "pandas"},
             "meta": {"id": "region_known", "severity": "critical"}},
            {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "response_id"},
             "meta": {"id": "response_id_unique_across_sources", "severity": "critical"}},
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "comment", "mostly": 0.75},
             "meta": {"id": "mostly_commented", "severity": "warning"}},
        ]}), encoding="utf-8")
    return settings_from_dict({
        "sources": [{"name": "web", "kind": "csv", "path": "web.csv"},
                    {"name": "shop", "kind": "csv", "path": "shop.csv"}],
        "vocabulary": {"journey_stage": ["purchase", "delivery"], "touchpoint": ["app", "counter"]},
        "quality": {"max_quarantine_share": 0.2}, "engine": engine,
    }, base, env={})


def _row_exps(settings: Settings) -> list[v.Expectation]:
    return [e for s in v.load_suites(settings) if s.level == "row"
            for e in v.expectations_of(s, settings, v.placeholder_values(settings, PERIOD, NOW))]


def test_the_partitions_merge_into_the_whole_months_checks_and_reasons(tmp_path: Path) -> None:
    """Without a cluster: the partitionable expectations run on partitions of seven rows, merged,
    give what GX gives on the whole frame (counts, percentages, `mostly`, samples, reasons in
    order); uniqueness is never split."""
    exps = _row_exps(_settings(tmp_path))
    parted = [e for e in exps if parts.partitionable(e)]
    assert {e.name for e in exps if not parts.partitionable(e)} == {
        "response_id_unique", "response_id_unique_across_sources"}
    frame = month.typed(pd.DataFrame([_row(i, **BROKEN.get(i, {})) for i in range(N)])
                        .assign(id=range(1, N + 1), quarantined=False))
    rows = frame[parts.columns_read(parted)]
    whole_df, keys = v.keyed_row_frame(frame, numbers=True, stored=True)
    whole = v.run_expectations(parted, whole_df, "rows", keys)
    merged = parts.merge_outcomes(parted, [parts.partition_outcomes(rows.iloc[s:s + PART], s, parted)
                                           for s in range(0, N, PART)])
    assert checks_and_reasons(merged) == checks_and_reasons(whole)
    checks = {c.expectation: c for c in checks_and_reasons(merged)[0]}
    assert checks["nps_in_scale"].unexpected_count == 4 and len(checks["nps_in_scale"].sample) == 4
    assert checks["mostly_commented"].success and checks["mostly_commented"].unexpected_count == PART
    alone = parts.partition_outcomes(rows.iloc[:PART], 0, parted)
    assert not alone[parted.index(next(e for e in parted if e.name == "mostly_commented"))]["success"]
    assert [r["result"]["unexpected_percent"] for _e, r in merged] == [
        r["result"].get("unexpected_percent") for _e, r in whole]
    empty = parts.merge_outcomes(parted, [parts.partition_outcomes(rows.iloc[:0], 0, parted)])
    assert checks_and_reasons(empty) == v.check_rows(parted, v.row_frame(frame.iloc[:0]))


def _state(engine: Engine, gate: GateResult) -> dict[str, Any]:
    """What the stage decided and wrote, without the times it wrote it at."""
    with engine.connect() as conn:
        quarantined = sorted((r.source, r.row_key, r.response_id, r.stage, json.dumps(r.raw, sort_keys=True),
                              json.dumps(r.reasons), r.readmitted_at is None)
                             for r in conn.execute(select(QuarantinedRow.__table__)))  # type: ignore[attr-defined]
        flags = sorted(conn.execute(select(v.FB.source, v.FB.response_id, v.FB.quarantined)).all())
        checks = sorted((r.suite, r.expectation, r.column, r.severity, r.success, r.unexpected_count,
                         json.dumps(r.observed, sort_keys=True), json.dumps(r.sample))
                        for r in conn.execute(select(QualityCheck.__table__)))  # type: ignore[attr-defined]
    assert gate.report_path is not None
    return {"status": gate.status, "failed": gate.failed_critical, "counts": gate.counts(),
            "checks": [asdict(c) for c in gate.checks], "quarantine": quarantined, "flags": flags,
            "stored_checks": checks, "report": gate.report_path.read_text(encoding="utf-8")}


def _forget_validation(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(delete(QuarantinedRow.__table__))  # type: ignore[attr-defined]
        conn.execute(delete(QualityCheck.__table__))  # type: ignore[attr-defined]
        conn.execute(update(Feedback.__table__).values(quarantined=False))  # type: ignore[attr-defined]


def test_row_checks_on_a_two_worker_dask_cluster_equal_the_local_run(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dask_address: str) -> None:
    """Issue 20: with `[engine] dask_address`, a month read from its columnar copy is checked in six
    partitions on a real LocalCluster of two worker processes; the gate (held: too many rows
    quarantined), every quarantined row with its reasons in order, the flags, the stored checks
    and their counts, and the report are those of the local run; a re-run rewrites nothing."""
    with session_scope(engine) as s:
        s.add_all([Feedback(period=PERIOD, content_hash="h", **_row(i, **BROKEN.get(i, {})))
                   for i in range(N)])
    monkeypatch.setattr(month, "PART_ROWS", PART)
    copies = Copies(tmp_path / "columnar")
    local = _settings(tmp_path)
    gate = v.validate_period(local, engine, PERIOD, now=NOW, lang="en",
                             month_rows=month.Month(engine, PERIOD, keep=True, copies=copies))
    here = _state(engine, gate)
    assert here["status"] == "held" and here["failed"] == ["quarantine_share_below_max"]
    reasons = {(q[0], q[1]): [r["expectation"] for r in json.loads(q[5])] for q in here["quarantine"]}
    assert reasons[("shop", "r12")] == ["nps_in_scale", "channel_in_vocabulary",
                                       "resolved_at_not_before_opened", "region_known"]
    assert reasons[("web", "r2")] == reasons[("shop", "r2")] == ["response_id_unique_across_sources"]
    assert len(reasons) == len(BROKEN) + 1 and ("web", "r38") in reasons  # + the twin of row 37

    _forget_validation(engine)
    remote = _settings(tmp_path, dask_address=dask_address)
    import cxloop.tasks.dask_work as dask_work

    submitted: list[int] = []
    submit = dask_work.submit_row_checks

    def counted(*args: Any) -> list[Any]:
        futures = submit(*args)
        submitted.append(len(futures))
        return futures

    monkeypatch.setattr(dask_work, "submit_row_checks", counted)
    run = month.Month(engine, PERIOD, keep=True, copies=copies, keep_rows=0)  # as a run with a cluster
    there = v.validate_period(remote, engine, PERIOD, now=NOW, lang="en", month_rows=run)
    assert submitted == [6]  # checked on the cluster, one task per partition
    assert _state(engine, there) == here
    again = v.validate_period(remote, engine, PERIOD, now=NOW, lang="en",
                              month_rows=month.Month(engine, PERIOD, keep=True, copies=copies, keep_rows=0))
    assert submitted == [6, 6] and _state(engine, again) == here
