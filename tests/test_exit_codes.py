"""Exit code 4: the cycle ran but a notice could not be delivered (issue 21, item 4), so cron and
monitoring see it; 3 (held) stays the bigger news."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

import cxloop.commands.cycle as cycle_cmd
from cxloop.db import session_scope
from cxloop.models import OutboxMessage
from cxloop.output import EXIT_HELD, EXIT_NOTICES_FAILED
from tests.cli import cxloop
from tests.receivers import HttpReceiver, free_port
from tests.test_notify import P, seed
from tests.test_notify_cli import write_config


def _outbox(engine: Engine, status: str) -> None:
    with session_scope(engine) as s:
        s.add(OutboxMessage(period=P, recipient="logistics", kind="digest", language="zh", subject="s",
                            body_html="h", body_text="t", route="json://127.0.0.1:9/x", status=status))


def test_notify_and_retry_exit_4_while_notices_fail(engine: Engine, db_url: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    seed(engine)
    port = free_port()
    cfg = write_config(tmp_path, db_url, port)
    code, _, err = cxloop(capsys, monkeypatch, cfg, "notify", "--period", P)  # receiver down
    assert code == EXIT_NOTICES_FAILED and "could not be delivered" in err
    code, _, err = cxloop(capsys, monkeypatch, cfg, "notify", "--retry")
    assert code == EXIT_NOTICES_FAILED and "notify --retry" in err
    with HttpReceiver(port=port):
        code, _, err = cxloop(capsys, monkeypatch, cfg, "notify", "--retry")
    assert code == 0, err


@pytest.mark.parametrize(("status", "cycle", "expected"), [
    ("failed", "completed", EXIT_NOTICES_FAILED),
    ("sent", "completed", 0),
    ("no_route", "completed", 0),  # a route the config lacks: `cxloop outbox` shows it, not an outage
    ("failed", "held", EXIT_HELD),
])
def test_cxloop_run_exit_code(status: str, cycle: str, expected: int, engine: Engine, db_url: str,
                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """`cxloop run` end to end except the Prefect flow itself (stubbed: its outcome and the outbox
    it leaves are what decide the code)."""
    _outbox(engine, status)
    cfg = write_config(tmp_path, db_url, free_port())

    def flow(config: Path, settings: Any, periods: list[str], *args: Any, **kw: Any) -> list[dict[str, Any]]:
        return [{"period": p, "status": cycle, "gate": "passed", "resumed": []} for p in periods]

    monkeypatch.setattr(cycle_cmd, "run_cycles", flow)
    code, _, err = cxloop(capsys, monkeypatch, cfg, "run", "--period", P)
    assert code == expected, err
    # a held cycle says so on stderr, on one line (no terminal here: lines keep their length)
    assert (f"cycle {P} is HELD by the data-quality gate" in err) == (cycle == "held"), err
    assert cycle != "held" or any(line.endswith("--reason '…'.") for line in err.splitlines()), err
    code, _, err = cxloop(capsys, monkeypatch, cfg, "backfill", "--from", P, "--to", P)
    assert code == expected, err


def test_cxloop_run_names_the_files_collect_could_not_read(engine: Engine, db_url: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A source that could not be read does not stop the cycle, but `run` and `backfill` name it on
    stderr and exit 1, as `cxloop collect` does; a failure from an earlier collect is not repeated."""
    from datetime import timedelta

    from cxloop.models import CycleStage, ImportRecord, utcnow

    cfg = write_config(tmp_path, db_url, free_port())
    started = utcnow()
    with session_scope(engine) as s:
        s.add(ImportRecord(source="tickets", file="data/old.csv", content_hash="", period=P,
                           started_at=started - timedelta(days=1), error="data/old.csv: gone long ago"))
        s.add(CycleStage(period=P, stage="collect", status="completed", started_at=started,
                         finished_at=started, counts={"files": 1, "errors": 1}))
        s.add(ImportRecord(source="tickets", file="data/t_*.csv", content_hash="", period=P,
                           started_at=started + timedelta(seconds=1),
                           error="data/t_*.csv: no file matches (looked for t_*.csv)"))

    def flow(config: Path, settings: Any, periods: list[str], *args: Any, **kw: Any) -> list[dict[str, Any]]:
        return [{"period": p, "status": "completed", "gate": "passed", "resumed": []} for p in periods]

    monkeypatch.setattr(cycle_cmd, "run_cycles", flow)
    code, _, err = cxloop(capsys, monkeypatch, cfg, "run", "--period", P)
    assert code == 1 and "source 'tickets': data/t_*.csv: no file matches" in err, err
    assert "gone long ago" not in err and "Traceback" not in err
    code, _, err = cxloop(capsys, monkeypatch, cfg, "backfill", "--from", P, "--to", P)
    assert code == 1 and f"{P}: source 'tickets': data/t_*.csv" in err, err


def test_cxloop_run_names_an_outcomes_file_collect_could_not_read(
        engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An `[outcomes]` file that cannot be read: `run` names it and exits 1, as `cxloop collect`
    does (no import record keeps it: the collect stage's record does). The stage record is what a
    real collect leaves (the flow itself is stubbed)."""
    from cxloop.config import load_settings
    from cxloop.flows.bookkeeping import begin_stage, end_stage
    from cxloop.tasks.collect import collect_period

    cfg = write_config(tmp_path, db_url, free_port())
    cfg.write_text(cfg.read_text(encoding="utf-8") + """
[outcomes]
kind = "csv"
path = "data/orders.csv"
columns = { customer_id = "会员号", date = "日期", orders = "订单数" }
""", encoding="utf-8")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders.csv").write_bytes(b"\xff\xfe\x00garbage")
    summary = collect_period(load_settings(cfg), engine, P)
    assert summary.outcomes is not None and summary.outcomes.errors
    begin_stage(engine, P, "collect", "")
    end_stage(engine, P, "collect", status="completed", counts=summary.counts())

    def flow(config: Path, settings: Any, periods: list[str], *args: Any, **kw: Any) -> list[dict[str, Any]]:
        return [{"period": p, "status": "completed", "gate": "passed", "resumed": []} for p in periods]

    monkeypatch.setattr(cycle_cmd, "run_cycles", flow)
    code, _, err = cxloop(capsys, monkeypatch, cfg, "run", "--period", P)
    assert code == 1 and "outcomes: data/orders.csv" in err and "went on without it" in err, err


def test_backfill_notifies_only_the_newest_month(engine: Engine, db_url: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A year of history must not reach department heads as twelve stale digests: backfill tells
    only its newest month to notify, and none when a later month's cycle completed (its digest is
    the current one; a failed one sent none); `--notify-all` notifies each."""
    from cxloop.models import Cycle

    cfg = write_config(tmp_path, db_url, free_port())
    told: list[Any] = []

    def flow(config: Path, settings: Any, periods: list[str], by: str, *args: Any,
             notify_only: Any = "unset") -> list[dict[str, Any]]:
        told.append(notify_only)
        return [{"period": p, "status": "completed", "gate": "passed", "resumed": []} for p in periods]

    monkeypatch.setattr(cycle_cmd, "run_cycles", flow)
    code, _, err = cxloop(capsys, monkeypatch, cfg, "backfill", "--from", "2026-07", "--to", "2026-09")
    assert code == 0 and told[-1] == ["2026-09"]
    assert "no notices for 2026-07..2026-08 (months of history" in err, err
    code, _, err = cxloop(capsys, monkeypatch, cfg, "backfill", "--from", "2026-07", "--to", "2026-09",
                          "--notify-all")
    assert code == 0 and told[-1] is None and "no notices" not in err
    with session_scope(engine) as s:
        s.add(Cycle(period="2026-11", status="failed", started_by="schedule"))  # notified nobody
    cxloop(capsys, monkeypatch, cfg, "backfill", "--from", "2026-08", "--to", "2026-09")
    assert told[-1] == ["2026-09"]
    with session_scope(engine) as s:
        s.add(Cycle(period="2026-10", status="completed", started_by="schedule"))
    code, _, err = cxloop(capsys, monkeypatch, cfg, "backfill", "--from", "2026-08", "--to", "2026-09")
    assert code == 0 and told[-1] == [] and "no notices for 2026-08..2026-09" in err, err
