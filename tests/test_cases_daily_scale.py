"""Issue 19, item 8: the daily run at scale - the SLA scan reads only the cases whose deadline has
come near (a backlog of thousands is not read), reminders and escalations go out as one notice per
department, SLA and run and still exactly once after re-runs, the opening step writes set-wise and
adds nothing on a replay, and migration 0012 (`sla_watch`) goes up and down on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, event, inspect, text, update
from sqlmodel import Session, col, select

from cxloop.config import CasesConfig
from cxloop.models import CaseEvent, CaseNotice, CaseResponse, FollowupCase, FollowupRun, OutboxMessage
from cxloop.tasks.cases.daily import run_day
from cxloop.tasks.cases.notices import queue_sla_notices
from cxloop.tasks.cases.opening import open_cases
from cxloop.tasks.cases.sla import Calendar, state, watch
from cxloop.tasks.collect import collect_period
from tests.receivers import SmtpReceiver
from tests.test_cases import HEADER, project
from tests.test_cases_notices import with_routes

SHANGHAI = ZoneInfo("Asia/Shanghai")
EARLY = "2026-10-08 10:00"  # Thursday: first contact due Monday 12 Oct 16:00 Shanghai
LATE = "2026-10-12 10:00"  # Monday: first contact due Wednesday 14 Oct 16:00 Shanghai
BREACHED = datetime(2026, 10, 13, 2, 0, tzinfo=UTC)  # Tuesday 10:00 Shanghai


def write_rows(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    """(id, time, department, customer): each a consenting detractor with contact details."""
    path.parent.mkdir(exist_ok=True)
    body = "".join(f"{rid},{at},{dept},,{cust},2,,no,yes,Cu,1380000{i:04d},,slow\n"
                   for i, (rid, at, dept, cust) in enumerate(rows))
    path.write_text(HEADER + body, encoding="utf-8")


@contextmanager
def cases_read(engine: Engine) -> Iterator[list[int]]:
    """The ids of the follow-up cases loaded from the database while the block runs."""
    seen: list[int] = []

    def on_load(target: FollowupCase, _context: Any) -> None:
        seen.append(target.id or 0)

    event.listen(FollowupCase, "load", on_load)
    try:
        yield seen
    finally:
        event.remove(FollowupCase, "load", on_load)


def outbox(engine: Engine) -> list[OutboxMessage]:
    with Session(engine) as s:
        return list(s.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all())  # type: ignore[arg-type]


# --- the SLA clock's bound, pure -------------------------------------------------------------

@pytest.mark.parametrize("remind", [0.0, 4.0, 9.0, 2.5])
def test_reach_bounds_exactly_the_deadlines_within_the_reminder_window(remind: float) -> None:
    """`state` says due soon or breached exactly for the deadlines at or before `reach` - from a
    working hour, an evening, a weekend and a holiday eve, for deadlines every 10 minutes."""
    cfg = CasesConfig(holidays=[datetime(2026, 10, 1).date()])
    cal = Calendar.of(cfg, SHANGHAI)
    for y, m, d, hh, mm in ((2026, 10, 14, 11, 20), (2026, 10, 16, 17, 0), (2026, 10, 17, 12, 0),
                            (2026, 9, 30, 16, 0), (2026, 10, 14, 9, 0)):
        now = datetime(y, m, d, hh, mm, tzinfo=SHANGHAI)
        bound = cal.reach(now, remind)
        for step in range(0, 6 * 24 * 6):
            due = now + timedelta(minutes=10 * step)
            near = state(cal, due, now, remind) != "ok"
            assert near == (due <= bound), (now, due, bound)


def test_watch_is_the_earliest_deadline_still_owed() -> None:
    contact, close = datetime(2026, 10, 12, 8, tzinfo=UTC), datetime(2026, 10, 15, 10, tzinfo=UTC)
    assert watch("new", contact, close, []) == contact
    assert watch("new", contact, close, ["contact"]) == close
    assert watch("contacted", contact, close, []) == close  # first contact no longer owed
    assert watch("contacted", contact, close, ["close"]) is None
    assert watch("resolved", contact, close, []) is None


# --- the scan reads only what is due ---------------------------------------------------------

def test_a_backlog_of_thousands_is_not_read_only_the_due_cases(tmp_path: Path, engine: Engine) -> None:
    settings = project(tmp_path, engine)
    rows = [(f"e{i}", EARLY, "logistics", f"ce{i}") for i in range(6)]
    rows += [(f"l{i}", LATE, "logistics" if i % 2 else "service", f"cl{i}") for i in range(3000)]
    write_rows(tmp_path / "data" / "oct.csv", rows)
    collect_period(settings, engine, "2026-10")
    assert len(open_cases(settings, engine, BREACHED).opened) == 3006
    with Session(engine) as s:
        early = sorted(c.id or 0 for c in s.exec(select(FollowupCase).where(
            col(FollowupCase.customer_id).in_([f"ce{i}" for i in range(6)]))).all())
    with engine.begin() as conn:  # two early customers were called: only their closure is owed
        conn.execute(update(FollowupCase).where(col(FollowupCase.id).in_(early[:2]))
                     .values(status="contacted", contacted_at=BREACHED - timedelta(days=3)))
    with cases_read(engine) as seen:
        counts = queue_sla_notices(settings, engine, BREACHED)
    assert sorted(seen) == early  # the 3,000 later cases were not read
    assert counts == {"reminders": 0, "escalations": 4}
    with cases_read(engine) as seen:  # an hour later: every early case now waits for its closure
        assert queue_sla_notices(settings, engine, BREACHED + timedelta(hours=1)) == {
            "reminders": 0, "escalations": 0}
    assert seen == []
    # Wednesday 12:00: 4 working hours to the later cases' first-contact deadline (16:00), and
    # 7 to the early ones' closure (Thursday 10:00): only the later cases are read, and reminded.
    wednesday = datetime(2026, 10, 14, 4, 0, tzinfo=UTC)
    with cases_read(engine) as seen:
        assert queue_sla_notices(settings, engine, wednesday) == {"reminders": 3000, "escalations": 0}
    assert len(seen) == 3000 and not set(seen) & set(early)
    reminders = [m for m in outbox(engine) if m.kind.startswith("case_reminder_contact")]
    assert sorted(m.recipient for m in reminders) == ["logistics", "service"]  # one per owner
    with Session(engine) as s:
        assert len(s.exec(select(CaseNotice).where(
            col(CaseNotice.message_id).in_([m.id for m in reminders]))).all()) == 3000


# --- batched notices, exactly once -----------------------------------------------------------

def test_a_batch_of_escalations_is_one_notice_per_owner_and_exactly_once(tmp_path: Path, engine: Engine
                                                                         ) -> None:
    rows = [(f"a{i}", EARLY, "logistics", f"ca{i}") for i in range(3)]
    rows += [(f"b{i}", EARLY, "service", f"cb{i}") for i in range(2)]
    write_rows(tmp_path / "data" / "oct.csv", rows)
    with SmtpReceiver() as smtp:
        settings = with_routes(tmp_path, engine, smtp.url("log@example.com"), smtp.url("svc@example.com"),
                               smtp.url("boss@example.com"))
        collect_period(settings, engine, "2026-10")
        run_day(settings, engine, datetime(2026, 10, 8, 10, 0, tzinfo=UTC), collect=False)
        assert len(smtp.messages) == 2  # the two owners' digests of new cases
        for now in (BREACHED, BREACHED, BREACHED + timedelta(hours=2)):  # re-runs of the day
            out = run_day(settings, engine, now, collect=False)
        assert out["escalations"] == 0
        boss = [m for m in smtp.messages if "boss@example.com" in m.recipients]
        assert len(boss) == 2  # one per department, not one per case
        by_subject = {m.message["Subject"]: m for m in boss}
        assert set(by_subject) == {"物流部的 3 个回访个案：已超时", "Service的 2 个回访个案：已超时"}
        for mail in boss:  # an escalation lists its cases without contact details
            assert "1380000" not in mail.html
        assert all(f"<td style=\"padding:6px\">{i}</td>" in by_subject["物流部的 3 个回访个案：已超时"].html
                   for i in (1, 2, 3))
        # A new breach on a later day gets its own notice; the others are not repeated.
        write_rows(tmp_path / "data" / "oct.csv", [*rows, ("c0", "2026-10-09 10:00", "logistics", "cc0")])
        collect_period(settings, engine, "2026-10")
        for _ in range(2):
            run_day(settings, engine, datetime(2026, 10, 14, 2, 0, tzinfo=UTC), collect=False)
        boss = [m for m in smtp.messages if "boss@example.com" in m.recipients]
        assert len(boss) == 3 and boss[-1].message["Subject"] == "回访个案 6：已超时"
    kinds = [m.kind for m in outbox(engine) if m.recipient == "case_escalation"]
    assert kinds == ["case_escalation_contact:logistics:1", "case_escalation_contact:service:4",
                     "case_escalation_contact:logistics:6"]
    with Session(engine) as s:
        escalated = {c.id: c.escalated for c in s.exec(select(FollowupCase)).all()}
    assert escalated == {i: ["contact"] for i in range(1, 7)}


# --- opening, set-wise -----------------------------------------------------------------------

def test_opening_a_replayed_day_adds_nothing_and_keeps_the_watermark(tmp_path: Path, engine: Engine) -> None:
    """Even without the watermark (a run that raced this one and committed first), the unique case
    key and response make the database skip what is stored: no case, response or event twice."""
    settings = project(tmp_path, engine)
    write_rows(tmp_path / "data" / "oct.csv", [("r1", EARLY, "service", "c1"), ("r2", LATE, "service", "c1"),
                                                ("r3", EARLY, "logistics", "c3")])
    collect_period(settings, engine, "2026-10")
    first = open_cases(settings, engine, BREACHED)
    assert (len(first.opened), first.merged, first.considered) == (2, 1, 3)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM followup_run"))  # as if this run had not seen the others
    again = open_cases(settings, engine, BREACHED)
    assert again.opened == [] and again.considered == 3
    with Session(engine) as s:
        assert len(s.exec(select(FollowupCase)).all()) == 2
        assert len(s.exec(select(CaseResponse)).all()) == 3
        assert len(s.exec(select(CaseEvent)).all()) == 2
        assert s.exec(select(FollowupRun)).one().last_feedback_id == first.last_feedback_id
        c1 = s.exec(select(FollowupCase).where(FollowupCase.customer_id == "c1")).one()
    assert c1.sla_watch is not None and c1.sla_watch.replace(tzinfo=UTC) == c1.contact_due.replace(tzinfo=UTC)


# --- migration 0012, up and down -------------------------------------------------------------

def test_migration_0012_watches_the_open_cases_and_goes_back(db_url: str) -> None:
    from alembic import command

    from cxloop.db import alembic_config, make_engine

    eng = make_engine(db_url)
    try:
        command.upgrade(alembic_config(eng), "0011")
        with eng.begin() as conn:
            for key, status in (("s:new", "new"), ("s:contacted", "contacted"), ("s:resolved", "resolved")):
                conn.execute(text(
                    "INSERT INTO followup_case (case_key, department, status, period, responses, opened_at,"
                    " created_at, contact_due, close_due) VALUES (:k, 'service', :s, '2026-10', 1,"
                    " '2026-10-08 02:00:00', '2026-10-08 02:00:00', '2026-10-12 08:00:00',"
                    " '2026-10-15 10:00:00')"), {"k": key, "s": status})
        command.upgrade(alembic_config(eng), "head")
        with eng.connect() as conn:
            rows: dict[str, str] = dict(conn.execute(text(
                "SELECT case_key, CASE WHEN sla_watch IS NULL THEN 'none' WHEN sla_watch = contact_due"
                " THEN 'contact' WHEN sla_watch = close_due THEN 'close' END FROM followup_case")).all())
        assert rows == {"s:new": "contact", "s:contacted": "close", "s:resolved": "none"}
        with eng.connect() as conn:
            assert "ix_customer_contact_submitted_at" in {i["name"] for i in inspect(conn).get_indexes(
                "customer_contact")}
        command.downgrade(alembic_config(eng), "0011")
        with eng.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("followup_case")}
            assert "sla_watch" not in columns
            assert "ix_customer_contact_submitted_at" not in {i["name"] for i in inspect(conn).get_indexes(
                "customer_contact")}
            assert conn.execute(text("SELECT count(*) FROM followup_case")).scalar() == 3
        command.upgrade(alembic_config(eng), "head")
    finally:
        eng.dispose()


def test_per_case_notices_keep_one_message_per_case(tmp_path: Path, engine: Engine) -> None:
    """`[cases] notify = "per_case"` (a receiver that makes a ticket of each message): escalations
    and reminders stay one per case, each still once."""
    settings = project(tmp_path, engine, notify="per_case")
    write_rows(tmp_path / "data" / "oct.csv", [(f"a{i}", EARLY, "logistics", f"ca{i}") for i in range(3)])
    collect_period(settings, engine, "2026-10")
    open_cases(settings, engine, BREACHED)
    for _ in range(2):
        queue_sla_notices(settings, engine, BREACHED)
    kinds = sorted(m.kind for m in outbox(engine))
    assert kinds == [f"case_escalation_contact:logistics:{i}" for i in (1, 2, 3)]
    assert {m.subject for m in outbox(engine)} == {f"回访个案 {i}：已超时" for i in (1, 2, 3)}
