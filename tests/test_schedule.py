"""The schedule runs the month that just ended, in the project's time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cxloop.config import settings_from_dict
from cxloop.flows.schedule import schedule_of
from cxloop.periods import current_period, period_bounds, period_end_date, period_range, previous_period


def test_the_first_of_the_month_in_shanghai_runs_the_previous_month() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    # 06:00 on 1 November in Shanghai is still 31 October in UTC.
    now = datetime(2026, 10, 31, 22, 0, tzinfo=UTC)
    assert current_period(tz, now) == "2026-11"
    assert previous_period(current_period(tz, now)) == "2026-10"
    assert previous_period("2026-01") == "2025-12"


def test_period_edges_are_taken_in_the_project_time_zone() -> None:
    start, end = period_bounds("2026-10", ZoneInfo("Asia/Shanghai"))
    assert start == datetime(2026, 9, 30, 16, 0, tzinfo=UTC)
    assert end == datetime(2026, 10, 31, 16, 0, tzinfo=UTC)
    assert str(period_end_date("2024-02")) == "2024-02-29"


def test_backfill_ranges_are_in_order_and_refuse_reversed_bounds() -> None:
    assert period_range("2025-11", "2026-02") == ["2025-11", "2025-12", "2026-01", "2026-02"]
    with pytest.raises(ValueError, match="after"):
        period_range("2026-03", "2026-01")
    with pytest.raises(ValueError, match="YYYY-MM"):
        period_range("2026-13", "2026-14")


def test_schedule_uses_the_configured_cron_and_time_zone() -> None:
    data = {"project": {"timezone": "Asia/Shanghai"}, "schedule": {"cron": "0 7 2 * *"}}
    settings = settings_from_dict(data, Path("."), env={})
    cron = schedule_of(settings)
    assert (cron.cron, cron.timezone) == ("0 7 2 * *", "Asia/Shanghai")
    default = schedule_of(settings_from_dict({}, Path("."), env={}))
    assert default.cron == "0 6 1 * *"
