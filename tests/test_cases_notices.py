"""Issue 19 items 3, 5, 7: case notices reach a real SMTP receiver on loopback; a breach escalates
exactly once across re-runs and a run killed mid-send; contact details only in the owner's notice;
forget removes every trace while the counts stay."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlmodel import Session, select

from cxloop.config import OutcomesConfig, settings_from_dict
from cxloop.models import FollowupCase, OutboxMessage
from cxloop.tasks.cases.customers import export_customer, forget_customer
from cxloop.tasks.cases.daily import run_day
from tests.receivers import SmtpReceiver
from tests.test_cases import ROWS, project, write_csv

ROOT = Path(__file__).resolve().parent.parent
DAY1 = datetime(2026, 10, 8, 10, 0, tzinfo=UTC)  # Thu 18:00 Shanghai
BREACHED = datetime(2026, 10, 13, 2, 0, tzinfo=UTC)  # Tue 10:00 Shanghai: first contact overdue


def with_routes(tmp_path: Path, engine: Engine, logistics: str, service: str, escalation: str) -> Any:
    base = project(tmp_path, engine)
    data = base.model_dump(mode="json", exclude={"base_dir"})
    data["departments"]["logistics"]["notify"] = [logistics]
    data["departments"]["service"]["notify"] = [service]
    data["actions"]["escalation_notify"] = [escalation]
    data["notify"].update({"retries": 0, "retry_delay_seconds": 0})
    return settings_from_dict(data, base_dir=tmp_path, env={})


def outbox(engine: Engine) -> list[OutboxMessage]:
    with Session(engine) as s:
        return list(s.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all())  # type: ignore[arg-type]


def test_notices_reminders_and_one_escalation_through_smtp(tmp_path: Path, engine: Engine) -> None:
    write_csv(tmp_path / "data" / "oct.csv", ROWS)
    with SmtpReceiver() as smtp:
        settings = with_routes(tmp_path, engine, smtp.url("log@example.com"), smtp.url("svc@example.com"),
                               smtp.url("boss@example.com"))
        from cxloop.tasks.collect import collect_period
        collect_period(settings, engine, "2026-10")
        first = run_day(settings, engine, DAY1, collect=False)
        assert first["opened"] == 2 and first["notices"] == 2
        assert len(smtp.messages) == 2
        log_mail = next(m for m in smtp.messages if "log@example.com" in m.recipients)
        svc_mail = next(m for m in smtp.messages if "svc@example.com" in m.recipients)
        # The owner gets its own customer's contact details; not the other department's.
        assert "13812345678" in log_mail.html and "13912345678" not in log_mail.html
        assert "13912345678" in svc_mail.html and "13812345678" not in svc_mail.html
        # Re-running the day, then the breach on later days, several times.
        for now in (DAY1, BREACHED, BREACHED + timedelta(hours=1), BREACHED + timedelta(days=1)):
            run_day(settings, engine, now, collect=False)
        escalations = [m for m in smtp.messages if "boss@example.com" in m.recipients]
        assert len(escalations) == 2  # one per breached case, exactly once
        for mail in escalations:  # escalation notices carry no contact details
            assert not {"13812345678", "13912345678", "zs@example.com"} & set(mail.html.split())
            assert "1381234" not in mail.html and "1391234" not in mail.html
        kinds = [m.kind for m in outbox(engine)]
        assert sum(k.startswith("case_escalation_contact") for k in kinds) == 2
        assert sum(k.startswith("case_reminder_contact") for k in kinds) == 0  # breached before reminded


def test_case_escalations_go_to_their_own_route_when_one_is_set(tmp_path: Path, engine: Engine) -> None:
    """`[cases] escalation_notify` (a customer-service lead) takes the cases' escalations; the
    actions' escalation route hears of them only when the cases have none."""
    write_csv(tmp_path / "data" / "oct.csv", ROWS)
    with SmtpReceiver() as smtp:
        base = with_routes(tmp_path, engine, smtp.url("log@example.com"), smtp.url("svc@example.com"),
                           smtp.url("boss@example.com"))
        data = base.model_dump(mode="json", exclude={"base_dir"})
        data["cases"]["escalation_notify"] = [smtp.url("care-lead@example.com")]
        settings = settings_from_dict(data, base_dir=tmp_path, env={})
        from cxloop.tasks.collect import collect_period
        collect_period(settings, engine, "2026-10")
        for now in (DAY1, BREACHED):
            run_day(settings, engine, now, collect=False)
        lead = [m for m in smtp.messages if "care-lead@example.com" in m.recipients]
        assert len(lead) == 2 and not [m for m in smtp.messages if "boss@example.com" in m.recipients]
    escalated = {m.recipient for m in outbox(engine) if m.kind.startswith("case_escalation")}
    assert escalated == {"case_escalation"}


def test_escalation_exactly_once_after_a_kill_mid_send(tmp_path: Path, engine: Engine, db_url: str) -> None:
    write_csv(tmp_path / "data" / "oct.csv", ROWS[:1])
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)  # accepts connections, never answers: the run hangs while sending
    port = hung.getsockname()[1]
    with SmtpReceiver() as smtp:
        settings = with_routes(tmp_path, engine, smtp.url("log@example.com"), smtp.url("svc@example.com"),
                               smtp.url("boss@example.com"))
        from cxloop.tasks.collect import collect_period
        collect_period(settings, engine, "2026-10")
        run_day(settings, engine, DAY1, collect=False)
        assert len(smtp.messages) == 1
        cfg = tmp_path / "hung.json"
        data = settings.model_dump(mode="json", exclude={"base_dir"})
        data["actions"]["escalation_notify"] = [f"mailto://cx:pw@127.0.0.1:{port}?to=boss@example.com"
                                                "&from=cx@example.com&mode=insecure"]
        cfg.write_text(json.dumps(data), encoding="utf-8")
        code = ("import json, sys\nfrom datetime import datetime\n"
                "from cxloop.config import settings_from_dict\n"
                "from cxloop.db import open_db\nfrom cxloop.tasks.cases.daily import run_day\n"
                "s = settings_from_dict(json.load(open(sys.argv[1])), base_dir='.', env={})\n"
                "run_day(s, open_db(sys.argv[2]), datetime.fromisoformat(sys.argv[3]), collect=False)\n")
        child = subprocess.Popen([sys.executable, "-c", code, str(cfg), db_url, BREACHED.isoformat()],
                                 cwd=ROOT)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if any(m.status == "sending" for m in outbox(engine)):
                    break
                time.sleep(0.2)
            else:
                raise AssertionError("the child never started sending")
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            hung.close()
        for _ in range(3):  # re-runs after the kill, with the real receiver
            run_day(settings, engine, BREACHED + timedelta(minutes=11), collect=False)
        escalations = [m for m in smtp.messages if "boss@example.com" in m.recipients]
        assert len(escalations) == 1
        assert sum(m.kind.startswith("case_escalation") for m in outbox(engine)) == 1


def test_forget_removes_every_trace_and_keeps_the_counts(tmp_path: Path, engine: Engine) -> None:
    write_csv(tmp_path / "data" / "oct.csv", ROWS)
    (tmp_path / "crm").mkdir()
    (tmp_path / "crm" / "orders.csv").write_text(  # the [outcomes] export: c1's orders, and c2's
        "cust,day,spend\nc1,2026-10-09,120\nc1,2026-11-02,80\nc2,2026-10-09,50\n", encoding="utf-8")
    settings = project(tmp_path, engine).model_copy(update={"outcomes": OutcomesConfig(
        kind="csv", path="crm/orders.csv", columns={"customer_id": "cust", "date": "day", "spend": "spend"})})
    from cxloop.tasks.collect import collect_period
    collect_period(settings, engine, "2026-10")
    run_day(settings, engine, DAY1, collect=False, send=False)
    exported = export_customer(engine, "c1")
    assert len(exported["responses"]) == 2 and len(exported["cases"]) == 1 and exported["contacts"]
    assert exported["notices"]
    assert sorted(o["spend"] for o in exported["outcomes"]) == [80.0, 120.0]
    with engine.connect() as conn:
        nps_before = conn.execute(text("SELECT count(*), sum(nps) FROM feedback")).one()
    counts = forget_customer(engine, "c1")
    assert counts["responses"] == 2 and counts["cases"] == 1 and counts["contacts"] == 2
    assert counts["outcomes"] == 2
    dump = ""
    with engine.connect() as conn:
        assert conn.execute(text("SELECT customer_id, spend FROM outcome")).all() == [("c2", 50.0)]
        for table in ("feedback", "customer_contact", "followup_case", "case_event", "outbox_message",
                      "quarantined_row", "outcome"):
            dump += " ".join(str(r) for r in conn.execute(text(f"SELECT * FROM {table}")).all())
        assert conn.execute(text("SELECT count(*), sum(nps) FROM feedback")).one() == nps_before
    for trace in ("'c1'", "13812345678", "zs@example.com", "快递三天没到", "还是没到", "张三"):
        assert trace not in dump, trace
    with Session(engine) as s:
        assert len(s.exec(select(FollowupCase)).all()) == 2  # the case is counted still, anonymously


def test_notices_link_each_case_to_its_page_when_the_workspace_has_an_address(tmp_path: Path,
                                                                               engine: Engine) -> None:
    from cxloop.tasks.collect import collect_period

    write_csv(tmp_path / "data" / "oct.csv", ROWS)
    data = project(tmp_path, engine).model_dump(mode="json", exclude={"base_dir"})
    data["web"]["base_url"] = "https://cx.example.com/"
    data["cases"]["escalation_notify"] = []
    settings = settings_from_dict(data, base_dir=tmp_path, env={})
    collect_period(settings, engine, "2026-10")
    assert run_day(settings, engine, DAY1, collect=False, send=False)["notices"] == 2
    run_day(settings, engine, BREACHED, collect=False, send=False)  # reminders and escalations
    messages = outbox(engine)
    assert {m.kind.split(":")[0] for m in messages} >= {"case_digest", "case_escalation_contact"}
    for m in messages:
        ids = [c.id for c in cases_of(engine) if f"#{c.id}" in m.body_text]
        assert ids, m.body_text
        for cid in ids:  # a plain page address: the page asks to sign in, nothing signs anyone in
            assert f'<a href="https://cx.example.com/cases/{cid}">{cid}</a>' in m.body_html
            assert f"https://cx.example.com/cases/{cid}" in m.body_text
        assert "/link/" not in m.body_html + m.body_text


def cases_of(engine: Engine) -> list[FollowupCase]:
    with Session(engine) as s:
        return list(s.exec(select(FollowupCase)).all())


def test_a_second_run_the_same_day_tells_the_department_of_its_own_new_cases(tmp_path: Path,
                                                                            engine: Engine) -> None:
    """A manual `cxloop followup run` after the scheduled one that day: its new cases get a digest
    of their own (the day's first digest must not swallow it)."""
    from cxloop.tasks.collect import collect_period

    write_csv(tmp_path / "data" / "oct.csv", ROWS)
    settings = project(tmp_path, engine)
    collect_period(settings, engine, "2026-10")
    assert run_day(settings, engine, DAY1, collect=False, send=False)["notices"] == 2
    write_csv(tmp_path / "data" / "oct-late.csv",
              ["r6,2026-10-08 16:00,,delivery,c6,1,,no,yes,赵六,13512345678,,还没发货"])
    collect_period(settings, engine, "2026-10")
    later = run_day(settings, engine, DAY1 + timedelta(hours=2), collect=False, send=False)
    assert (later["opened"], later["notices"]) == (1, 1)
    digests = [m for m in outbox(engine) if m.kind.startswith("case_digest")]
    assert [(m.recipient, m.period) for m in digests] == [
        ("logistics", "2026-10-08"), ("service", "2026-10-08"), ("logistics", "2026-10-08")]
    assert "13512345678" in digests[-1].body_text and "13512345678" not in digests[0].body_text
