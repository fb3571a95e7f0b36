"""The corrective actions a page lists, with their re-measurement and what they explain."""

from __future__ import annotations

from collections import Counter
from datetime import date

from sqlalchemy import select
from sqlmodel import Session, col

from cxloop.config import Settings
from cxloop.models import (
    Action,
    ActionEvent,
    Measurement,
)
from cxloop.periods import period_end_date
from cxloop.tasks.actions import is_overdue
from cxloop.tasks.lifecycle import OPEN_STATUSES
from cxloop.tasks.report.data import ActionRow
from cxloop.tasks.report.formatting import fmt, kpi_digits
from cxloop.tasks.report.scorecard import _dept_name, _value_label
from cxloop.vocabulary import (
    scope_label,
)


def _actions(session: Session, settings: Settings, period: str, department: str | None,
             lang: str) -> tuple[dict[str, int], list[ActionRow]]:
    stmt = select(Action).where(col(Action.opened_period) <= period)
    if department is not None:
        stmt = stmt.where(col(Action.department) == department)
    actions = list(session.scalars(stmt))
    ids = [a.id for a in actions]
    events = list(session.scalars(select(ActionEvent).where(
        col(ActionEvent.action_id).in_(ids), col(ActionEvent.period) == period))) if ids else []
    measurements = list(session.scalars(select(Measurement).where(
        col(Measurement.action_id).in_(ids), col(Measurement.period) <= period))) if ids else []
    latest: dict[int, Measurement] = {}
    for m in sorted(measurements, key=lambda m: m.period):
        latest[m.action_id] = m
    escalated = {e.action_id for e in events if e.to_status == "escalated"}
    verified = {e.action_id for e in events if e.to_status == "verified"}
    verified |= {a.id or 0 for a in actions if a.status == "verified" and a.closed_period == period}
    end = period_end_date(period)
    rows, counts = [], Counter[str]()
    for a in sorted(actions, key=lambda a: (a.status not in OPEN_STATUSES, a.due or date.max, a.id or 0)):
        is_open = a.status in OPEN_STATUSES
        opened = a.opened_period == period
        overdue = _is_overdue(a, end)
        counts["opened"] += opened
        counts["open"] += is_open
        counts["overdue"] += overdue
        counts["verified"] += a.id in verified
        counts["escalated"] += a.id in escalated
        if not (is_open or opened or a.id in verified or a.closed_period == period):
            continue
        last = latest.get(a.id or 0)
        eff, lo, hi = (None, None, None)
        if last is not None:
            eff, lo, hi = ((last.effect, last.effect_ci_low, last.effect_ci_high) if last.effect is not None
                           else (last.change, last.change_ci_low, last.change_ci_high))
        dept = _dept_name(settings, a.department)
        head = a.head or (settings.departments[a.department].head if a.department in settings.departments
                          else "")
        rows.append(ActionRow(
            id=a.id or 0, kpi=a.kpi, scope=f"{scope_label(a.scope, lang)}: "
            f"{_value_label(settings, a.scope, a.scope_value, lang)}",
            department=dept, owner=head or dept, status=a.status, severity=a.severity,
            opened_period=a.opened_period, due=a.due, overdue=overdue,
            baseline=fmt(a.kpi, a.baseline_value),
            effect_text=(f"{eff:+.{kpi_digits(a.kpi, eff)}f}" if eff is not None else "–"),
            effect_ci=(f"{lo:+.{kpi_digits(a.kpi, lo)}f} … {hi:+.{kpi_digits(a.kpi, hi)}f}"
                       if lo is not None and hi is not None else ""),
            verdict=last.verdict if last else "", measured_period=last.period if last else "",
            context=_context(settings, a, period, lang)))
    keys = ("opened", "open", "overdue", "verified", "escalated")
    return {k: int(counts[k]) for k in keys}, rows


def _context(settings: Settings, action: Action, period: str, lang: str) -> list[str]:
    """The broader results this action's scope explains in `period` (tasks.kpis.decisions), in words."""
    entry = next((e for e in action.evidence or [] if e.get("period") == period), None) or {}
    return [f"{scope_label(c['scope'], lang)}: "
            f"{_value_label(settings, c['scope'], c['scope_value'], lang)} {fmt(c['kpi'], c.get('value'))}"
            for c in entry.get("context") or []]


def _is_overdue(action: Action, on: date) -> bool:
    """One definition with `cxloop actions` and the digests (tasks.actions.is_overdue): open, not
    reported done, and due before the end of the cycle."""
    return is_overdue(action, on)
