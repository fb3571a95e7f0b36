"""Issue 19, item 3: the SLA clock counts working time in the project's zone, to the minute -
across the summer-time switches (Europe/Berlin) and without them (Asia/Shanghai), over weekends,
holidays and make-up working days (调休). Pure: every "now" is given."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cxloop.config import CasesConfig
from cxloop.tasks.cases.sla import Breaches, Calendar, breaches, deadlines, state

BERLIN = ZoneInfo("Europe/Berlin")
SHANGHAI = ZoneInfo("Asia/Shanghai")


def cal(tz: ZoneInfo, **cfg: Any) -> tuple[Calendar, CasesConfig]:
    c = CasesConfig(**cfg)
    return Calendar.of(c, tz), c


def local(tz: ZoneInfo, y: int, m: int, d: int, hh: int, mm: int) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=tz)


def utc(y: int, m: int, d: int, hh: int, mm: int) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=UTC)


@pytest.mark.parametrize(("opened", "due"), [
    # Friday 17:00 CET before the March switch (Sunday 29th): 1 h Friday, 9 + 9 h Monday and
    # Tuesday, 5 h Wednesday -> 14:00 CEST, which is 12:00 UTC (13:00 UTC the week before).
    (local(BERLIN, 2026, 3, 27, 17, 0), utc(2026, 4, 1, 12, 0)),
    # Friday 17:00 CEST before the October switch (Sunday 25th) -> Wednesday 14:00 CET = 13:00 UTC.
    (local(BERLIN, 2026, 10, 23, 17, 0), utc(2026, 10, 28, 13, 0)),
    # An ordinary week, no switch: Friday 17:00 CET -> Wednesday 14:00 CET.
    (local(BERLIN, 2026, 2, 6, 17, 0), utc(2026, 2, 11, 13, 0)),
])
def test_first_contact_deadline_across_the_summer_time_switches(opened: datetime, due: datetime) -> None:
    calendar, cfg = cal(BERLIN, first_contact_hours=24)
    assert deadlines(calendar, cfg, opened.astimezone(UTC)).contact_due == due
    assert calendar.between(opened, due) == pytest.approx(24.0)


def test_a_working_day_that_switches_counts_its_real_hours() -> None:
    """Working 01:00-04:00 on every day: the spring switch day has 2 real hours (02:00-03:00 does
    not exist), the autumn one 4 (02:00-03:00 happens twice)."""
    calendar, _ = cal(BERLIN, working_hours=("01:00", "04:00"), working_days=[1, 2, 3, 4, 5, 6, 7])

    def day(d: date) -> float:
        return calendar.between(local(BERLIN, d.year, d.month, d.day, 0, 0),
                                local(BERLIN, d.year, d.month, d.day, 12, 0))

    assert [day(date(2026, 3, 28)), day(date(2026, 3, 29)), day(date(2026, 3, 30))] == [3.0, 2.0, 3.0]
    assert [day(date(2026, 10, 24)), day(date(2026, 10, 25)), day(date(2026, 10, 26))] == [3.0, 4.0, 3.0]
    # 3 working hours from Sunday 29 March 00:00 CET: 2 that day, 1 on Monday -> 02:00 CEST.
    assert calendar.add(local(BERLIN, 2026, 3, 29, 0, 0), 3) == local(BERLIN, 2026, 3, 30, 2, 0)


def test_shanghai_friday_evening_waits_for_monday_to_the_minute() -> None:
    calendar, cfg = cal(SHANGHAI, first_contact_hours=2.5, close_days=2)
    opened = local(SHANGHAI, 2026, 10, 16, 20, 13)  # Friday 20:13, after hours
    due = deadlines(calendar, cfg, opened.astimezone(UTC))
    assert due.contact_due == local(SHANGHAI, 2026, 10, 19, 11, 30)  # Monday 09:00 + 2 h 30
    assert due.close_due == local(SHANGHAI, 2026, 10, 20, 18, 0)  # two 9-hour working days
    # 40 minutes on Friday, the rest on Monday.
    opened = local(SHANGHAI, 2026, 10, 16, 17, 20)
    assert deadlines(calendar, cfg, opened).contact_due == local(SHANGHAI, 2026, 10, 19, 10, 50)
    assert calendar.between(opened, local(SHANGHAI, 2026, 10, 19, 10, 50)) == pytest.approx(2.5)


def test_national_day_holidays_and_a_make_up_saturday() -> None:
    """Wednesday 30 September 17:00: 1 h, then the 1-7 October holidays; Thursday 8 and Friday 9
    October 9 h each, and Saturday 10 October is a make-up working day: 5 h more -> 14:00."""
    holidays = [date(2026, 10, d) for d in range(1, 8)]
    calendar, cfg = cal(SHANGHAI, first_contact_hours=24, holidays=holidays,
                        extra_workdays=[date(2026, 10, 10)])
    opened = local(SHANGHAI, 2026, 9, 30, 17, 0)
    assert deadlines(calendar, cfg, opened).contact_due == local(SHANGHAI, 2026, 10, 10, 14, 0)
    assert not calendar.is_working_day(date(2026, 10, 5)) and calendar.is_working_day(date(2026, 10, 10))
    # Without the make-up day the deadline moves to Monday 12 October 14:00.
    plain, cfg2 = cal(SHANGHAI, first_contact_hours=24, holidays=holidays)
    assert deadlines(plain, cfg2, opened).contact_due == local(SHANGHAI, 2026, 10, 12, 14, 0)
    # A case opened on a holiday starts counting on the next working day.
    assert calendar.add(local(SHANGHAI, 2026, 10, 3, 11, 0), 1) == local(SHANGHAI, 2026, 10, 8, 10, 0)


def test_reminder_and_breach_states_count_working_time() -> None:
    calendar, _ = cal(SHANGHAI)
    due = local(SHANGHAI, 2026, 10, 19, 10, 0)  # Monday 10:00
    # Friday 12:00: 6 h Friday + 1 h Monday ahead -> more than the 4 h reminder window.
    assert state(calendar, due, local(SHANGHAI, 2026, 10, 16, 12, 0), 4) == "ok"
    # Friday 17:00: 1 h + 1 h of working time left, although 65 wall-clock hours remain.
    assert state(calendar, due, local(SHANGHAI, 2026, 10, 16, 17, 0), 4) == "due_soon"
    assert state(calendar, due, local(SHANGHAI, 2026, 10, 19, 9, 59), 4) == "due_soon"
    assert state(calendar, due, due, 4) == "breached"  # the deadline minute itself
    # Stored times come back naive from SQLite: they are read as UTC.
    naive = due.astimezone(UTC).replace(tzinfo=None)
    assert state(calendar, naive, local(SHANGHAI, 2026, 10, 19, 10, 1), 4) == "breached"


def test_between_is_zero_backwards_and_outside_hours() -> None:
    calendar, _ = cal(SHANGHAI)
    a = local(SHANGHAI, 2026, 10, 17, 10, 0)  # Saturday
    assert calendar.between(a, local(SHANGHAI, 2026, 10, 18, 23, 0)) == 0.0  # the whole weekend
    assert calendar.between(local(SHANGHAI, 2026, 10, 19, 12, 0), local(SHANGHAI, 2026, 10, 19, 11, 0)) == 0.0
    assert calendar.between(local(SHANGHAI, 2026, 10, 19, 18, 30), local(SHANGHAI, 2026, 10, 20, 9, 0)) == 0.0


def test_missed_deadlines_by_the_kpis_rule() -> None:
    """`breaches` (the case pages' marks) agrees with `case_contact_sla`: late, or passed without it."""
    t = [datetime(2026, 10, d, 2, 0, tzinfo=UTC) for d in range(10, 16)]  # t[0] < t[1] < ...
    contact_due, close_due = t[1], t[3]
    assert breaches(contact_due, close_due, None, None, t[0]) == Breaches(False, False)
    assert breaches(contact_due, close_due, None, None, t[1]) == Breaches(True, False)  # the minute itself
    # called on time and never closed; called late and closed on time
    assert breaches(contact_due, close_due, t[0], None, t[5]) == Breaches(False, True)
    assert breaches(contact_due, close_due, t[2], t[3], t[5]) == Breaches(True, False)
    # closed (unreachable) without a contact: the contact deadline counts up to the closure
    assert breaches(contact_due, close_due, None, t[0], t[5]) == Breaches(False, False)
    assert breaches(contact_due, close_due, None, t[4], t[5]) == Breaches(True, True)
    naive = [x.replace(tzinfo=None) for x in (contact_due, close_due)]  # as SQLite gives them back
    assert breaches(naive[0], naive[1], None, None, t[2]) == Breaches(True, False)
