"""The daily step that turns new responses into follow-up cases.

"New" is every stored response after the last one a previous run considered (`followup_run`
keeps the feedback id reached), so the daily flow re-uses the ordinary idempotent collect and
never looks at a row twice. A run is one transaction: cases opened, responses merged, re-survey
outcomes and the new watermark commit together or not at all, and a case's key (the response that
opened it) is unique, so neither a re-run nor a run killed half-way can open a duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, func
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from cxloop.config import CaseRuleConfig, Settings
from cxloop.db import session_scope
from cxloop.models import CaseEvent, CaseResponse, Feedback, FollowupCase, FollowupRun
from cxloop.tasks.cases.lifecycle import OPEN_STATUSES
from cxloop.tasks.cases.rules import matching_rules, still_unhappy
from cxloop.tasks.cases.sla import Calendar, deadlines

_FB: Table = Feedback.__table__  # type: ignore[attr-defined]
_COLUMNS = ("id", "source", "response_id", "period", "submitted_at", "department", "journey_stage",
            "touchpoint", "channel", "customer_id", "nps", "csat", "is_complaint", "contact_ok",
            "comment", "language", "sentiment", "themes")
_IN = 1000


@dataclass
class OpeningSummary:
    considered: int = 0
    opened: list[int] = field(default_factory=list)
    merged: int = 0
    resurveyed: int = 0
    last_feedback_id: int = 0

    def counts(self) -> dict[str, int]:
        return {"considered": self.considered, "opened": len(self.opened), "merged": self.merged,
                "resurveyed": self.resurveyed}


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def route(settings: Settings, row: dict[str, Any], rules: Sequence[CaseRuleConfig]) -> tuple[str, str | None]:
    """(department, queue): the response's department, else the owner of its touchpoint, journey
    stage, channel or comment topic (the monthly loop's ownership), else the default owner; the
    queue of the first matching rule that names one."""
    dept = row.get("department")
    if not dept:
        themes = [t for t in str(row.get("themes") or "").split(",") if t]
        for fld, value in (("touchpoint", row.get("touchpoint")), ("journey_stage", row.get("journey_stage")),
                           ("channel", row.get("channel")), *(("topic", t) for t in themes)):
            dept = settings.owner_of(fld, value) if value else None
            if dept:
                break
    queue = next((r.queue for r in rules if r.queue), None)
    return str(dept or settings.actions.default_owner), queue


def watermark(session: Session) -> int:
    run: Table = FollowupRun.__table__  # type: ignore[attr-defined]
    return int(session.connection().execute(core_select(func.max(run.c.last_feedback_id))).scalar() or 0)


def _new_rows(session: Session, after: int, limit_id: int | None) -> list[dict[str, Any]]:
    query = core_select(*[_FB.c[c] for c in _COLUMNS]).where(_FB.c.id > after, _FB.c.quarantined.is_(False))
    if limit_id is not None:
        query = query.where(_FB.c.id <= limit_id)
    return [dict(r._mapping) for r in session.connection().execute(query.order_by(_FB.c.id))]


def _with_analysis(settings: Settings, rows: list[dict[str, Any]]) -> None:
    """Topic rules need a comment's sentiment and topics; rows the monthly comments stage has not
    analysed yet are analysed here (in memory: that stage still stores its own results)."""
    if not any(r.topics for r in settings.cases.rules):
        return
    todo = [r for r in rows if r["comment"] and r["sentiment"] is None and r.get("contact_ok")]
    if not todo:
        return
    from cxloop.tasks.comments import analyse_texts

    results = analyse_texts([r["comment"] for r in todo], settings, declared=[r["language"] for r in todo])
    for row, res in zip(todo, results, strict=True):
        row["sentiment"], row["themes"] = res.sentiment, ",".join(res.themes)


def _cases_of(session: Session, customers: list[str]) -> dict[str, list[FollowupCase]]:
    """The cases of these customers that a new response may join or answer (open, or awaiting a
    re-survey score), newest first."""
    out: dict[str, list[FollowupCase]] = {}
    for start in range(0, len(customers), _IN):
        part = customers[start:start + _IN]
        query = (select(FollowupCase).where(col(FollowupCase.customer_id).in_(part))
                 .where(col(FollowupCase.resurvey_score).is_(None))
                 .order_by(col(FollowupCase.id).desc()))
        for case in session.exec(query).all():
            out.setdefault(case.customer_id or "", []).append(case)
    return out


def open_cases(settings: Settings, engine: Engine, now: datetime, *, up_to_id: int | None = None
               ) -> OpeningSummary:
    """Consider every response stored since the last run: open, merge, record re-survey outcomes.

    `up_to_id` bounds the run (the benchmark replays a month day by day with it)."""
    cfg = settings.cases
    cal = Calendar.of(cfg, settings.tz)
    window = timedelta(days=cfg.merge_window_days)
    summary = OpeningSummary()
    with session_scope(engine) as session:
        after = watermark(session)
        rows = _new_rows(session, after, up_to_id)
        summary.considered = len(rows)
        summary.last_feedback_id = max([after, *(r["id"] for r in rows)])
        _with_analysis(settings, rows)
        customers = sorted({r["customer_id"] for r in rows if r["customer_id"]})
        by_customer = _cases_of(session, customers)
        for row in rows:
            submitted = _aware(row["submitted_at"])
            known = by_customer.get(row["customer_id"] or "", []) if row["customer_id"] else []
            for case in known:  # a re-survey: the first answer after the customer was contacted
                if (case.contacted_at is not None and case.resurvey_score is None
                        and _aware(case.contacted_at) < submitted):
                    score = row["nps"] if row["nps"] is not None else row["csat"]
                    if score is not None:
                        case.resurvey_score, case.resurvey_at = int(score), submitted
                        case.outcome = "not_recovered" if still_unhappy(cfg.rules, row) else "recovered"
                        session.add(case)
                        summary.resurveyed += 1
            matched = matching_rules(cfg.rules, row)
            if not matched:
                continue
            names = [r.name for r in matched]
            into = next((c for c in known if c.status in OPEN_STATUSES and c.id is not None
                         and submitted - _aware(c.opened_at) <= window), None)
            if into is not None:
                session.add(CaseResponse(feedback_id=row["id"], case_id=into.id or 0))
                into.responses += 1
                into.rules = list(dict.fromkeys([*into.rules, *names]))
                session.add(into)
                summary.merged += 1
                continue
            dept, queue = route(settings, row, matched)
            due = deadlines(cal, cfg, submitted)
            themes = [t for t in str(row.get("themes") or "").split(",") if t]
            case = FollowupCase(case_key=f"{row['source']}:{row['response_id']}",
                                customer_id=row["customer_id"], department=dept, queue=queue,
                                period=row["period"], rules=names, opened_at=submitted,
                                contact_due=due.contact_due, close_due=due.close_due,
                                root_cause=themes[0] if themes else None)
            session.add(case)
            session.flush()
            session.add(CaseResponse(feedback_id=row["id"], case_id=case.id or 0))
            session.add(CaseEvent(case_id=case.id or 0, by="cxloop", to_status="new",
                                  note=f"opened by rule(s) {', '.join(names)}"))
            summary.opened.append(case.id or 0)
            if row["customer_id"]:
                by_customer.setdefault(row["customer_id"], []).insert(0, case)
        session.add(FollowupRun(day=now.astimezone(settings.tz).date().isoformat(), finished_at=now,
                                last_feedback_id=summary.last_feedback_id, considered=summary.considered,
                                opened=len(summary.opened), merged=summary.merged))
    return summary



