"""Cycle periods are calendar months named "YYYY-MM", bounded in the project time zone."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

_PERIOD = re.compile(r"^(\d{4})-(\d{2})$")


def parse_period(text: str) -> str:
    """Validate "YYYY-MM"; raise ValueError with the accepted form otherwise."""
    m = _PERIOD.match(text.strip())
    if m is None:
        raise ValueError(f"period {text!r} is not of the form YYYY-MM (e.g. 2026-10)")
    if not 1 <= int(m.group(2)) <= 12:
        raise ValueError(f"period {text!r}: month {m.group(2)} is not 01-12 (YYYY-MM, e.g. 2026-10)")
    return text.strip()


def period_bounds(period: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of the month in UTC, with the month's edges taken in the project time zone."""
    year, month = (int(x) for x in parse_period(period).split("-"))
    start = datetime(year, month, 1, tzinfo=tz)
    nxt = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
    return start.astimezone(UTC), nxt.astimezone(UTC)


def period_end_date(period: str) -> date:
    """Last calendar day of the period: due dates count from here, so backfills match live runs."""
    year, month = (int(x) for x in parse_period(period).split("-"))
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return nxt - timedelta(days=1)


def shift_period(period: str, months: int) -> str:
    year, month = (int(x) for x in parse_period(period).split("-"))
    idx = year * 12 + (month - 1) + months
    return f"{idx // 12:04d}-{idx % 12 + 1:02d}"


def previous_period(period: str) -> str:
    return shift_period(period, -1)


def period_range(first: str, last: str) -> list[str]:
    """Every period from first to last inclusive, in order."""
    out, cur = [], parse_period(first)
    last = parse_period(last)
    if cur > last:
        raise ValueError(f"--from {first} is after --to {last}")
    while cur <= last:
        out.append(cur)
        cur = shift_period(cur, 1)
    return out


def period_of(ts: datetime, tz: ZoneInfo) -> str:
    return ts.astimezone(tz).strftime("%Y-%m")


def current_period(tz: ZoneInfo, now: datetime | None = None) -> str:
    return period_of(now or datetime.now(UTC), tz)
