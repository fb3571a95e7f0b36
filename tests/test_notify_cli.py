"""`cxloop notify` / `cxloop outbox`: real sends to a loopback webhook, secrets never printed."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from sqlalchemy import Engine
from typer.testing import CliRunner

from cxloop.commands.notify import register
from cxloop.db import session_scope
from cxloop.models import Cycle, QualityCheck
from tests.receivers import HttpReceiver, free_port
from tests.test_notify import P, seed

SECRET = "hunter2SECRETpw"


def app() -> typer.Typer:
    root = typer.Typer()
    register(root)
    return root


def write_config(tmp_path: Path, db_url: str, port: int) -> Path:
    cfg = tmp_path / "cxloop.toml"
    cfg.write_text(f"""
[project]
language = "zh"
[database]
url = "{db_url}"
[notify]
retries = 0
retry_delay_seconds = 0
[quality]
data_owners = ["json://ops:{SECRET}@127.0.0.1:{port}/owners"]
[departments.logistics]
name = "物流部"
notify = ["json://bot:{SECRET}@127.0.0.1:{port}/lg"]
[departments.service]
name = "Customer Service"
language = "en"
notify = ["json://bot:{SECRET}@127.0.0.1:{port}/svc"]
""", encoding="utf-8")
    return cfg


def run(args: list[str], code: int = 0) -> str:
    """The output of `cxloop ARGS` exiting with `code`; of a failing one only stdout (its stderr
    holds the error line)."""
    result = CliRunner().invoke(app(), args)
    assert result.exit_code == code, result.output
    return result.stdout if code else result.output


def test_notify_retry_outbox_and_dry_run(engine: Engine, db_url: str, tmp_path: Path) -> None:
    seed(engine)
    port = free_port()
    cfg = str(write_config(tmp_path, db_url, port))
    hook = HttpReceiver(port=port)

    dry = tmp_path / "dry"
    out = run(["notify", "-c", cfg, "--period", P, "--dry-run", str(dry)])
    assert sorted(p.name for p in dry.iterdir()) == [f"{P}-logistics-digest.md", f"{P}-service-digest.md"]
    assert "本期新增事项" in out and SECRET not in out
    assert json.loads(run(["outbox", "-c", cfg, "--format", "json"])) == []  # a dry run stores nothing

    out = run(["notify", "-c", cfg, "--period", P, "--format", "json"], code=4)  # receiver down
    rows = json.loads(out)
    assert {r["status"] for r in rows} == {"failed"} and SECRET not in out
    assert all("bot:****@127.0.0.1" in r["route"] for r in rows)
    run(["notify", "-c", cfg, "--dry-run", str(tmp_path / "again")])  # the outbox as it stands
    assert len(list((tmp_path / "again").iterdir())) == 2
    assert {r["status"] for r in json.loads(run(["outbox", "-c", cfg, "--format", "json"]))} == {"failed"}

    with hook:
        out = run(["notify", "-c", cfg, "--retry"])
        assert SECRET not in out and "sent" in out
        out = run(["notify", "-c", cfg, "--period", P])  # the cycle re-run: nothing new goes out
        assert SECRET not in out
    assert sorted(r.path for r in hook.requests) == ["/lg", "/svc"]

    listing = json.loads(run(["outbox", "-c", cfg, "--period", P, "--format", "json"]))
    assert [(r["recipient"], r["status"]) for r in listing] == [("logistics", "sent"), ("service", "sent")]
    assert run(["outbox", "-c", cfg, "--status", "failed", "--format", "csv"]).count("\n") == 1
    assert SECRET not in run(["outbox", "-c", cfg])
    # a dry run of a period whose notices went out shows nothing, and says why
    out = run(["notify", "-c", cfg, "--period", P, "--dry-run", str(tmp_path / "late")])
    assert f"2 notice(s) of {P} were sent already" in out and SECRET not in out


def test_held_cycle_queues_only_the_data_owner_alert(engine: Engine, db_url: str, tmp_path: Path) -> None:
    seed(engine)
    with session_scope(engine) as s:
        s.add(Cycle(period=P, status="held", gate="held"))
        s.add(QualityCheck(period=P, suite="feedback", expectation="expect_column_values_to_be_between",
                           column="nps", success=False, unexpected_count=7))
    with HttpReceiver() as hook:
        cfg = str(write_config(tmp_path, db_url, hook.port))
        out = run(["notify", "-c", cfg, "--period", P, "--format", "json"])
        assert [(r["recipient"], r["kind"], r["status"]) for r in json.loads(out)] == [
            ("data_owners", "data_quality", "sent")]
        assert [r.path for r in hook.requests] == ["/owners"]


def test_notify_needs_a_period_or_retry(tmp_path: Path) -> None:
    cfg = tmp_path / "cxloop.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "x.db"}"\n', encoding="utf-8")
    result = CliRunner().invoke(app(), ["notify", "-c", str(cfg)])
    assert result.exit_code != 0
    assert "--period" in str(result.exception)
