"""Cycle bookkeeping without Prefect: the period lock and stage resume records."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert

from cxloop.config import settings_from_dict
from cxloop.flows.bookkeeping import (
    CycleBusy,
    FeedbackStamp,
    begin_stage,
    data_fingerprint,
    end_stage,
    period_lock,
    stage_done_with,
    start_cycle,
    update_cycle,
)
from cxloop.models import ImportRecord


def test_second_run_of_a_period_is_refused_while_the_first_holds_it(engine: Engine) -> None:
    with period_lock(engine, "2026-10"):
        with pytest.raises(CycleBusy, match="2026-10 is already running"), period_lock(engine, "2026-10"):
            pass
        with period_lock(engine, "2026-11"):  # other periods are free
            pass
    with period_lock(engine, "2026-10"):  # released afterwards
        pass


def test_the_sqlite_period_lock_leaves_no_file_behind(tmp_path: Path) -> None:
    """A lock file per period run used to stay beside the database. Removed on release; a run
    that opened the old file meanwhile locks the new one instead (not a removed file)."""
    from cxloop.db import open_db

    engine = open_db(f"sqlite:///{tmp_path / 'cx.db'}")
    lock = tmp_path / "cx.db.2026-10.lock"
    with period_lock(engine, "2026-10"):
        assert lock.is_file() and lock.read_text().strip().endswith(f":{os.getpid()}")
        stale = open(lock)  # noqa: SIM115 - a second run that opened the file just before its removal
    assert not lock.exists()
    with period_lock(engine, "2026-10"):
        assert lock.is_file()
        fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the removed file: no lock on the period
        with pytest.raises(CycleBusy), period_lock(engine, "2026-10"):  # the new file is the one held
            pass
    stale.close()
    assert list(tmp_path.glob("*.lock")) == []
    engine.dispose()


def test_a_lock_taken_on_a_file_just_removed_is_taken_again_on_the_new_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder removes the file between this run's open and its lock: the run locks the file
    at the path now, not the removed one (else two runs would hold the period at once)."""
    from cxloop.flows import bookkeeping

    path = tmp_path / "cx.db.2026-10.lock"
    path.write_text("holder\n")
    calls: list[int] = []
    real = fcntl.flock

    def holder_lets_go_first(fh: object, op: int) -> None:
        if not calls:
            path.unlink()
        calls.append(op)
        real(fh, op)  # type: ignore[arg-type]

    monkeypatch.setattr(bookkeeping.fcntl, "flock", holder_lets_go_first)
    with bookkeeping._locked_file(path, "busy") as fh:
        assert len(calls) == 2 and os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino


def test_a_finished_stage_is_skipped_only_for_the_same_input(engine: Engine) -> None:
    start_cycle(engine, "2026-10", "test")
    begin_stage(engine, "2026-10", "kpis", "in-1")
    assert stage_done_with(engine, "2026-10", "kpis", "in-1") is None  # still running
    end_stage(engine, "2026-10", "kpis", status="completed", counts={"results": 3},
              output_fingerprint="out-1")
    done = stage_done_with(engine, "2026-10", "kpis", "in-1")
    assert done is not None and done.counts == {"results": 3}
    assert stage_done_with(engine, "2026-10", "kpis", "out-1") is not None
    assert stage_done_with(engine, "2026-10", "kpis", "in-2") is None
    begin_stage(engine, "2026-10", "kpis", "in-2")
    end_stage(engine, "2026-10", "kpis", status="failed", error="boom")
    assert stage_done_with(engine, "2026-10", "kpis", "in-2") is None  # a failed stage is redone


def test_projects_in_other_schemas_of_one_database_do_not_block_each_other(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("schemas and advisory locks are PostgreSQL's")
    from sqlalchemy import create_engine

    from cxloop.db import fresh_pg_schema
    from tests.conftest import PG_URL

    with fresh_pg_schema(PG_URL) as url:
        second = create_engine(url)
        try:
            with period_lock(engine, "2026-10"), period_lock(second, "2026-10"):
                pass
        finally:
            second.dispose()


def test_the_feedback_stamp_is_read_again_only_after_a_stage_that_writes_feedback_begins(
        engine: Engine, tmp_path: Path) -> None:
    """KPIs to report only read feedback rows: their fingerprints share one read of the stamp,
    kept in the run's own `FeedbackStamp` (no state shared between runs or engines)."""
    settings = settings_from_dict({}, tmp_path, env={})
    start_cycle(engine, "2026-10", "test")
    stamp = FeedbackStamp()
    before = data_fingerprint(settings, engine, "feedback", stamp=stamp)

    def load_more() -> None:  # what collect records for every load: the stamp counts it
        with engine.begin() as conn:
            conn.execute(insert(ImportRecord.__table__).values(  # type: ignore[attr-defined]
                source="web", file="web.csv", content_hash="x", period="2026-10", loaded=3))

    load_more()
    assert data_fingerprint(settings, engine, "feedback") != before  # without the run's memo: read
    for stage in ("kpis", "remeasure", "actions", "notify", "report"):
        begin_stage(engine, "2026-10", stage, before, stamp)
        end_stage(engine, "2026-10", stage, status="completed")
    update_cycle(engine, "2026-10", gate="passed")
    assert data_fingerprint(settings, engine, "feedback", stamp=stamp) == before  # not read again
    for stage in ("collect", "validate", "comments"):
        begin_stage(engine, "2026-10", stage, before, stamp)
        now = data_fingerprint(settings, engine, "feedback", stamp=stamp)
        assert now != before  # read again: the load shows
        before = now
        load_more()
    # a new run has its own memo
    assert data_fingerprint(settings, engine, "feedback", stamp=FeedbackStamp()) != before
