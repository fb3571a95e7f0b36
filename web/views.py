"""What the pages show, as plain data: actions found with their labels, one action with its
evidence, history and effects. Kept apart from the routes so the bench and tests can call it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from cxloop.config import Settings
from cxloop.models import Action, CycleStage, Feedback, KpiResult
from cxloop.tasks import lifecycle
from cxloop.tasks.actions import is_overdue, parse_statuses
from cxloop.tasks.notify.items import SEVERITY_LABELS, STATUS_LABELS, VERDICT_LABELS, _t, scope_label
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


class ReportCache:
    """The report's data per (period, department, language), rebuilt only when the period's data
    changes. Building it reads every response of the month (pandas); the KPIs, comments and themes
    it shows change only when a cycle stage runs, so each page view must not pay for it again.
    One lock per key: twenty heads opening the dashboard at once build it once. The data's
    fingerprint is re-read at most every `recheck` seconds, so a page may lag a cycle stage by that."""

    def __init__(self, size: int = 64, recheck: float = 5.0) -> None:
        self.size, self.recheck = size, recheck
        self._entries: dict[tuple[str, str | None, str], tuple[tuple[Any, ...], Any]] = {}
        self._checked: dict[tuple[str, str | None, str], float] = {}
        self._locks: dict[tuple[str, str | None, str], threading.Lock] = {}
        self._guard = threading.Lock()

    @staticmethod
    def fingerprint(engine: Engine, period: str) -> tuple[Any, ...]:
        """What changes when any stage rewrites the period: KPI rows, stages, responses, actions."""
        with Session(engine) as session:
            kpis = session.exec(select(func.count(), func.max(KpiResult.id))
                                .where(KpiResult.period == period)).one()
            stages = session.exec(select(func.count(), func.max(CycleStage.finished_at))
                                  .where(CycleStage.period == period)).one()
            feedback = session.exec(select(func.count(), func.max(Feedback.id), func.max(Feedback.updated_at))
                                    .where(Feedback.period == period)).one()
            actions = session.exec(select(func.max(Action.updated_at))).one()
        return (*kpis, *stages, *feedback, actions)

    def get(self, engine: Engine, period: str, department: str | None, lang: str,
            build: Callable[[], Any]) -> Any:
        key = (period, department, lang)
        cached = self._entries.get(key)
        if cached is not None and time.monotonic() - self._checked.get(key, -1e9) < self.recheck:
            return cached[1]
        mark = self.fingerprint(engine, period)
        if cached is not None and cached[0] == mark:
            self._checked[key] = time.monotonic()
            return cached[1]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # the first request builds, the others wait for it instead of building too
            cached = self._entries.get(key)
            if cached is not None and cached[0] == mark:
                return cached[1]
            data = build()
            with self._guard:
                if len(self._entries) >= self.size:
                    self._entries.pop(next(iter(self._entries)))
                self._entries[key] = (mark, data)
                self._checked[key] = time.monotonic()
            return data
