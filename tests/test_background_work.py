"""Work the cycle moves off its critical path: SQLite checkpoints and loading the stages' libraries."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from cxloop.config import settings_from_dict
from cxloop.db import background_checkpoints, checkpoint_soon
from cxloop.flows.warmup import warm_up
from cxloop.tasks.rendering import environment
from cxloop.tasks.segmentation import jieba_module


def _autocheckpoint(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("PRAGMA wal_autocheckpoint")).scalar_one())


def test_sqlite_checkpoints_run_apart_and_all_is_in_the_file_after(engine: Engine) -> None:
    with background_checkpoints(engine):
        if engine.dialect.name == "sqlite":
            assert _autocheckpoint(engine) == 0  # commits leave the copying to checkpoint_soon
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE scratch (n INTEGER)"))
            conn.execute(text("INSERT INTO scratch VALUES (:n)"), [{"n": i} for i in range(5000)])
        checkpoint_soon(engine)
        checkpoint_soon(engine)  # a second kick while one runs is harmless
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM scratch")).scalar_one() == 5000
    if engine.dialect.name == "sqlite":
        assert _autocheckpoint(engine) == 1000  # connections made after the block: SQLite's default
        path = engine.url.database
        assert path
        busy, logged, copied = sqlite3.connect(path).execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and logged == copied  # nothing was left in the log


def test_warm_up_loads_the_libraries_and_ignores_what_it_cannot_load(tmp_path: Path) -> None:
    settings = settings_from_dict({"comments": {"model": "trained", "model_path": "missing.joblib"}},
                                  tmp_path, env={})
    thread = warm_up(settings)  # the missing model is the comments stage's error to report
    thread.join(120)
    assert not thread.is_alive()
    assert "great_expectations" in sys.modules and "statsmodels.stats.proportion" in sys.modules
    assert jieba_module().dt.initialized  # loaded after the step that failed
    assert "apprise" in sys.modules and "cxloop.tasks.report" in sys.modules
    compiled = {name for _, name in environment("zh").cache or ()}
    assert {"report.html", "notice.md", "playbooks/nps.zh.md.j2"} <= compiled


def test_warm_up_reads_the_migration_scripts_the_first_open_checks() -> None:
    from cxloop.flows import warmup

    warmup._migrations()  # the warm-up thread would swallow its error


def test_a_cycle_run_from_the_command_line_leaves_no_sqlite_file_behind(tmp_path: Path, prefect_harness: None
                                                                       ) -> None:
    from prefect.settings import PREFECT_API_URL

    # The session's Prefect server, as a lasting server is used in production: no temporary one to
    # start (tests/test_cycle_crash.py runs `cxloop run` with its own).
    env = {**os.environ, "PREFECT_LOGGING_LEVEL": "ERROR", "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    env.pop("CXLOOP_DATABASE__URL", None)
    for args in (["init", str(tmp_path)], ["run", "--period", "2026-10"]):
        subprocess.run([sys.executable, "-m", "cxloop", *args], cwd=tmp_path,
                       env=env, check=True, timeout=300, capture_output=True)
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("cxloop.db"))
    assert names == ["cxloop.db"]  # no cxloop.db-wal, cxloop.db-shm, nor the period lock file


def test_warm_up_starts_the_parse_worker_server_only_for_a_big_csv_export(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cxloop.tasks import workers
    from cxloop.tasks.collect import chunked

    started: list[bool] = []
    monkeypatch.setattr(workers, "start_server", lambda: started.append(True))
    (tmp_path / "small.csv").write_text("response_id,submitted_at,channel,nps\nR1,2026-10-01,app,9\n")
    settings = settings_from_dict({"sources": [
        {"name": "missing", "kind": "csv", "path": "nowhere.csv"},  # collect's error, not warm-up's
        {"name": "s", "kind": "csv", "path": "small.csv"}]}, tmp_path, env={})
    warm_up(settings).join(120)
    assert started == []
    monkeypatch.setattr(chunked, "BIG_FILE_BYTES", 10)
    warm_up(settings).join(120)
    assert started == [True]
