"""The notices of a period - each department's digest, the escalations, the data-quality notice -
rendered in HTML and Markdown and queued in the outbox at most once per (period, recipient, kind).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cxloop.config import DepartmentConfig, Settings
from cxloop.db import session_scope
from cxloop.models import Action, ActionEvent, Measurement, OutboxMessage, QualityCheck
from cxloop.tasks.actions import is_person_note
from cxloop.tasks.lifecycle import OPEN_STATUSES
from cxloop.tasks.masking import mask_pii
from cxloop.tasks.notify.items import SEVERITY_ORDER, ActionItem, Draft, action_item, translated, verdict_item
from cxloop.tasks.notify.routes import DATA_OWNERS, ESCALATION_RECIPIENT, describe_routes, routes_for
from cxloop.tasks.rendering import render

DIGEST, ESCALATION, DATA_QUALITY = "digest", "escalation", "data_quality"


def _sort_key(item: ActionItem) -> tuple[int, int, str, int]:
    return (0 if item.overdue else 1, SEVERITY_ORDER.get(item.severity, 3),
            item.due.isoformat() if item.due else "9999", item.id)


def _report_url(settings: Settings, period: str, department: str | None) -> str | None:
    base = settings.notify.report_base_url
    if not base:
        return None
    name = f"report-{quote(department, safe='')}.html" if department else "report.html"
    return f"{base.rstrip('/')}/{period}/{name}"


def _render_pair(name: str, lang: str, **ctx: Any) -> tuple[str, str]:
    return render(f"{name}.html", lang, **ctx), render(f"{name}.md", lang, **ctx)


def _person_notes(session: Session, action_ids: list[int]) -> dict[int, str]:
    """Each action's latest note or evidence link from a person, masked, for the next digest."""
    if not action_ids:
        return {}
    events = session.exec(select(ActionEvent).where(col(ActionEvent.action_id).in_(action_ids))
                          .where(col(ActionEvent.to_status).is_(None))
                          .order_by(col(ActionEvent.at), col(ActionEvent.id))).all()
    return {e.action_id: _short(mask_pii(" ".join(p for p in (e.note, e.link or "") if p)), 300)
            for e in events if is_person_note(e)}


def _digest(settings: Settings, session: Session, period: str, dept_id: str,
            mint_links: bool = True) -> Draft | None:
    lang = settings.department_language(dept_id)
    dept = settings.departments.get(dept_id) or DepartmentConfig(name=dept_id)
    actions = session.exec(select(Action).where(Action.department == dept_id)
                           .where(Action.opened_period <= period).order_by(col(Action.id))).all()
    new = [action_item(settings, a, period, lang) for a in actions if a.opened_period == period]
    earlier = [action_item(settings, a, period, lang) for a in actions
               if a.opened_period < period and a.status in OPEN_STATUSES]
    overdue = sorted((i for i in earlier if i.overdue), key=_sort_key)
    still_open = sorted((i for i in earlier if not i.overdue), key=_sort_key)
    new.sort(key=_sort_key)
    rows = session.exec(select(Measurement, Action).join(Action, col(Measurement.action_id) == Action.id)
                        .where(Measurement.period == period).where(Action.department == dept_id)
                        .order_by(col(Action.id))).all()
    verdicts = [verdict_item(settings, a, m, lang) for m, a in rows]
    if not (new or overdue or still_open or verdicts) and not settings.notify.all_clear:
        return None
    items = [*new, *overdue, *still_open]
    notes = _person_notes(session, [i.id for i in items])
    urls: dict[int, str] = {}
    if settings.web.base_url:
        from cxloop.web.links import action_urls

        urls = action_urls(settings, session.get_bind(), dept_id, [i.id for i in items],  # type: ignore[arg-type]
                           mint=mint_links)
    for item in items:
        item.link, item.latest_note = urls.get(item.id, ""), notes.get(item.id, "")
    open_count = len(overdue) + len(still_open)
    if new or open_count or verdicts:
        # "open": opened in earlier cycles and still open, the overdue ones among them
        subject = translated("[cxloop] %(period)s %(dept)s: %(new)s new, %(open)s still open from earlier "
                             "(%(overdue)s overdue) actions", lang, period=period, dept=dept.name,
                             new=len(new), open=open_count, overdue=len(overdue))
    else:
        subject = translated("[cxloop] %(period)s %(dept)s: nothing to act on", lang, period=period,
                     dept=dept.name)
    ctx = dict(period=period, department=dept.name, head=dept.head, new=new, overdue=overdue,
               still_open=still_open, verdicts=verdicts, subject=subject,
               report_url=_report_url(settings, period, dept_id), project=settings.project.name,
               confidence=f"{settings.kpis.confidence * 100:.0f}")
    html, text = _render_pair("notice", lang, **ctx)
    return Draft(period, dept_id, DIGEST, lang, subject, html, text)


def _escalations(settings: Settings, session: Session, period: str) -> Draft | None:
    lang = settings.project.language
    rows = session.exec(select(ActionEvent, Action).join(Action, col(ActionEvent.action_id) == Action.id)
                        .where(ActionEvent.period == period).where(ActionEvent.to_status == "escalated")
                        .order_by(col(Action.id), col(ActionEvent.id))).all()
    latest: dict[int, tuple[ActionEvent, Action]] = {}
    for event, action in rows:
        latest[action.id or 0] = (event, action)
    if not latest:
        return None
    items = []
    for event, action in latest.values():
        item = action_item(settings, action, period, lang, note=event.note)
        m = session.exec(select(Measurement).where(Measurement.action_id == action.id)
                         .where(Measurement.period == period)).first()
        dept = settings.departments.get(action.department)
        items.append({"action": item, "department": dept.name if dept else action.department,
                      "head": (dept.head if dept else "") or action.head,
                      "verdict": verdict_item(settings, action, m, lang) if m else None})
    subject = translated("[cxloop] %(period)s: %(n)s actions escalated", lang, period=period, n=len(items))
    html, text = _render_pair("escalation", lang, period=period, items=items, subject=subject,
                              report_url=_report_url(settings, period, None),
                              project=settings.project.name)
    return Draft(period, ESCALATION_RECIPIENT, ESCALATION, lang, subject, html, text)


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = mask_pii(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _data_quality(settings: Settings, session: Session, period: str) -> Draft:
    lang = settings.project.language
    checks = session.exec(select(QualityCheck).where(QualityCheck.period == period)
                          .where(QualityCheck.success == False)  # noqa: E712
                          .order_by(col(QualityCheck.severity), col(QualityCheck.id))).all()
    def gating(c: QualityCheck) -> bool:
        return bool((c.observed or {}).get("gating", c.level == "batch" and c.severity == "critical"))

    checks = sorted(checks, key=lambda c: not gating(c))  # what held the cycle first
    items = [{"suite": c.suite, "expectation": c.expectation, "column": c.column or "", "level": c.level,
              "severity": c.severity, "unexpected_count": c.unexpected_count, "gating": gating(c),
              "observed": _short((c.observed or {}).get("message") or c.observed) if c.observed else "",
              "sample": _short(c.sample[:5]) if c.sample else ""} for c in checks]
    critical = sum(1 for c in checks if gating(c))
    subject = translated("[cxloop] %(period)s: cycle held by the data-quality gate (%(n)s checks failed)",
                 lang, period=period, n=len(items))
    html, text = _render_pair("data_quality", lang, period=period, checks=items, critical=critical,
                              subject=subject, project=settings.project.name,
                              sources=[s.name for s in settings.sources])
    return Draft(period, DATA_OWNERS, DATA_QUALITY, lang, subject, html, text)


def build_notices(settings: Settings, engine: Engine, period: str, held: bool,
                  mint_links: bool = True) -> list[Draft]:
    """Render this period's notices without storing them (what `queue_notices` would queue);
    `mint_links=False` (a preview) puts no live sign-in link in them."""
    drafts: list[Draft] = []
    with Session(engine) as session:
        if held:
            return [_data_quality(settings, session, period)]
        # Departments of the config, then any owner an action names that the config lacks (the
        # default owner, a renamed department): their digest is stored as no_route, not lost.
        owners = session.exec(select(Action.department).distinct()).all()
        for dept_id in dict.fromkeys([*settings.departments, *sorted(owners)]):
            draft = _digest(settings, session, period, dept_id, mint_links)
            if draft:
                drafts.append(draft)
        esc = _escalations(settings, session, period)
        if esc:
            drafts.append(esc)
    return drafts


def queue_notices(settings: Settings, engine: Engine, period: str, held: bool) -> list[OutboxMessage]:
    """Put this period's notices in the outbox: one per (period, recipient, kind), ever.

    A message already sent, partly delivered or being sent is left exactly as it is; a pending,
    failed or unroutable one is re-rendered so a re-run after a data or config fix sends the
    current text.
    """
    drafts = build_notices(settings, engine, period, held)
    out: list[OutboxMessage] = []
    with session_scope(engine) as session:
        for draft in drafts:
            route = describe_routes(routes_for(settings, draft.recipient))
            existing = session.exec(select(OutboxMessage).where(OutboxMessage.period == period)
                                    .where(OutboxMessage.recipient == draft.recipient)
                                    .where(OutboxMessage.kind == draft.kind)).first()
            if existing is None:
                msg = draft.to_message(route)
                session.add(msg)
                out.append(msg)
                continue
            if existing.status in ("pending", "failed", "no_route") and not existing.delivered:
                existing.language, existing.subject = draft.language, draft.subject
                existing.body_html, existing.body_text = draft.body_html, draft.body_text
                existing.route = route
                if existing.status == "no_route":
                    existing.status = "pending"
                session.add(existing)
            out.append(existing)
        session.flush()
    return out
