"""The daily step that turns new responses into follow-up cases.

"New" is every stored response after the last one a previous run considered (`followup_run`
keeps the feedback id reached), so the daily flow re-uses the ordinary idempotent collect and
never looks at a row twice. A run is one transaction: cases opened, responses merged, re-survey
outcomes and the new watermark commit together or not at all, and a case's key (the response that
opened it) is unique, so neither a re-run nor a run killed half-way can open a duplicate.

Set-based (issue 19, item 8): the database hands over only the new responses that can matter -
those a rule may match (the rules as a WHERE clause, a superset the rules then decide exactly) and
those of customers awaiting a re-survey - 1,751 of 32,281 on the bench's day 12; decisions are made on
plain tuples, and the cases, their responses and events are written with one multi-row INSERT each,
`ON CONFLICT DO NOTHING` on the case key and the response (SQLite and PostgreSQL alike), so a
second run racing this one adds nothing twice either. An ORM object and flush per case cost ~2 ms
(bench/followup.py's profile, README "The daily follow-up run").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    exists,
    false,
    func,
    or_,
    true,
    update,
)
from sqlalchemy import select as core_select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from cxloop.config import CaseRuleConfig, Settings
from cxloop.db import session_scope
from cxloop.models import CaseEvent, CaseResponse, Feedback, FollowupCase, FollowupRun, as_utc
from cxloop.tasks.cases.lifecycle import OPEN_STATUSES
from cxloop.tasks.cases.rules import matching_rules, still_unhappy
from cxloop.tasks.cases.sla import Calendar, deadlines, watch

_FB: Table = Feedback.__table__  # type: ignore[attr-defined]
_FC: Table = FollowupCase.__table__  # type: ignore[attr-defined]
_CR: Table = CaseResponse.__table__  # type: ignore[attr-defined]
_CE: Table = CaseEvent.__table__  # type: ignore[attr-defined]
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


def _rule_clause(rule: CaseRuleConfig) -> ColumnElement[bool]:
    """`rule_matches` as SQL, loosened where SQL cannot decide: a topic condition needs the
    comment's sentiment and topics, which an unanalysed row (sentiment NULL) only gets in memory."""
    conds: list[ColumnElement[bool]] = []
    if rule.nps_max is not None:
        conds.append(_FB.c.nps <= rule.nps_max)  # NULL fails, as in rule_matches
    if rule.csat_max is not None:
        conds.append(_FB.c.csat <= rule.csat_max)
    if rule.complaint is not None:
        conds.append(_FB.c.is_complaint.is_(True) if rule.complaint
                     else or_(_FB.c.is_complaint.is_(None), _FB.c.is_complaint.is_(False)))
    if rule.topics:
        conds.append(or_(_FB.c.sentiment == "negative", _FB.c.sentiment.is_(None)))
    return and_(true(), *conds)


def _may_matter(rules: Sequence[CaseRuleConfig]) -> ColumnElement[bool]:
    """The new responses that can open, join or answer a case: consenting ones a rule may match,
    and any response of a customer whose contacted case awaits its re-survey score."""
    may_open = and_(_FB.c.contact_ok.is_(True), or_(false(), *(_rule_clause(r) for r in rules)))
    # Per new response through the index on the case's customer: the cost follows the day's
    # responses, not the ever-growing number of contacted cases no re-survey has answered.
    awaiting = exists().where(_FC.c.customer_id == _FB.c.customer_id, _FC.c.contacted_at.is_not(None),
                              _FC.c.resurvey_score.is_(None))
    return or_(may_open, awaiting)


def _new_rows(conn: Connection, rules: Sequence[CaseRuleConfig], after: int, limit_id: int | None
              ) -> tuple[int, int, list[dict[str, Any]]]:
    """(responses considered, the last one's id, the rows among them that can matter)."""
    scope = and_(_FB.c.id > after, _FB.c.quarantined.is_(False))
    if limit_id is not None:
        scope = and_(scope, _FB.c.id <= limit_id)
    count, last = conn.execute(core_select(func.count(), func.max(_FB.c.id)).where(scope)).one()
    query = core_select(*[_FB.c[c] for c in _COLUMNS]).where(scope, _may_matter(rules)).order_by(_FB.c.id)
    return int(count or 0), int(last or 0), [dict(r._mapping) for r in conn.execute(query)]


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


@dataclass
class _Case:
    """A case as the run sees it: one stored before (`id`), or one this run opens (`values`, its
    id known once inserted). Only what the decisions read and change."""

    key: str
    customer_id: str | None
    status: str
    opened_at: datetime
    contacted_at: datetime | None
    responses: int
    rules: list[str]
    id: int | None = None
    resurvey: dict[str, Any] | None = None  # resurvey_score, resurvey_at, outcome set by this run
    grown: bool = False  # a stored case that this run gave responses or rules
    values: dict[str, Any] | None = None
    opened_by: list[str] = field(default_factory=list)  # the rules of the response that opened it


def _cases_of(conn: Connection, customers: list[str]) -> dict[str, list[_Case]]:
    """The cases of these customers that a new response may join or answer (open, or awaiting a
    re-survey score), newest first."""
    out: dict[str, list[_Case]] = {}
    cols = (_FC.c.id, _FC.c.case_key, _FC.c.customer_id, _FC.c.status, _FC.c.opened_at, _FC.c.contacted_at,
            _FC.c.responses, _FC.c.rules)
    for start in range(0, len(customers), _IN):
        part = customers[start:start + _IN]
        query = (core_select(*cols).where(_FC.c.customer_id.in_(part), _FC.c.resurvey_score.is_(None))
                 .order_by(_FC.c.id.desc()))
        for r in conn.execute(query):
            out.setdefault(r.customer_id or "", []).append(
                _Case(r.case_key, r.customer_id, r.status, r.opened_at, r.contacted_at, r.responses,
                      list(r.rules or []), id=r.id))
    return out


def _insert(conn: Connection, table: Table, rows: list[dict[str, Any]], key: list[str],
            returning: tuple[Any, ...] = ()) -> list[Any]:
    """Multi-row INSERTs that skip rows whose `key` is already stored (the database decides, so a
    concurrent run cannot slip in between a check and the insert); the RETURNING rows of the new."""
    if not rows:
        return []
    insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
    stmt: Any = insert(table).on_conflict_do_nothing(index_elements=key)
    if not returning:
        conn.execute(stmt, rows)
        return []
    # One statement compiled once; SQLAlchemy sends it as multi-row INSERTs ("insertmanyvalues").
    return list(conn.execute(stmt.returning(*returning), rows).all())


def _update(conn: Connection, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """One executemany UPDATE by case id for many cases."""
    if not rows:
        return
    stmt = (update(_FC).where(_FC.c.id == bindparam("case_id"))
            .values({c: bindparam(f"new_{c}", type_=_FC.c[c].type) for c in columns}))
    conn.execute(stmt, [{"case_id": r["id"], **{f"new_{c}": r[c] for c in columns}} for r in rows])


def open_cases(settings: Settings, engine: Engine, now: datetime, *, up_to_id: int | None = None
               ) -> OpeningSummary:
    """Consider every response stored since the last run: open, merge, record re-survey outcomes.

    `up_to_id` bounds the run (the benchmark replays a month day by day with it)."""
    cfg = settings.cases
    cal = Calendar.of(cfg, settings.tz)
    window = timedelta(days=cfg.merge_window_days)
    summary = OpeningSummary()
    with session_scope(engine) as session:
        conn = session.connection()
        after = watermark(session)
        summary.considered, last, rows = _new_rows(conn, cfg.rules, after, up_to_id)
        summary.last_feedback_id = max(after, last)
        _with_analysis(settings, rows)
        customers = sorted({r["customer_id"] for r in rows if r["customer_id"]})
        by_customer = _cases_of(conn, customers)
        links: list[tuple[int, _Case]] = []
        opened: list[_Case] = []
        for row in rows:
            submitted = as_utc(row["submitted_at"])
            known = by_customer.get(row["customer_id"] or "", []) if row["customer_id"] else []
            for case in known:  # a re-survey: the first answer after the customer was contacted
                if (case.contacted_at is not None and case.resurvey is None
                        and as_utc(case.contacted_at) < submitted):
                    score = row["nps"] if row["nps"] is not None else row["csat"]
                    if score is not None:
                        outcome = "not_recovered" if still_unhappy(cfg.rules, row) else "recovered"
                        case.resurvey = {"resurvey_score": int(score), "resurvey_at": submitted,
                                         "outcome": outcome}
                        summary.resurveyed += 1
            matched = matching_rules(cfg.rules, row)
            if not matched:
                continue
            names = [r.name for r in matched]
            into = next((c for c in known if c.status in OPEN_STATUSES
                         and submitted - as_utc(c.opened_at) <= window), None)
            if into is not None:
                links.append((row["id"], into))
                into.responses += 1
                into.rules = list(dict.fromkeys([*into.rules, *names]))
                into.grown = into.id is not None
                summary.merged += 1
                continue
            dept, queue = route(settings, row, matched)
            due = deadlines(cal, cfg, submitted)
            themes = [t for t in str(row.get("themes") or "").split(",") if t]
            case = _Case(f"{row['source']}:{row['response_id']}", row["customer_id"], "new", submitted,
                         None, 1, names, opened_by=names)
            case.values = {"customer_id": row["customer_id"], "department": dept, "queue": queue,
                           "status": "new", "period": row["period"], "opened_at": submitted,
                           "contact_due": due.contact_due, "close_due": due.close_due,
                           "root_cause": themes[0] if themes else None, "reminded": [], "escalated": [],
                           "sla_watch": watch("new", due.contact_due, due.close_due, [])}
            opened.append(case)
            links.append((row["id"], case))
            if row["customer_id"]:
                by_customer.setdefault(row["customer_id"], []).insert(0, case)
        _store(conn, opened, links, [c for cs in by_customer.values() for c in cs if c.id is not None], now)
        summary.opened = sorted(c.id for c in opened if c.id is not None)
        conn.execute(FollowupRun.__table__.insert().values(  # type: ignore[attr-defined]
            day=now.astimezone(settings.tz).date().isoformat(), finished_at=now,
            last_feedback_id=summary.last_feedback_id, considered=summary.considered,
            opened=len(summary.opened), merged=summary.merged))
    return summary


def _store(conn: Connection, opened: list[_Case], links: list[tuple[int, _Case]], stored: list[_Case],
           at: datetime) -> None:
    """Write the run's decisions set by set, stamped with the run's moment (`at`: a replayed or
    back-dated run records when it ran, not the wall clock). A case key already stored (a run
    racing this one) is skipped with its responses and event: that run records them."""
    new = {c.key: c for c in opened}
    rows = [{"case_key": c.key, "responses": c.responses, "rules": c.rules, "created_at": at,
             **(c.values or {})} for c in opened]
    for case_id, key in _insert(conn, _FC, rows, ["case_key"], (_FC.c.id, _FC.c.case_key)):
        new[key].id = case_id
    opened[:] = [c for c in opened if c.id is not None]
    _insert(conn, _CR, [{"feedback_id": fid, "case_id": c.id} for fid, c in links if c.id is not None],
            ["feedback_id"])
    events = [{"case_id": c.id, "at": at, "by": "cxloop", "from_status": None, "to_status": "new",
               "note": f"opened by rule(s) {', '.join(c.opened_by)}"} for c in opened]
    if events:
        conn.execute(_CE.insert(), events)
    _update(conn, [{"id": c.id, "responses": c.responses, "rules": c.rules} for c in stored if c.grown],
            ["responses", "rules"])
    _update(conn, [{"id": c.id, **c.resurvey} for c in stored if c.resurvey is not None],
            ["resurvey_score", "resurvey_at", "outcome"])
