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
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from cxloop.config import Settings
from cxloop.models import Action, ActionEvent, CommentAnalysis, CycleStage, Feedback, ImportRecord, KpiResult
from cxloop.tasks import lifecycle
from cxloop.tasks.actions import is_overdue, parse_statuses
from cxloop.tasks.notify.items import (
    SEVERITY_LABELS,
    STATUS_LABELS,
    VERDICT_LABELS,
    scope_value_label,
    translated,
)
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
        "where": scope_value_label(settings, action.scope, action.scope_value, lang),
        "status": translated(STATUS_LABELS.get(action.status, action.status), lang),
        "severity": translated(SEVERITY_LABELS.get(action.severity, action.severity), lang),
        "overdue": is_overdue(action, today),
        "last_value": last.get("value"),
        "last_period": last.get("period"),
    }


def verdict_label(verdict: str, lang: str) -> str:
    return translated(VERDICT_LABELS.get(verdict, verdict), lang)


class ReportCache:
    """The report's data - and pages made from it - per (period, department, language, part),
    rebuilt only when the data changes. Building the data reads every response of the month
    (pandas, seconds); the KPIs, comments and themes it shows change only when a cycle stage runs
    or an action moves, so a page view must not pay for it again, nor for rendering its charts.
    One lock per key: twenty heads opening the dashboard at once build it once. The data's stamp
    is re-read at most every `recheck` seconds, by one request while the others are served the
    entry they have, so a page may lag a cycle stage by that."""

    def __init__(self, size: int = 64, recheck: float = 5.0) -> None:
        self.size, self.recheck = size, recheck
        self._entries: dict[tuple[str, str | None, str, str], tuple[tuple[Any, ...], Any]] = {}
        self._checked: dict[tuple[str, str | None, str, str], float] = {}
        self._locks: dict[tuple[str, str | None, str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    @staticmethod
    def fingerprint(engine: Engine, period: str) -> tuple[Any, ...]:
        """A cheap stamp of what the report shows, well under a millisecond on both databases: the
        largest ids (primary keys, so no scan) of KPI rows, responses, imports and action history -
        every move and note of an action is an `ActionEvent`, every import a record - and the
        period's stage times and comment analysis (small tables, looked up by period), which move
        whenever a stage rewrites the period in place."""
        def top(column: Any) -> Any:
            return select(func.max(column)).scalar_subquery()

        with Session(engine) as session:
            ids = session.connection().execute(sa_select(top(KpiResult.id), top(Feedback.id),
                                                         top(ImportRecord.id), top(ActionEvent.id),
                                                         top(Action.id))).one()
            stages = session.exec(select(func.count(), func.max(CycleStage.finished_at))
                                  .where(CycleStage.period == period)).one()
            analysed = session.exec(select(CommentAnalysis.analysed_at)
                                    .where(CommentAnalysis.period == period)).first()
        return (*ids, *stages, analysed)

    def get(self, engine: Engine, period: str, department: str | None, lang: str,
            build: Callable[[], Any], part: str = "report") -> Any:
        key = (period, department, lang, part)
        cached = self._entries.get(key)
        if cached is not None:
            now = time.monotonic()
            with self._guard:  # one request re-reads the stamp; the others keep the entry meanwhile
                due = now - self._checked.get(key, -1e9) >= self.recheck
                if due:
                    self._checked[key] = now
            if not due:
                return cached[1]
        mark = self.fingerprint(engine, period)
        if cached is not None and cached[0] == mark:
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
