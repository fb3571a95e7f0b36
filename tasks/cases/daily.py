"""One day of the inner loop: import what is new, open cases, purge old contact details, queue
the owners' notices and the SLA reminders and escalations, deliver them. Plain functions, so the
flow (`flows/followup.py`), the CLI and the benchmark run the same steps; `now` is an argument.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from cxloop.config import Settings
from cxloop.periods import current_period
from cxloop.tasks.cases.contacts import purge_contacts
from cxloop.tasks.cases.notices import queue_new_case_notices, queue_sla_notices
from cxloop.tasks.cases.opening import open_cases


def run_day(settings: Settings, engine: Engine, now: datetime, *, collect: bool = True, send: bool = True,
            up_to_id: int | None = None) -> dict[str, Any]:
    """Each step is idempotent and commits on its own, so a re-run (or a run after a kill) picks up
    where the last one stopped and repeats nothing that was done."""
    day = now.astimezone(settings.tz).date().isoformat()
    out: dict[str, Any] = {"day": day}
    if collect:
        from cxloop.tasks.collect import collect_period

        # The month of yesterday too: the morning after a month ends, its last evening's answers
        # are new, and the import keeps only the rows of the month it is asked for.
        periods = sorted({current_period(settings.tz, now - timedelta(days=1)),
                          current_period(settings.tz, now)})
        out["collected"] = sum(collect_period(settings, engine, p).total("loaded") for p in periods)
    opened = open_cases(settings, engine, now, up_to_id=up_to_id)
    out.update(opened.counts())
    out["contacts_purged"] = purge_contacts(engine, now - timedelta(days=settings.cases.retention_days))
    out["notices"] = queue_new_case_notices(settings, engine, day, opened.opened)
    out.update(queue_sla_notices(settings, engine, now))
    if send:
        from cxloop.tasks.notify import deliver

        summary = deliver(settings, engine, period=day, now=now)
        out["delivery"] = summary.counts()
    return out
