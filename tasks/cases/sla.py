"""The SLA clock: deadlines counted in working time, in the project's time zone.

Pure (no database, no "now" of its own): a case's deadlines are computed from when the customer
answered, and whether one is near or past is asked with the caller's `now`, so tests never depend
on today. Working time is the configured hours of the configured weekdays, minus holidays, plus
make-up working days (调休). Wall-clock times are built in the zone for each day, so a day that
changes to or from summer time still counts its real working hours.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from cxloop.config import CasesConfig
from cxloop.models import as_utc
from cxloop.tasks.cases.lifecycle import OPEN_STATUSES

_MAX_DAYS = 3660  # a calendar with no working day at all must not loop forever


@dataclass(frozen=True)
class Calendar:
    tz: ZoneInfo
    start: time
    end: time
    weekdays: frozenset[int]
    holidays: frozenset[date]
    workdays: frozenset[date]

    @classmethod
    def of(cls, cfg: CasesConfig, tz: ZoneInfo) -> Calendar:
        start, end = (time.fromisoformat(t) for t in cfg.working_hours)
        return cls(tz, start, end, frozenset(cfg.working_days), frozenset(cfg.holidays),
                   frozenset(cfg.extra_workdays))

    def is_working_day(self, day: date) -> bool:
        if day in self.workdays:
            return True
        return day.isoweekday() in self.weekdays and day not in self.holidays

    def hours_per_day(self) -> float:
        return (datetime.combine(date.min, self.end) - datetime.combine(date.min, self.start)
                ).total_seconds() / 3600

    def _window(self, day: date) -> tuple[datetime, datetime]:
        """The day's working window as aware UTC instants (the zone's offset of that day)."""
        a = datetime.combine(day, self.start, tzinfo=self.tz).astimezone(UTC)
        b = datetime.combine(day, self.end, tzinfo=self.tz).astimezone(UTC)
        return a, b

    def _windows_from(self, moment: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Working windows (UTC) from the one holding or following `moment`, clipped to it."""
        moment = as_utc(moment)
        day = moment.astimezone(self.tz).date()
        for _ in range(_MAX_DAYS):
            if self.is_working_day(day):
                a, b = self._window(day)
                if b > moment:
                    yield max(a, moment), b
            day += timedelta(days=1)
        raise ValueError("the working calendar has no working time within ten years")

    def add(self, start: datetime, hours: float) -> datetime:
        """The moment `hours` of working time after `start` (UTC)."""
        left = timedelta(hours=hours)
        for a, b in self._windows_from(start):
            if b - a >= left:
                return a + left
            left -= b - a
        raise AssertionError("unreachable")

    def reach(self, start: datetime, hours: float) -> datetime:
        """The latest moment with at most `hours` of working time after `start`: a deadline is
        within `hours` of working time exactly when it is at or before this moment (working time
        only grows with the deadline). One moment per run, so the SLA scan asks the database for
        the cases due by then instead of asking `between` for every open case."""
        left = timedelta(hours=hours)
        for a, b in self._windows_from(start):
            if b - a > left:  # equal: the next window's start still adds no working time
                return a + left
            left -= b - a
        raise AssertionError("unreachable")

    def between(self, start: datetime, end: datetime) -> float:
        """Working hours from `start` to `end` (0 when `end` is not later)."""
        end = as_utc(end)
        total = timedelta()
        if end <= as_utc(start):
            return 0.0
        for a, b in self._windows_from(start):
            if a >= end:
                break
            total += min(b, end) - a
        return total.total_seconds() / 3600



@dataclass(frozen=True)
class Deadlines:
    contact_due: datetime
    close_due: datetime


def deadlines(cal: Calendar, cfg: CasesConfig, opened_at: datetime) -> Deadlines:
    """First contact within `first_contact_hours` working hours, closure within `close_days`
    working days (each the length of the working day)."""
    return Deadlines(cal.add(opened_at, cfg.first_contact_hours),
                     cal.add(opened_at, cfg.close_days * cal.hours_per_day()))


def watch(status: str, contact_due: datetime, close_due: datetime, escalated: list[str] | None
          ) -> datetime | None:
    """The earliest deadline whose reminder or escalation may still be owed (`followup_case.
    sla_watch`), None when none is left: first contact only while the case is new, each SLA until
    its one escalation. A case drops out of the SLA scan for good once both are escalated, and is
    read again only when this deadline comes within the reminder window. A later change of status
    only removes SLAs, so a stored watch is never later than the true one (a contacted case whose
    watch was its first-contact deadline is read once more, and gets its closure deadline)."""
    if status not in OPEN_STATUSES:
        return None
    done = escalated or []
    dues = [due for sla, due in (("contact", contact_due), ("close", close_due))
            if sla not in done and (sla != "contact" or status == "new")]
    return min(dues, key=as_utc) if dues else None


def state(cal: Calendar, due: datetime, now: datetime, remind_before_hours: float) -> str:
    """"ok", "due_soon" (within the reminder's working hours before the deadline) or "breached"."""
    if as_utc(now) >= as_utc(due):
        return "breached"
    if cal.between(now, due) <= remind_before_hours:
        return "due_soon"
    return "ok"


@dataclass(frozen=True)
class Breaches:
    contact: bool
    close: bool


def breaches(contact_due: datetime, close_due: datetime, contacted_at: datetime | None,
             closed_at: datetime | None, now: datetime) -> Breaches:
    """Which deadlines a case missed, by the follow-up KPIs' own rule (tasks/cases/kpis.py): the
    first contact came after its deadline, or the deadline passed - by `now`, or by the case's
    closure without a contact - with none; closure likewise."""
    def missed(due: datetime, done: datetime | None, stop: datetime) -> bool:
        return as_utc(done) > as_utc(due) if done is not None else as_utc(due) <= as_utc(stop)

    until = now if closed_at is None else closed_at
    return Breaches(missed(contact_due, contacted_at, until), missed(close_due, closed_at, now))
