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

    def flow(config: Path, settings: Any, periods: list[str], *args: Any) -> list[dict[str, Any]]:
        return [{"period": p, "status": cycle, "gate": "passed", "resumed": []} for p in periods]

    monkeypatch.setattr(cycle_cmd, "run_cycles", flow)
    code, _, err = cxloop(capsys, monkeypatch, cfg, "run", "--period", P)
    assert code == expected, err
    code, _, err = cxloop(capsys, monkeypatch, cfg, "backfill", "--from", P, "--to", P)
    assert code == expected, err
