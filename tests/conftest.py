"""Shared fixtures. Every database test runs on SQLite and on a real PostgreSQL.

PostgreSQL comes from $CXLOOP_TEST_PG_URL (`.ci/run` starts a server and sets it). Each test gets
its own schema there, so tests are isolated and can run in parallel. Outside CI, a missing server
skips the PostgreSQL half with a reason; in CI (CI=true) it is an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from cxloop.db import fresh_pg_schema

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry from a closed network
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

PG_URL = os.environ.get("CXLOOP_TEST_PG_URL", "")


def _pg_available() -> bool:
    if not PG_URL:
        return False
    try:
        with create_engine(PG_URL).connect() as conn:
            conn.execute(text("select 1"))
        return True
    except Exception:
        return False


_PG_OK = _pg_available()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database: a file for SQLite, a fresh schema for PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cx.db'}"
        return
    if not _PG_OK:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL not reachable at CXLOOP_TEST_PG_URL={PG_URL!r}")
        pytest.skip("PostgreSQL not available (set CXLOOP_TEST_PG_URL)")
    with fresh_pg_schema(PG_URL) as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated database engine (SQLite and PostgreSQL)."""
    from cxloop.db import open_db

    eng = open_db(db_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for the whole session (it costs seconds to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def month_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The periods `cxloop.tasks.month` reads from the database during the test, in order (a month
    shared or handed over by collect leaves no entry)."""
    import cxloop.tasks.month as month

    reads: list[str] = []
    read_month = month.read_month

    def counted(engine: Engine, period: str, *args: object, **kwargs: object) -> object:
        reads.append(period)
        return read_month(engine, period, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(month, "read_month", counted)
    return reads


@pytest.fixture(scope="session")
def dask_address() -> Iterator[str]:
    """One real LocalCluster of two worker processes (one thread each) for the session's Dask tests
    (the KPI histograms, comment analysis and validate's row checks on the cluster)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address

