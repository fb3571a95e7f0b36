"""Cycle bookkeeping without Prefect: the period lock and stage resume records."""

from __future__ import annotations

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
