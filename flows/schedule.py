"""Scheduling, kept out of the cycle flow: the scheduled run processes the previous month."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.schedules import Cron

from cxloop.config import Settings, load_settings
from cxloop.flows.cycle import cx_monthly_cycle
from cxloop.paths import ROOT
from cxloop.periods import current_period, previous_period

DEPLOYMENT = "cxloop-monthly"


@flow(name="cx-scheduled-cycle", log_prints=True)
def cx_scheduled_cycle(config: str | None = None) -> dict[str, Any]:
    """Run the cycle of the month that just ended (the 1st of November runs October)."""
    settings = load_settings(config)
    period = previous_period(current_period(settings.tz))
    return cx_monthly_cycle(period, config=config, started_by="schedule")


def schedule_of(settings: Settings) -> Any:
    return Cron(settings.schedule.cron, timezone=settings.project.timezone)


def followup_schedule_of(settings: Settings) -> Any:
    """The daily follow-up run's schedule (`[cases] schedule`), when case rules are configured."""
    return Cron(settings.cases.schedule, timezone=settings.project.timezone) if settings.cases.rules else None


def serve(config: Path) -> None:
    """Foreground scheduler for a single machine (Prefect `serve`): the monthly cycle, and the daily
    follow-up run next to it when `[cases]` has rules."""
    settings = load_settings(config)
    params = {"config": str(config.resolve())}
    daily = followup_schedule_of(settings)
    if daily is None:
        cx_scheduled_cycle.serve(name=DEPLOYMENT, schedules=[schedule_of(settings)], parameters=params)
        return
    from prefect import serve as serve_all

    from cxloop.flows.followup import DAILY_DEPLOYMENT, cx_daily_followup

    monthly: Any = cx_scheduled_cycle.to_deployment(name=DEPLOYMENT, schedules=[schedule_of(settings)],
                                                    parameters=params)
    followup: Any = cx_daily_followup.to_deployment(name=DAILY_DEPLOYMENT, schedules=[daily],
                                                    parameters=params)
    serve_all(monthly, followup)


def deploy(config: Path, pool: str, name: str = DEPLOYMENT) -> dict[str, Any]:
    """Register the deployments on a Prefect server - the monthly cycle, and the daily follow-up
    run when `[cases]` has rules, as `serve` runs them - that workers of `pool` (type process) run.
    Returns each deployment's id by name.

    `to_deployment(...).apply()` rather than `flow.deploy()`: with Prefect 3.8 and fastapi<0.155,
    deploy()'s look-up of online workers is refused by the server (HTTP 422), and a deployment
    needs no online worker to be registered."""
    settings = load_settings(config)
    params = {"config": str(config.resolve())}
    monthly = (name, "flows/schedule.py:cx_scheduled_cycle", schedule_of(settings))
    flows: list[tuple[str, str, Any]] = [monthly]
    daily = followup_schedule_of(settings)
    if daily is not None:
        from cxloop.flows.followup import DAILY_DEPLOYMENT

        # named after the monthly one when that is named: two projects on one server keep theirs
        daily_name = DAILY_DEPLOYMENT if name == DEPLOYMENT else f"{name}-daily-followup"
        flows.append((daily_name, "flows/followup.py:cx_daily_followup", daily))
    registered: dict[str, Any] = {}
    for deployment_name, entrypoint, schedule in flows:
        source: Any = cx_scheduled_cycle.from_source(source=str(ROOT), entrypoint=entrypoint)
        deployment = source.to_deployment(name=deployment_name, work_pool_name=pool, schedules=[schedule],
                                          parameters=params)
        registered[deployment_name] = deployment.apply()
    return registered
