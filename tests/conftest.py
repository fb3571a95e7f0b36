"""Shared fixtures. Every database test runs on SQLite and on a real PostgreSQL.

PostgreSQL comes from $CXLOOP_TEST_PG_URL (`.ci/run` starts a server and sets it). Each test gets
its own schema there, so tests are isolated and can run in parallel. Outside CI, a missing server
skips the PostgreSQL half with a reason; in CI (CI=true) it is an error.

A test that asks for `engine` gets a database already at the newest migration without paying for
the migrations (~0.1 s on SQLite, ~0.3 s on PostgreSQL, times some 400 tests): a copy of a file
migrated once per worker, or a schema of this worker's that an earlier test left, emptied with
TRUNCATE. A schema whose tables a test changed is dropped, not reused. Migrations themselves are
tested from empty databases (`db_url` alone is always empty).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from cxloop.db import fresh_pg_schema, open_db

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


class _MigratedSchemas:
    """This worker's PostgreSQL schemas at the newest migration, handed out one test at a time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.admin = create_engine(url)
        self.free: list[str] = []
        self.tables: frozenset[str] | None = None  # the shape the migrations give

    def _url(self, schema: str) -> str:
        return f"{self.url}{'&' if '?' in self.url else '?'}options=-csearch_path%3D{schema}"

    def _tables(self, schema: str) -> frozenset[str]:
        """The schema's shape: tables, indexes, triggers and migration revision."""
        with self.admin.connect() as conn:
            rows = conn.execute(text(
                "SELECT 'table ' || tablename FROM pg_tables WHERE schemaname = :s"
                " UNION ALL SELECT 'index ' || indexname FROM pg_indexes WHERE schemaname = :s"
                " UNION ALL SELECT 'trigger ' || t.tgname FROM pg_trigger t"
                " JOIN pg_class c ON t.tgrelid = c.oid JOIN pg_namespace n ON c.relnamespace = n.oid"
                " WHERE n.nspname = :s AND NOT t.tgisinternal"),
                {"s": schema})
            shape = {r[0] for r in rows}
            if "table alembic_version" in shape:
                shape |= {f"revision {v}" for v in conn.execute(
                    text(f"SELECT version_num FROM {schema}.alembic_version")).scalars()}
            return frozenset(shape)

    def take(self) -> tuple[str, str]:
        if self.free:
            schema = self.free.pop()
        else:
            schema = f"t_{uuid.uuid4().hex[:12]}"
            with self.admin.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {schema}"))
            open_db(self._url(schema)).dispose()
            if self.tables is None:
                self.tables = self._tables(schema)
        return schema, self._url(schema)

    def give_back(self, schema: str) -> None:
        """Empty the schema for the next test, or drop it if its tables are not the migrations'."""
        tables = self._tables(schema)
        with self.admin.begin() as conn:
            if tables != self.tables:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
                return
            names = ", ".join(f"{schema}.{t[6:]}" for t in sorted(tables)
                              if t.startswith("table ") and t != "table alembic_version")
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        self.free.append(schema)

    def close(self) -> None:
        with self.admin.begin() as conn:
            for schema in self.free:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        self.admin.dispose()


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("migrated") / "cx.db"
    open_db(f"sqlite:///{path}").dispose()
    return path


@pytest.fixture(scope="session")
def _migrated_pg() -> Iterator[_MigratedSchemas]:
    schemas = _MigratedSchemas(PG_URL)
    yield schemas
    schemas.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database: a file for SQLite, a fresh schema for PostgreSQL; already
    migrated when the test also asks for `engine` (see the module's docstring)."""
    migrated = "engine" in request.fixturenames
    if request.param == "sqlite":
        if migrated:
            shutil.copyfile(request.getfixturevalue("_migrated_sqlite"), tmp_path / "cx.db")
        yield f"sqlite:///{tmp_path / 'cx.db'}"
        return
    if not _PG_OK:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL not reachable at CXLOOP_TEST_PG_URL={PG_URL!r}")
        pytest.skip("PostgreSQL not available (set CXLOOP_TEST_PG_URL)")
    if migrated:
        schemas: _MigratedSchemas = request.getfixturevalue("_migrated_pg")
        schema, url = schemas.take()
        yield url
        schemas.give_back(schema)
        return
    with fresh_pg_schema(PG_URL) as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated database engine (SQLite and PostgreSQL)."""
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

