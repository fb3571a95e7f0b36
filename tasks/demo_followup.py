"""The demo's follow-up month: the daily run replayed at 07:00 each morning of the month the survey
started asking for consent (and on, until every case's deadlines have passed), with the departments
working their cases between runs.

The runs' moments are fixed (07:00 in the project's zone on each day after a day of answers), and
what each department does with a case - called within hours, called late, or not reached - is
drawn from a stream seeded by the case's key, so the same demo tells the same story on any date.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from cxloop.config import Settings
from cxloop.db import session_scope
from cxloop.models import Feedback, FollowupCase, as_utc
from cxloop.periods import period_bounds
from cxloop.tasks.cases.daily import run_day
from cxloop.tasks.cases.lifecycle import transition

NOTES = {"contacted": "已电话回访，客户说明了情况", "resolved": "已补发/退款，客户表示接受",
         "unreachable": "三次致电未接通"}


@dataclass
class FollowupStory:
    """What the replayed month did, for the demo's story."""

    runs: int = 0
    opened: int = 0
    merged: int = 0
    notices: int = 0
    reminders: int = 0
    escalations: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


def _plan(seed: int, key: str) -> tuple[str, float, float]:
    """What the department does with one case: (fate, hours after the run that announced it until
    the call, days from the call until it is closed)."""
    rng = random.Random(f"{seed}:case:{key}")
    u = rng.random()
    if u < 0.72:
        return "resolved", rng.uniform(1, 8), rng.uniform(0.5, 3)
    if u < 0.84:
        return "late", rng.uniform(30, 80), rng.uniform(1, 4)
    if u < 0.92:
        return "unreachable", rng.uniform(50, 75), 0.0
    return "waiting", 0.0, 0.0  # still not called when the month's report is made


def _work_cases(engine: Engine, now: datetime, seed: int, heads: dict[str, str]) -> None:
    """The departments' calls and closures that happened before `now`, each at its own moment."""
    with session_scope(engine) as s:
        cases = s.exec(select(FollowupCase).where(col(FollowupCase.status).in_(["new", "contacted"]))
                       .order_by(col(FollowupCase.id))).all()
        for case in cases:
            fate, call_after, close_after = _plan(seed, case.case_key)
            announced = as_utc(case.created_at)
            by = heads.get(case.department, case.department)
            if case.status == "new" and fate == "unreachable":
                at = announced + timedelta(hours=call_after)
                if at <= now:
                    transition(s, case, "unreachable", by=by, note=NOTES["unreachable"], at=at)
                continue
            if case.status == "new" and fate in ("resolved", "late"):
                at = announced + timedelta(hours=call_after)
                if at <= now:
                    transition(s, case, "contacted", by=by, note=NOTES["contacted"], at=at)
            if case.status == "contacted" and case.contacted_at is not None:
                at = as_utc(case.contacted_at) + timedelta(days=close_after)
                if at <= now:
                    transition(s, case, "resolved", by=by, note=NOTES["resolved"], at=at)



def _deadline_ahead(engine: Engine, period: str, now: datetime) -> bool:
    """Whether an open case of `period` still has its closure deadline (its last) after `now`."""
    with Session(engine) as s:
        dues = s.exec(select(FollowupCase.close_due).where(col(FollowupCase.period) == period,
                                                          col(FollowupCase.status).in_(["new", "contacted"]))
                      ).all()
    return any(as_utc(d) > now for d in dues)


def replay_followup(settings: Settings, engine: Engine, period: str, seed: int) -> FollowupStory:
    """Run the daily follow-up at 07:00 on each morning after a day of `period` (its answers already
    collected), each run seeing only the answers given before it, as the schedule would have."""
    story = FollowupStory()
    heads = {d: (cfg.head or d) for d, cfg in settings.departments.items()}
    start, end = period_bounds(period, settings.tz)
    morning = datetime.combine(start.astimezone(settings.tz).date() + timedelta(days=1), time(7),
                               tzinfo=settings.tz)
    with Session(engine) as s:
        consenting = s.exec(select(Feedback.id, Feedback.submitted_at)
                            .where(col(Feedback.period) == period, col(Feedback.contact_ok).is_(True))
                            .order_by(col(Feedback.id))).all()
    # Every morning of the month, then on until no open case has a deadline ahead (at most three
    # weeks): the month's follow-up KPIs are then decided, whatever today's date when they are read.
    while morning <= end + timedelta(days=1) or (
            morning <= end + timedelta(days=21) and _deadline_ahead(engine, period, morning.astimezone(UTC))):
        now = morning.astimezone(UTC)
        _work_cases(engine, now, seed, heads)
        before = [fid for fid, at in consenting if fid is not None and as_utc(at) < now]
        out = run_day(settings, engine, now, collect=False, up_to_id=max(before, default=0))
        story.runs += 1
        story.opened += out["opened"]
        story.merged += out["merged"]
        story.notices += out["notices"]
        story.reminders += out.get("reminders", 0)
        story.escalations += out.get("escalations", 0)
        morning += timedelta(days=1)
    with Session(engine) as s:
        story.by_status = dict(s.exec(select(FollowupCase.status, func.count())
                                      .where(col(FollowupCase.period) == period)
                                      .group_by(col(FollowupCase.status))).all())
    return story
