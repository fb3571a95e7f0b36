"""The report's "Closing the loop with customers" section (issue 19, item 6): the follow-up case
KPIs of the page's scope with n and interval, the period's cases by status, and the SLA breaches.

Aggregates and case numbers only: a report goes to people who are not the cases' owners, so no
contact detail, customer id or comment is read here at all (contact details are for the case's
owner and admins, `tasks.cases.contacts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlmodel import Session

from cxloop.config import Settings
from cxloop.models import FollowupCase, as_utc
from cxloop.tasks.report.data import KpiCell
from cxloop.tasks.report.formatting import _domain
from cxloop.tasks.report.scorecard import _dept_name, _kpi_rows
from cxloop.vocabulary import CASE_KPIS, CASE_STATUSES, case_status_label, kpi_label

_FC = FollowupCase.__table__  # type: ignore[attr-defined]
BREACHES_SHOWN = 20


@dataclass
class CaseKpi:
    kpi: str
    label: str
    cell: KpiCell


@dataclass
class CaseBreach:
    id: int
    department: str
    sla: list[str]  # "contact", "close": the deadlines escalated
    status: str
    opened: str  # the day, in the project's time zone


@dataclass
class CasesSection:
    opened: int
    kpis: list[CaseKpi]
    statuses: list[tuple[str, str, int]]  # (status, label, count)
    breached_contact: int
    breached_close: int
    breaches: list[CaseBreach] = field(default_factory=list)  # the first BREACHES_SHOWN, by id


def cases_section(session: Session, settings: Settings, period: str, department: str | None,
                  lang: str) -> CasesSection | None:
    """The section of one page; None when the period (the department) had no case - the page
    then shows nothing rather than 0/0."""
    where = [_FC.c.period == period]
    if department is not None:
        where.append(_FC.c.department == department)
    counts = dict(session.execute(select(_FC.c.status, func.count()).where(*where)
                                  .group_by(_FC.c.status)).all())
    if not counts:
        return None
    scope, value = ("department", department) if department else ("overall", "all")
    stored = {r.kpi: r for r in _kpi_rows(session, [period], CASE_KPIS, scope, value)}
    kpis = [CaseKpi(k, kpi_label(k, lang), KpiCell.of(stored[k], *_domain(k, [stored[k].value])))
            for k in CASE_KPIS if k in stored]
    statuses = [(s, case_status_label(s, lang), int(counts.get(s, 0))) for s in CASE_STATUSES]
    statuses += [(s, s, int(c)) for s, c in sorted(counts.items()) if s not in CASE_STATUSES]
    escalated = session.execute(select(_FC.c.id, _FC.c.department, _FC.c.escalated, _FC.c.status,
                                       _FC.c.opened_at).where(*where).order_by(_FC.c.id)).all()
    breaches = [r for r in escalated if r.escalated]
    tz = settings.tz
    return CasesSection(
        opened=sum(int(c) for c in counts.values()), kpis=kpis, statuses=statuses,
        breached_contact=sum(1 for r in breaches if "contact" in r.escalated),
        breached_close=sum(1 for r in breaches if "close" in r.escalated),
        breaches=[CaseBreach(int(r.id), _dept_name(settings, r.department), list(r.escalated),
                             case_status_label(r.status, lang),
                             _local_day(r.opened_at, tz)) for r in breaches[:BREACHES_SHOWN]])


def _local_day(ts: datetime, tz: ZoneInfo) -> str:
    aware = as_utc(ts)
    return "" if aware is None else aware.astimezone(tz).date().isoformat()
