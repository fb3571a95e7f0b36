"""SQL sources cannot change the database they read, and their passwords are never shown
(issue 21, item 12). The source database is SQLite, and PostgreSQL when one is reachable; the cxloop
database is both (fixture `engine`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from cxloop.config import settings_from_dict
from cxloop.db import fresh_pg_schema
from cxloop.tasks.collect import collect_period
from cxloop.tasks.readers import mask_url, scrub_url_secrets
from tests.cli import cxloop
from tests.conftest import _PG_OK, PG_URL

P = "2026-10"
ROWS = [("t1", "2026-10-09 08:00:00", 4), ("t2", "2026-10-10 08:00:00", 2)]
HOSTILE_QUERIES = [
    "DROP TABLE answers",
    "DELETE FROM answers",
    "DELETE FROM answers; COMMIT; SELECT ticket, created, score FROM answers",
    "COMMIT; SET TRANSACTION READ WRITE; DELETE FROM answers; COMMIT; SELECT 1 AS ticket",
    "SELECT ticket, created, score FROM answers; DELETE FROM answers",
    "WITH gone AS (DELETE FROM answers RETURNING *) SELECT * FROM gone",
    "INSERT INTO answers VALUES ('t9', '2026-10-11 08:00:00', 5) RETURNING *",
    "COPY (SELECT 1) TO PROGRAM 'true'",
]


def _settings(tmp_path: Path, engine: Engine, url: str, query: str) -> Any:
    return settings_from_dict({
        "database": {"url": engine.url.render_as_string(hide_password=False)},
        "sources": [{"name": "crm", "kind": "sql", "url": url, "channel": "ticket", "query": query,
                     "columns": {"response_id": "ticket", "submitted_at": "created", "csat": "score"}}],
    }, base_dir=tmp_path, env={})


@pytest.fixture
def sqlite_source(tmp_path: Path) -> str:
    with sqlite3.connect(tmp_path / "crm.db") as conn:
        conn.execute("create table answers (ticket text, created text, score integer)")
        conn.executemany("insert into answers values (?, ?, ?)", ROWS)
    return "sqlite:///crm.db"


@pytest.fixture
def pg_source() -> Iterator[str]:
    if not _PG_OK:
        pytest.skip("PostgreSQL not available (set CXLOOP_TEST_PG_URL)")
    with fresh_pg_schema(PG_URL) as url:
        admin = create_engine(url)
        with admin.begin() as conn:
            conn.execute(text("create table answers (ticket text, created timestamptz, score integer)"))
            conn.execute(text("insert into answers values ('t1', '2026-10-09 08:00:00+00', 4), "
                              "('t2', '2026-10-10 08:00:00+00', 2)"))
        admin.dispose()
        yield url


def _count(url: str, base: Path) -> int:
    eng = create_engine(url.replace("sqlite:///", f"sqlite:///{base}/") if url.startswith("sqlite") else url)
    try:
        with eng.connect() as conn:
            return int(conn.execute(text("select count(*) from answers")).scalar_one())
    finally:
        eng.dispose()


@pytest.mark.parametrize("source", ["sqlite_source", "pg_source"])
@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_sql_source_query_cannot_write(source: str, query: str, engine: Engine, tmp_path: Path,
                                       request: pytest.FixtureRequest) -> None:
    if source == "pg_source" and engine.dialect.name != "postgresql":
        pytest.skip("one cxloop database is enough for the PostgreSQL source")
    url = request.getfixturevalue(source)
    summary = collect_period(_settings(tmp_path, engine, url, query), engine, P)
    assert _count(url, tmp_path) == 2, "the source database was changed"
    [imp] = summary.imports
    assert imp.loaded == 0
    [error] = summary.errors
    assert error.startswith("source 'crm': sql:") and "query failed" in error and "\n" not in error


@pytest.mark.parametrize("source", ["sqlite_source", "pg_source"])
def test_sql_source_select_still_reads(source: str, engine: Engine, tmp_path: Path,
                                       request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(source)
    query = "SELECT ticket, created, score FROM answers ORDER BY ticket;"
    summary = collect_period(_settings(tmp_path, engine, url, query), engine, P)
    assert summary.ok, summary.errors
    assert summary.imports[0].loaded == 2


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql+psycopg://reader:S3cret@db:5432/crm", "postgresql+psycopg://reader:***@db:5432/crm"),
    ("postgresql+psycopg://reader:p@ss@db/crm?sslmode=require",
     "postgresql+psycopg://reader:***@db/crm?sslmode=require"),
    ("postgresql+psycopg://reader@db/crm?password=S3cret&sslmode=require",
     "postgresql+psycopg://reader@db/crm?password=***&sslmode=require"),
    ("mysql://db/crm?user=r&PWD=S3cret", "mysql://db/crm?user=r&PWD=***"),
    ("sqlite:///crm.db", "sqlite:///crm.db"),
])
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    if "S3cret" in url:
        assert scrub_url_secrets(f"cannot connect to {url}: password S3cret rejected", url) \
            == f"cannot connect to {shown}: password *** rejected"


def test_source_password_is_never_shown(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cxloop.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n\n[[sources]]\nname = "crm"\nkind = "sql"\n'
                   'url = "postgresql+psycopg://reader:Pw1Secret@127.0.0.1:9/crm?password=Pw2Secret"\n'
                   'query = "select 1"\n', encoding="utf-8")
    code, out, err = cxloop(capsys, monkeypatch, cfg, "collect", "--period", P)
    assert code == 1 and "query failed" in err and "crm" in err
    code2, out2, err2 = cxloop(capsys, monkeypatch, cfg, "imports", "--format", "json")
    assert code2 == 0 and "reader:***@127.0.0.1:9/crm?password=***" in out2
    for text_shown in (out, err, out2, err2):
        assert "Pw1Secret" not in text_shown and "Pw2Secret" not in text_shown
