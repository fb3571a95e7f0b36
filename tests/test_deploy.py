"""`cxloop deploy` registers the monthly deployment, and the daily follow-up one when the config has
case rules, on a real (test) Prefect server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate

from cxloop.flows.followup import DAILY_DEPLOYMENT
from cxloop.flows.schedule import DEPLOYMENT, deploy
from cxloop.tasks.demo import DemoPlan, write_demo


def test_deploy_registers_the_schedule_in_the_project_time_zone(prefect_harness: None,
                                                                 tmp_path: Path) -> None:
    config = write_demo(tmp_path / "demo", DemoPlan(periods=["2026-06"], rows_per_month=200))

    async def make_pool() -> None:
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name="cx-test", type="process"))

    asyncio.run(make_pool())
    registered = deploy(config, "cx-test")
    assert list(registered) == [DEPLOYMENT, DAILY_DEPLOYMENT]  # the demo config has [[cases.rules]]

    async def read(deployment_id: Any) -> tuple[Any, ...]:
        async with get_client() as client:
            d = await client.read_deployment(deployment_id)
            crons = [(getattr(s.schedule, "cron", None), getattr(s.schedule, "timezone", None))
                     for s in d.schedules]
            return d.name, d.work_pool_name, d.parameters, d.entrypoint, crons

    name, pool, params, entrypoint, crons = asyncio.run(read(registered[DEPLOYMENT]))
    assert (name, pool) == (DEPLOYMENT, "cx-test")
    assert params == {"config": str(config.resolve())}
    assert entrypoint == "flows/schedule.py:cx_scheduled_cycle"
    assert crons == [("0 6 1 * *", "Asia/Shanghai")]
    name, pool, params, entrypoint, crons = asyncio.run(read(registered[DAILY_DEPLOYMENT]))
    assert (name, pool, entrypoint) == (DAILY_DEPLOYMENT, "cx-test", "flows/followup.py:cx_daily_followup")
    assert params == {"config": str(config.resolve())}
    assert crons == [("0 7 * * *", "Asia/Shanghai")]
