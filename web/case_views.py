"""What the case pages show, as plain data: cases found by the list's filters, and a case's words
for people (status, deadlines in the project's time zone and whether they were missed, root cause
and outcome). Kept apart from the routes, like `views.py` for the actions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, func, or_
from sqlmodel import Session, col, select

from cxloop.config import Settings
from cxloop.models import FollowupCase
from cxloop.tasks.cases.lifecycle import ALLOWED, CLOSED_STATUSES, OPEN_STATUSES
from cxloop.tasks.cases.sla import breaches
from cxloop.tasks.comments import load_taxonomy, topic_name
from cxloop.tasks.rendering import translate

PAGE_SIZE = 50
STATUS_CHOICES = ("open", "closed", *ALLOWED)
STATUS_LABELS = {"new": "New", "contacted": "Contacted", "resolved": "Resolved",
                 "unreachable": "Unreachable", "declined": "Declined"}
STATUS_CHOICE_LABELS = {"open": "Open (new or contacted)", "closed": "Closed"}
MOVE_LABELS = {"contacted": "Mark contacted", "resolved": "Resolve", "unreachable": "Could not reach",
               "declined": "Customer declined"}
OUTCOME_LABELS = {"recovered": "Recovered", "not_recovered": "Not recovered"}


class CaseFilterError(ValueError):
    """A filter value the list does not know; the message names it."""


@dataclass
class CaseFilters:
    """The case list's filters, as the query string gives them: open cases by default."""

    status: str = "open"
    breached: bool = False
    department: str = ""
    page: int = 1


def _statuses(status: str) -> tuple[str, ...] | None:
    if not status:
        return None
    if status == "open":
        return OPEN_STATUSES
    if status == "closed":
        return CLOSED_STATUSES
    if status in ALLOWED:
        return (status,)
    raise CaseFilterError(f"unknown status {status[:30]!r}; known: {', '.join(STATUS_CHOICES)}")


def find_cases(engine: Engine, filters: CaseFilters, only_department: str | None,
               now: datetime) -> tuple[list[FollowupCase], int]:
    """One page of cases (oldest first: the longest-waiting customer on top) and how many match;
    `only_department` is the access rule's limit and always wins over the filter. "Breached" is
    `sla.breaches` in SQL: a deadline missed, or passed by `now` (or the closure) without it met."""
    c = FollowupCase
    query = select(c)
    statuses = _statuses(filters.status)
    if statuses is not None:
        query = query.where(col(c.status).in_(statuses))
    if only_department is not None:
        query = query.where(c.department == only_department)
    if filters.department:
        query = query.where(c.department == filters.department)
    if filters.breached:
        contacted, closed = col(c.contacted_at), col(c.closed_at)
        query = query.where(or_(
            and_(contacted.is_not(None), contacted > col(c.contact_due)),
            and_(contacted.is_(None), col(c.contact_due) <= func.coalesce(closed, now)),
            and_(closed.is_not(None), closed > col(c.close_due)),
            and_(closed.is_(None), col(c.close_due) <= now)))
    with Session(engine) as session:
        total = session.exec(select(func.count()).select_from(query.subquery())).one()
        rows = list(session.exec(query.order_by(col(c.id))
                                 .offset((max(filters.page, 1) - 1) * PAGE_SIZE).limit(PAGE_SIZE)).all())
    return rows, int(total)


def local(settings: Settings, ts: datetime | None) -> str:
    """A stored time in the project's zone, as the case notices write it."""
    if ts is None:
        return "–"
    aware = ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    return aware.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")


def root_causes(settings: Settings, lang: str) -> dict[str, str]:
    """{topic id: name in the reader's language}: the root-cause tags a case may get, the comment
    topics (the config's `[[topics]]`, else the shipped taxonomy)."""
    return {t.id: topic_name(t, lang) for t in load_taxonomy(settings)}


def status_label(status: str, lang: str) -> str:
    return translate(STATUS_LABELS.get(status, status), lang)


def case_labels(settings: Settings, case: FollowupCase, lang: str, now: datetime,
                causes: dict[str, str]) -> dict[str, Any]:
    """A case's words for people, and which of its deadlines were missed (by `now`)."""
    missed = breaches(case.contact_due, case.close_due, case.contacted_at, case.closed_at, now)
    dept = settings.departments.get(case.department)
    return {
        "department": dept.name if dept else case.department,
        "status": status_label(case.status, lang),
        "opened": local(settings, case.opened_at),
        "contact_due": local(settings, case.contact_due),
        "close_due": local(settings, case.close_due),
        "contacted": local(settings, case.contacted_at) if case.contacted_at else None,
        "closed": local(settings, case.closed_at) if case.closed_at else None,
        "contact_breached": missed.contact,
        "close_breached": missed.close,
        "root_cause": causes.get(case.root_cause, case.root_cause) if case.root_cause else None,
        "outcome": translate(OUTCOME_LABELS.get(case.outcome, case.outcome), lang) if case.outcome else None,
    }
