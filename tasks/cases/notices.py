"""Case notices through the monthly loop's outbox: new cases to their owner, a reminder before an
SLA breach, one escalation after it.

Each is queued in the same transaction that marks the case (`reminded`, `escalated`), and the
outbox is unique per (period, recipient, kind) with a case id in the kind: a re-run, or a run
killed before or after queuing, queues nothing twice. Reminders and escalations go out as one
notice per department, SLA and run, listing its cases (a day of a big backlog breaches hundreds:
one outbox message each cost ~25 ms to deliver). Delivery is `tasks.notify.deliver` (claims,
retries, idempotency keys). The owner's notice carries the customer's contact details; a notice to
anyone else (escalation) carries none, and every comment is masked. With `[web] base_url` each case
links to its page in the workspace: a plain address (no sign-in token), which asks to sign in and
shows the contact details only to the case's department and admins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from cxloop.config import Settings
from cxloop.db import session_scope
from cxloop.models import (
    CaseNotice,
    CaseResponse,
    CustomerContact,
    Feedback,
    FollowupCase,
    OutboxMessage,
    as_utc,
)
from cxloop.tasks.cases.lifecycle import OPEN_STATUSES
from cxloop.tasks.cases.sla import Calendar, state, watch
from cxloop.tasks.notify.routes import CASE_ESCALATION, describe_routes, routes_for
from cxloop.tasks.rendering import render, translate

SLAS = ("contact", "close")
_CHUNK = 1000


@dataclass
class CaseItem:
    id: int
    department: str
    queue: str | None
    contact_due: str
    close_due: str
    responses: int
    comment: str
    contact: dict[str, str | None] | None
    link: str = ""  # the case page, when `[web] base_url` is set



def _local(settings: Settings, ts: datetime) -> str:
    return as_utc(ts).astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")


def _items(settings: Settings, session: Session, cases: Sequence[FollowupCase],
           with_contact: bool) -> list[CaseItem]:
    """The notice lines of many cases: each case's first response and its contact details read in
    a few queries per thousand cases, not two per case (a day's digest lists thousands)."""
    fb: Any = Feedback.__table__  # type: ignore[attr-defined]
    cr: Any = CaseResponse.__table__  # type: ignore[attr-defined]
    cc: Any = CustomerContact.__table__  # type: ignore[attr-defined]
    conn = session.connection()
    first: dict[int, Any] = {}
    contacts: dict[tuple[str, str], dict[str, str | None]] = {}
    ids = [c.id for c in cases if c.id is not None]
    for start in range(0, len(ids), _CHUNK):
        part = ids[start:start + _CHUNK]
        query = (core_select(cr.c.case_id, fb.c.source, fb.c.response_id, fb.c.comment)
                 .join(fb, fb.c.id == cr.c.feedback_id).where(cr.c.case_id.in_(part)).order_by(fb.c.id))
        for found in conn.execute(query):
            first.setdefault(found.case_id, found)
        if with_contact:
            wanted = [first[i].response_id for i in part if i in first]
            query = core_select(cc.c.source, cc.c.response_id, cc.c.name, cc.c.phone, cc.c.email).where(
                cc.c.response_id.in_(wanted))
            for c in conn.execute(query):
                contacts[(c.source, c.response_id)] = {"name": c.name, "phone": c.phone, "email": c.email}
    base = (settings.web.base_url or "").rstrip("/")
    out = []
    for case in cases:
        row = first.get(case.id or 0)
        contact = contacts.get((row.source, row.response_id)) if with_contact and row is not None else None
        dept = settings.departments.get(case.department)
        out.append(CaseItem(case.id or 0, dept.name if dept else case.department, case.queue,
                            _local(settings, case.contact_due), _local(settings, case.close_due),
                            case.responses, (row.comment or "") if row is not None else "", contact,
                            f"{base}/cases/{case.id}" if base else ""))
    return out


def _queue(settings: Settings, session: Session, period: str, recipient: str, kind: str, lang: str,
           subject: str, intro: str, items: list[CaseItem], cases: Sequence[FollowupCase]) -> bool:
    """Add one message unless (period, recipient, kind) is already there; link it to its cases."""
    exists = session.exec(select(OutboxMessage.id).where(OutboxMessage.period == period)
                          .where(OutboxMessage.recipient == recipient)
                          .where(OutboxMessage.kind == kind)).first()
    if exists is not None:
        return False
    ctx: dict[str, Any] = {"title": subject, "subject": subject, "intro": intro, "items": items,
                           "project": settings.project.name, "kind": kind.split(":")[0].split("_")[1]}
    msg = OutboxMessage(period=period, recipient=recipient, kind=kind, language=lang, subject=subject,
                        body_html=render("case_notice.html", lang, **ctx),
                        body_text=render("case_notice.md", lang, **ctx),
                        route=describe_routes(routes_for(settings, recipient)))
    session.add(msg)
    session.flush()
    cn: Any = CaseNotice.__table__  # type: ignore[attr-defined]
    session.connection().execute(cn.insert(), [{"case_id": c.id, "message_id": msg.id} for c in cases])
    return True


def queue_new_case_notices(settings: Settings, engine: Engine, day: str, case_ids: Sequence[int]) -> int:
    """Tell each owner about its new cases: one digest per department and day, or one per case."""
    if not case_ids:
        return 0
    queued = 0
    with session_scope(engine) as session:
        cases = list(session.exec(select(FollowupCase).where(col(FollowupCase.id).in_(list(case_ids)))
                                  .order_by(col(FollowupCase.id))).all())
        by_dept: dict[str, list[FollowupCase]] = {}
        for case in cases:
            by_dept.setdefault(case.department, []).append(case)
        for dept_id, group in by_dept.items():
            lang = settings.department_language(dept_id)
            batches = ([(f"case_new:{c.id}", [c]) for c in group] if settings.cases.notify == "per_case"
                       else [(f"case_digest:{group[0].id}", group)])  # a second run that day: its own
            for kind, batch in batches:
                digest = len(batch) > 1 or kind.startswith("case_digest")
                subject = (translate("New follow-up cases", lang) if digest
                           else translate("Follow-up case %(id)s: new", lang) % {"id": batch[0].id})
                intro = translate("%(n)s unhappy customers agreed to be called back. Please contact them "
                                  "before the due time.", lang) % {"n": len(batch)}
                items = _items(settings, session, batch, with_contact=True)
                queued += _queue(settings, session, day, dept_id, kind, lang, subject, intro, items, batch)
    return queued


def _sla_batch(settings: Settings, session: Session, day: str, what: str, sla: str, dept_id: str,
               group: list[FollowupCase]) -> bool:
    """One reminder (to the owner, with contact details) or escalation (to `[cases]
    escalation_notify`, without) for a department's cases that reached the same SLA moment in this
    run. The kind carries the lowest case id: a case is marked in the transaction that queues it,
    so it is in one batch only, and two batches never share that id - a re-run, or a run after a
    kill, queues nothing twice, and a later run's batch of other cases gets its own row."""
    dept = settings.departments.get(dept_id)
    dept_name = dept.name if dept else dept_id
    first = min(c.id or 0 for c in group)
    if what == "escalation":
        lang: str = settings.project.language
        recipient = CASE_ESCALATION
        if len(group) == 1:
            subject = translate("Follow-up case %(id)s: SLA breached", lang) % {"id": first}
            intro = translate("The %(sla)s deadline of this case has passed: it is escalated once.", lang)
        else:
            subject = translate("%(n)s follow-up cases of %(dept)s: SLA breached", lang) % {
                "n": len(group), "dept": dept_name}
            intro = translate("The %(sla)s deadline of these cases has passed: each is escalated once.", lang)
    else:
        lang = settings.department_language(dept_id)
        recipient = dept_id
        if len(group) == 1:
            subject = translate("Follow-up case %(id)s: due soon", lang) % {"id": first}
            intro = translate("The %(sla)s deadline of this case is near.", lang)
        else:
            subject = translate("%(n)s follow-up cases of %(dept)s: due soon", lang) % {
                "n": len(group), "dept": dept_name}
            intro = translate("The %(sla)s deadline of these cases is near.", lang)
    sla_name = translate("first contact" if sla == "contact" else "closure", lang)
    items = _items(settings, session, group, with_contact=what == "reminder")
    return _queue(settings, session, day, recipient, f"case_{what}_{sla}:{dept_id}:{first}", lang, subject,
                  intro % {"sla": sla_name}, items, group)


def queue_sla_notices(settings: Settings, engine: Engine, now: datetime) -> dict[str, int]:
    """A reminder to the owner before a deadline, one escalation after it; each once per case, in
    one notice per department, SLA and run (one per case with `[cases] notify = "per_case"`).

    Only the open cases whose watched deadline (`sla_watch`: the earliest one still owed a notice)
    falls within the reminder window are read - the rest cannot need one, however long the backlog
    (`Calendar.reach`). Each is then judged as before with `state`, and gets its next watch."""
    cfg = settings.cases
    cal = Calendar.of(cfg, settings.tz)
    day = now.astimezone(settings.tz).date().isoformat()
    # A second of slack: `state` decides exactly; the bound only has to include every candidate.
    bound = cal.reach(now, cfg.remind_before_hours) + timedelta(seconds=1)
    counts = {"reminders": 0, "escalations": 0}
    # `[cases] notify = "per_case"` (a receiver that makes a ticket of each message): one case each.
    per_case = cfg.notify == "per_case"
    batches: dict[tuple[str, str, str, int], list[FollowupCase]] = {}
    with session_scope(engine) as session:
        due_cases = session.exec(select(FollowupCase).where(col(FollowupCase.status).in_(OPEN_STATUSES))
                                 .where(col(FollowupCase.sla_watch) <= bound)
                                 .order_by(col(FollowupCase.id))).all()
        for case in due_cases:
            one = (case.id or 0) if per_case else 0
            for sla in SLAS:
                if sla == "contact" and case.status != "new":
                    continue
                due = case.contact_due if sla == "contact" else case.close_due
                now_state = state(cal, as_utc(due), now, cfg.remind_before_hours)
                if now_state == "breached" and sla not in (case.escalated or []):
                    batches.setdefault(("escalation", sla, case.department, one), []).append(case)
                    case.escalated = [*(case.escalated or []), sla]
                    counts["escalations"] += 1
                elif now_state == "due_soon" and sla not in (case.reminded or []):
                    batches.setdefault(("reminder", sla, case.department, one), []).append(case)
                    case.reminded = [*(case.reminded or []), sla]
                    counts["reminders"] += 1
            case.sla_watch = watch(case.status, case.contact_due, case.close_due, case.escalated)
            session.add(case)
        for (what, sla, dept_id, _), group in sorted(batches.items()):
            _sla_batch(settings, session, day, what, sla, dept_id, group)
    return counts
