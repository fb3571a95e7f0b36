"""`cxloop actions ...` as an admin uses it: the real entry point, exit codes, stdout and stderr."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from cxloop.config import load_settings
from cxloop.db import session_scope
from cxloop.models import Measurement
from cxloop.tasks.actions import open_actions
from tests.cli import cxloop
from tests.test_actions import actions, add_feedback, add_result, events

CONFIG = """
[project]
language = "en"
[database]
url = "{url}"
[departments.logistics]
name = "Logistics"
head = "Wang Li"
language = "zh"
owns = {{ journey_stage = ["delivery"] }}
[departments.service]
name = "Customer Service"
head = "Anna Smith"
owns = {{ channel = ["hotline"] }}
"""




@pytest.fixture
def setup(engine: Engine, db_url: str, tmp_path: Path) -> Path:
    """Two open actions: NPS of delivery (logistics, zh) and CSAT of hotline (service, en)."""
    config = tmp_path / "cxloop.toml"
    config.write_text(CONFIG.format(url=db_url), encoding="utf-8")
    add_result(engine, "2026-10", "nps", "journey_stage", "delivery")
    add_result(engine, "2026-10", "csat", "channel", "hotline", value=60, ci=(55, 65), target=80, n=80)
    add_feedback(engine, "2026-10", "送货太慢 13812345678", journey_stage="delivery", nps=1)
    open_actions(load_settings(config, env={}), engine, "2026-10")
    return config


def test_list_json_keys_and_filters(setup: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = cxloop(capsys, monkeypatch, setup, "actions", "list", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 2
    assert {"id", "kpi", "scope", "scope_value", "department", "status", "opened_period", "due",
            "severity"} <= set(rows[0])
    nps = next(r for r in rows if r["kpi"] == "nps")
    assert (nps["scope"], nps["scope_value"], nps["department"], nps["status"], nps["opened_period"],
            nps["due"], nps["severity"]) == ("journey_stage", "delivery", "logistics", "open", "2026-10",
                                             "2026-11-14", "high")
    code, out, _ = cxloop(capsys, monkeypatch, setup, "actions", "list", "--department", "service",
                          "-f", "csv")
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["kpi"] for r in parsed] == ["csat"]
    code, out, _ = cxloop(capsys, monkeypatch, setup, "actions", "list", "--status", "closed", "-f", "json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = cxloop(capsys, monkeypatch, setup, "actions", "list", "--period", "2026-09", "-f", "json")
    assert json.loads(out) == []
    code, out, _ = cxloop(capsys, monkeypatch, setup, "actions", "list")
    assert code == 0 and "delivery" in out and "hotline" in out
    code, _, err = cxloop(capsys, monkeypatch, setup, "actions", "list", "--status", "bogus")
    assert code == 2 and "unknown status 'bogus'" in err  # bad usage, like a bad --format


@pytest.mark.parametrize(("args", "says"), [
    (("actions", "list", "--status", "bogus"),
     "cxloop actions list: Invalid value for --status: unknown status"),
    (("actions", "list", "--bogus"), "cxloop actions list: No such option: --bogus"),
    (("actions", "list", "--format", "xml"),
     "cxloop actions list: Invalid value for '--format' / '-f': 'xml' is not one of 'table', 'json', 'csv'."),
    (("actionz",), "cxloop: No such command 'actionz'."),
])
def test_bad_usage_is_one_line(setup: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], says: str) -> None:
    """A mistyped option or command gets one line naming it and where the help is (click's own
    form took four: usage, a hint, a blank line, the error), and exit 2."""
    code, out, err = cxloop(capsys, monkeypatch, setup, *args)
    assert (code, out) == (2, "")
    assert err.startswith(f"usage error {says}") and err.count("\n") == 1 and "--help`)" in err


def test_lifecycle_through_the_cli(setup: Path, engine: Engine, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    nps = next(a for a in actions(engine) if a.kpi == "nps")
    aid = str(nps.id)
    steps = [("ack", "acknowledged"), ("start", "in_progress"), ("done", "done")]
    for word, status in steps:
        code, out, err = cxloop(capsys, monkeypatch, setup, "actions", word, aid, "--note", f"{word} it",
                                "--by", "wang")
        assert (code, out.strip(), err) == (0, f"action {aid}: {status}", "")
    history = events(engine, nps.id or 0)
    assert [(e.from_status, e.to_status, e.by, e.note) for e in history[1:]] == [
        ("open", "acknowledged", "wang", "ack it"), ("acknowledged", "in_progress", "wang", "start it"),
        ("in_progress", "done", "wang", "done it")]
    # refused: done -> acknowledged is not a move the lifecycle allows
    code, out, err = cxloop(capsys, monkeypatch, setup, "actions", "ack", aid)
    assert code == 1 and out == ""
    assert f"action {aid} is done: cannot move to acknowledged" in err and "allowed:" in err
    # cancel needs a reason
    code, _, err = cxloop(capsys, monkeypatch, setup, "actions", "cancel", aid)
    assert code == 1 and "needs a reason (--note)" in err
    code, out, _ = cxloop(capsys, monkeypatch, setup, "actions", "cancel", aid, "--note", "duplicate of 12")
    assert code == 0 and "cancelled" in out
    code, _, err = cxloop(capsys, monkeypatch, setup, "actions", "start", aid, "--note", "again")
    assert code == 1 and "cannot move to in_progress (allowed: none (it is final))" in err
    code, _, err = cxloop(capsys, monkeypatch, setup, "actions", "ack", "999")
    assert code == 1 and "no action with id 999" in err
    assert [a.status for a in actions(engine) if a.kpi == "nps"] == ["cancelled"]


def test_assign_through_the_cli(setup: Path, engine: Engine, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    csat = next(a for a in actions(engine) if a.kpi == "csat")
    aid = str(csat.id)
    code, _, err = cxloop(capsys, monkeypatch, setup, "actions", "assign", aid, "--department", "finance")
    assert code == 1 and "unknown department 'finance'" in err
    code, out, _ = cxloop(capsys, monkeypatch, setup, "actions", "assign", aid, "--department", "logistics",
                          "--note", "courier calls", "--by", "ops")
    assert code == 0 and out.strip() == f"action {aid}: assigned to logistics"
    [moved] = [a for a in actions(engine) if a.id == csat.id]
    assert (moved.department, moved.head, moved.status) == ("logistics", "Wang Li", "open")
    assert events(engine, csat.id or 0)[-1].note == "assigned from service to logistics: courier calls"


def test_show_details_evidence_history_measurements(setup: Path, engine: Engine,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    nps = next(a for a in actions(engine) if a.kpi == "nps")
    with session_scope(engine) as s:
        s.add(Measurement(action_id=nps.id or 0, period="2026-11", value=31.5, n=410, change=11.5,
                          verdict="improved", method="did"))
    code, out, _ = cxloop(capsys, monkeypatch, setup, "actions", "show", str(nps.id), "-f", "json")
    data = json.loads(out)
    assert code == 0
    assert data["action"]["id"] == nps.id and data["action"]["department"] == "logistics"
    assert data["action"]["evidence"][0]["worst_comments"][0]["text"] == "送货太慢 [phone]"
    assert [e["note"][:6] for e in data["events"]] == ["opened"]
    assert [(m["period"], m["verdict"]) for m in data["measurements"]] == [("2026-11", "improved")]
    code, out, _ = cxloop(capsys, monkeypatch, setup, "actions", "show", str(nps.id))
    assert code == 0
    for text in ("evidence", "history", "measurements", "improved", "送货太慢 [phone]", "建议措施"):
        assert text in out
    assert "13812345678" not in out
    code, _, err = cxloop(capsys, monkeypatch, setup, "actions", "show", "4242")
    assert code == 1 and "no action with id 4242" in err
