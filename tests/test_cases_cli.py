"""Issue 19, items 4-5: `cxloop followup run`, `cxloop cases list|show|contact|resolve|unreachable|
decline|note` and `cxloop customers export|forget` through the real entry point (exit codes, one-line
errors, masked output), and the retention purge (contact details go, aggregates stay), on SQLite
and PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from cxloop.models import ColumnarCopy, CustomerContact, Feedback, FollowupCase
from cxloop.tasks.cases.daily import run_day
from cxloop.tasks.collect import collect_period
from cxloop.tasks.kpis import compute_kpis
from tests.cli import cxloop
from tests.test_cases import ROWS, project, write_csv

PHONES = ("13812345678", "13912345678", "13612345678")


def config_file(tmp_path: Path, db_url: str, rules: bool = True) -> Path:
    """The config of `tests.test_cases.project`, as a user writes it."""
    rule_text = ('[[cases.rules]]\nname = "detractor"\nnps_max = 6\n\n[[cases.rules]]\nname = "complaint"\n'
                 'complaint = true\nqueue = "complaints"\n\n') if rules else ""
    cfg = tmp_path / "cxloop.toml"
    cfg.write_text(f'''[database]
url = "{db_url}"

[[sources]]
name = "survey"
kind = "csv"
path = "data/*.csv"
channel = "web"
[sources.columns]
response_id = "id"
submitted_at = "time"
department = "dept"
journey_stage = "stage"
customer_id = "cust"
nps = "nps"
csat = "csat"
is_complaint = "complaint"
contact_ok = "ok"
contact_name = "name"
contact_phone = "phone"
contact_email = "email"
comment = "comment"

[departments.logistics]
name = "物流部"
notify = []
owns = {{ journey_stage = ["delivery"] }}

[departments.service]
name = "Service"
language = "en"
notify = []

[cases]
merge_window_days = 7

{rule_text}''', encoding="utf-8")
    return cfg


@pytest.fixture
def cli_project(tmp_path: Path, engine: Engine, db_url: str) -> Path:
    write_csv(tmp_path / "data" / "oct.csv", ROWS)
    return config_file(tmp_path, db_url)


def test_followup_run_and_case_commands(cli_project: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def run(*args: str) -> tuple[int, str, str]:
        return cxloop(capsys, monkeypatch, cli_project, *args)

    assert run("collect", "--period", "2026-10")[0] == 0
    code, out, err = run("followup", "run", "--no-collect", "--format", "json")
    assert code == 0, err
    [summary] = json.loads(out)
    assert (summary["opened"], summary["merged"]) == (2, 1)
    code, out, _ = run("followup", "run", "--no-collect", "--format", "json")
    assert code == 0 and json.loads(out)[0]["opened"] == 0  # a re-run opens nothing twice

    code, out, _ = run("cases", "list", "--format", "json")
    listed = json.loads(out)
    assert code == 0 and [(c["id"], c["department"], c["status"]) for c in listed] == [
        (1, "logistics", "new"), (2, "service", "new")]
    assert not any(p in out for p in PHONES) and "zs@example.com" not in out
    code, out, _ = run("cases", "list", "--status", "open", "--format", "json")
    listed = json.loads(out)
    assert code == 0 and [c["id"] for c in listed] == [1, 2]
    # times in the project's zone, with the offset shown
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d\+08:00", c["contact_due"]) for c in listed), listed
    code, _, err = run("cases", "list", "--status", "opn")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("usage error cxloop cases list: Invalid value for --status: unknown status 'opn'")
    assert "known: open, new" in err

    # Contact details: the owner and admins see them, anyone else sees them hidden.
    for viewer, visible in (("logistics", True), ("admin", True), ("service", False), ("", False)):
        code, out, _ = run("cases", "show", "1", "--as", viewer)
        shown = json.loads(out)
        assert code == 0 and (shown["contact"]["phone"] == "13812345678") is visible, viewer
        assert ("13812345678" in out) is visible and ("zs@example.com" in out) is visible
        if not visible:
            assert shown["contact"] == {"name": "[hidden]", "phone": "[hidden]", "email": "[hidden]"}
        assert [r["response_id"] for r in shown["responses"]] == ["r1", "r5"]

    # Refused transitions and unknown cases: exit 1, one line on stderr, no traceback.
    for args, message in ((("cases", "resolve", "1", "--note", "x"),
                           "case 1 is new: cannot move to resolved"),
                          (("cases", "show", "99"), "no case 99"),
                          (("cases", "contact", "99"), "no case 99"),
                          (("cases", "note", "2"), "a note cannot be empty"),
                          (("cases", "decline", "2"), "needs a note (--note)")):
        code, out, err = run(*args)
        assert code == 1 and message in err, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, _, err = run("cases", "show", "one")
    assert code == 2 and "Traceback" not in err  # bad usage

    assert run("cases", "contact", "1", "--note", "called, parcel found", "--by", "ann") == (
        0, "case 1: contacted\n", "")
    assert run("cases", "note", "1", "--note", "call back 13812345678 tomorrow", "--by", "ann")[0] == 0
    assert run("cases", "resolve", "1", "--note", "redelivered", "--root-cause", "delivery")[0] == 0
    assert run("cases", "unreachable", "2", "--note", "three calls, no answer")[0] == 0
    assert json.loads(run("cases", "list", "--status", "open", "--format", "json")[1]) == []
    code, out, _ = run("cases", "list", "--status", "resolved", "--format", "json")
    assert [(c["id"], c["root_cause"]) for c in json.loads(out)] == [(1, "delivery")]
    code, out, _ = run("cases", "show", "1", "--as", "service")
    history = json.loads(out)["events"]
    assert [e["to"] for e in history] == ["new", "contacted", None, "resolved"]
    assert "13812345678" not in out  # a phone number typed into a note is masked too
    code, _, err = run("cases", "contact", "1", "--note", "again")
    assert code == 1 and "closed" in err


def test_customers_export_and_forget(cli_project: Path, engine: Engine, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def run(*args: str) -> tuple[int, str, str]:
        return cxloop(capsys, monkeypatch, cli_project, *args)

    run("collect", "--period", "2026-10")
    run("followup", "run", "--no-collect")
    code, out, _ = run("customers", "export", "--id", "c1")
    data = json.loads(out)
    assert code == 0 and [r["response_id"] for r in data["responses"]] == ["r1", "r5"]
    assert {c["phone"] for c in data["contacts"]} == {"13812345678"} and len(data["cases"]) == 1
    assert run("rebuild", "--period", "2026-10")[0] == 0  # a columnar copy holding the comments
    copy = cli_project.parent / "columnar"
    assert [p.name for p in copy.iterdir() if p.suffix == ".duckdb"]
    code, out, _ = run("customers", "forget", "--id", "c1")
    assert code == 0 and "contacts: 2" in out and "responses: 2" in out and "cases: 1" in out
    # the copy is gone (and its stamp with it): the next cycle writes it from the database
    assert not [p for p in copy.iterdir() if p.suffix == ".duckdb"]
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(ColumnarCopy)) == 0
    code, out, _ = run("customers", "export", "--id", "c1")
    assert json.loads(out) == {"customer_id": "c1", "responses": [], "contacts": [], "cases": [],
                               "case_events": [], "notices": [], "outcomes": []}
    with Session(engine) as s:  # the aggregates stay: every response and case is still counted
        assert s.scalar(select(func.count()).select_from(Feedback)) == 5
        assert s.scalar(select(func.count()).select_from(FollowupCase)) == 2
    code, _, err = run("customers", "forget")
    assert code == 2 and "--id" in err and "Traceback" not in err


def test_followup_run_without_rules_and_with_a_bad_rule(tmp_path: Path, engine: Engine, db_url: str,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config_file(tmp_path, db_url, rules=False)
    code, _, err = cxloop(capsys, monkeypatch, cfg, "followup", "run", "--no-collect")
    assert code == 1 and "no [[cases.rules]]" in err and len(err.strip().splitlines()) == 1
    cfg.write_text(cfg.read_text(encoding="utf-8") + '[[cases.rules]]\nname = "x"\nnps_max = 12\n',
                   encoding="utf-8")
    code, _, err = cxloop(capsys, monkeypatch, cfg, "followup", "run", "--no-collect")
    assert code == 2 and "cases.rules[0].nps_max" in err and "Traceback" not in err


def test_retention_purges_contact_details_and_keeps_the_aggregates(tmp_path: Path, engine: Engine) -> None:
    settings = project(tmp_path, engine, retention_days=30)
    later = "r6,2026-10-20 10:00,service,,c6,1,,no,yes,Bo,13512345678,,still waiting"
    write_csv(tmp_path / "data" / "oct.csv", [*ROWS, later])
    collect_period(settings, engine, "2026-10")
    run_day(settings, engine, datetime(2026, 10, 21, 1, 0, tzinfo=UTC), collect=False, send=False)
    before = {r.key: (r.n, r.value) for r in compute_kpis(settings, engine, "2026-10")}
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(CustomerContact)) == 5
    # 30 days after 8 October: the four contacts given that day go, the one of 20 October stays.
    out = run_day(settings, engine, datetime(2026, 11, 8, 1, 0, tzinfo=UTC), collect=False, send=False)
    assert out["contacts_purged"] == 4
    again = run_day(settings, engine, datetime(2026, 11, 8, 2, 0, tzinfo=UTC), collect=False, send=False)
    assert again["contacts_purged"] == 0
    with Session(engine) as s:
        cc = CustomerContact.__table__  # type: ignore[attr-defined]
        left = s.execute(select(cc.c.response_id, cc.c.phone)).all()
        assert [tuple(r) for r in left] == [("r6", "13512345678")]
        assert s.scalar(select(func.count()).select_from(Feedback)) == 6
        assert s.scalar(select(func.count()).select_from(FollowupCase)) == 3
    after = {r.key: (r.n, r.value) for r in compute_kpis(settings, engine, "2026-10")}
    assert after == before and after[("followup_rate", "overall", "all")][0] == 3
