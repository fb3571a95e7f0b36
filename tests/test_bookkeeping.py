"""Cycle bookkeeping without Prefect: the period lock and stage resume records."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from flows.bookkeeping import (
    CycleBusy,
    begin_stage,
    end_stage,
    period_lock,
    stage_done_with,
    start_cycle,
)


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

    from db import fresh_pg_schema
    from tests.conftest import PG_URL

    with fresh_pg_schema(PG_URL) as url:
        second = create_engine(url)
        try:
            with period_lock(engine, "2026-10"), period_lock(second, "2026-10"):
                pass
        finally:
            second.dispose()
