"""What the pages show, as plain data: actions found with their labels, one action with its
evidence, history and effects. Kept apart from the routes so the bench and tests can call it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from cxloop.config import Settings
from cxloop.models import Action
from cxloop.tasks import lifecycle
from cxloop.tasks.actions import is_overdue, parse_statuses
from cxloop.tasks.notify import SEVERITY_LABELS, STATUS_LABELS, VERDICT_LABELS, _t, scope_label
from cxloop.vocabulary import kpi_label

PAGE_SIZE = 50


@dataclass
class Filters:
    """The action list's filters, as the query string gives them."""

    status: str = "active"
    overdue: bool = False
    department: str = ""
    kpi: str = ""
    page: int = 1


def find_actions(engine: Engine, filters: Filters, only_department: str | None,
                 today: date) -> tuple[list[Action], int]:
    """One page of actions (newest first) and how many match; `only_department` is the access
    rule's limit and always wins over the filter."""
    statuses = parse_statuses(filters.status or None)
    query = select(Action)
    if statuses is not None:
        query = query.where(col(Action.status).in_(statuses))
    if only_department is not None:
        query = query.where(Action.department == only_department)
    if filters.department:
        query = query.where(Action.department == filters.department)
    if filters.kpi:
        query = query.where(Action.kpi == filters.kpi)
    if filters.overdue:  # the same rule as tasks.actions.is_overdue, in SQL
        still_open = [s for s in lifecycle.OPEN_STATUSES if s != "done"]
        query = query.where(col(Action.status).in_(still_open), col(Action.due).is_not(None),
                            col(Action.due) < today)
    with Session(engine) as session:
        total = session.exec(select(func.count()).select_from(query.subquery())).one()
        rows = list(session.exec(query.order_by(col(Action.id).desc())
                                 .offset((max(filters.page, 1) - 1) * PAGE_SIZE).limit(PAGE_SIZE)).all())
    return rows, int(total)


def labels(settings: Settings, action: Action, lang: str, today: date) -> dict[str, Any]:
    """An action's words for people: KPI, where, status and severity in the reader's language."""
    last = (action.evidence or [{}])[-1]
    return {
        "kpi": kpi_label(action.kpi, lang),
        "where": scope_label(settings, action.scope, action.scope_value, lang),
        "status": _t(STATUS_LABELS.get(action.status, action.status), lang),
        "severity": _t(SEVERITY_LABELS.get(action.severity, action.severity), lang),
        "overdue": is_overdue(action, today),
        "last_value": last.get("value"),
        "last_period": last.get("period"),
    }


def verdict_label(verdict: str, lang: str) -> str:
    return _t(VERDICT_LABELS.get(verdict, verdict), lang)
