"""The daily follow-up flow (issue 19): wires `tasks.cases.daily.run_day`, nothing more."""

from __future__ import annotations

from typing import Any

from prefect import flow

from cxloop.config import load_settings
from cxloop.db import open_db
from cxloop.models import utcnow
from cxloop.tasks.cases.daily import run_day

DAILY_DEPLOYMENT = "cxloop-daily-followup"


@flow(name="cx-daily-followup", log_prints=True)
def cx_daily_followup(config: str | None = None, collect: bool = True) -> dict[str, Any]:
    """Import what is new, open and route cases, remind and escalate, deliver the notices."""
    settings = load_settings(config)
    engine = open_db(settings.database_url)
    try:
        return run_day(settings, engine, utcnow(), collect=collect)
    finally:
        engine.dispose()
