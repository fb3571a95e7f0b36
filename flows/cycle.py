"""`cx_monthly_cycle(period)`: the CX loop for one month, one readable line per stage.

collect -> validate (gate) -> comments -> KPIs -> re-measure -> actions -> notify -> report.
A held cycle (a critical data-quality check failed) stores its KPIs as provisional, opens no
action and tells only the data owners. While the period is locked, the stages share one frame of
the month's rows (`cxloop.tasks.month`), SQLite's log is checkpointed between stages on a thread of its
own, and the libraries of later stages load while collect works (`flows.warmup`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff
from sqlalchemy import Engine

from cxloop.config import Settings, load_settings
from cxloop.db import background_checkpoints, checkpoint_soon, open_db
from cxloop.flows.bookkeeping import (
    begin_stage,
    data_fingerprint,
    end_stage,
    mark_interrupted,
    period_lock,
    skip_stage,
    source_fingerprint,
    stage_done_with,
    start_cycle,
    update_cycle,
)
from cxloop.flows.process import interruption
from cxloop.flows.warmup import warm_up
from cxloop.models import utcnow
from cxloop.tasks import month

STAGES = ("collect", "validate", "comments", "kpis", "remeasure", "actions", "notify", "report")
IO_RETRIES: dict[str, Any] = {"retries": 2, "retry_delay_seconds": exponential_backoff(backoff_factor=2)}


@contextmanager
def on_temporary_server() -> Iterator[None]:
    """Cycles run in this process against Prefect's temporary server (no `PREFECT_API_URL`:
    `cxloop run`, `backfill`, `demo`) send no flow-run heartbeats. Heartbeats tell a lasting
    server that a run died; the temporary one ends with this process. And the heartbeat thread
    sleeps a second at a time, so stopping it held every flow run up to a second at its end."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

    if get_current_settings().api.url:
        yield
        return
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@cache
def _engine(url: str) -> Engine:
    return open_db(url)


def _counts(result: Any) -> dict[str, Any]:
    if hasattr(result, "counts"):
        return dict(result.counts())
    return dict(result) if isinstance(result, dict) else {}


def _staged(settings: Settings, engine: Engine, period: str, stage: str, fingerprint: str | None,
            work: Callable[[], Any], after: Callable[[], str] | None = None) -> dict[str, Any]:
    """Run a stage once per input: skipped when it finished before on the same fingerprint."""
    if fingerprint:
        done = stage_done_with(engine, period, stage, fingerprint)
        if done is not None:
            print(f"{stage}: inputs unchanged since {done.finished_at:%Y-%m-%d %H:%M}, not redone")
            return {**done.counts, "resumed": True}
    begin_stage(engine, period, stage, fingerprint or "")
    try:
        counts = _counts(work())
    except BaseException as exc:
        if (signame := interruption(exc)) is not None:  # SIGTERM / Ctrl-C: stopped, not failed
            mark_interrupted(engine, period, f"stopped by {signame} during {stage}")
        elif isinstance(exc, Exception):
            end_stage(engine, period, stage, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    end_stage(engine, period, stage, status="completed", counts=counts,
              output_fingerprint=after() if after else None)
    month.release(engine, period)
    checkpoint_soon(engine)
    print(f"{stage}: {counts}")
    return counts


@task(name="collect feedback", cache_policy=NO_CACHE, **IO_RETRIES)
def collect_feedback(settings: Settings, engine: Engine, period: str) -> dict[str, Any]:
    from cxloop.tasks.collect import collect_period

    def work() -> Any:
        summary = collect_period(settings, engine, period)
        month.seed(engine, period, summary.inserted())  # a new month need not be read back
        return summary

    return _staged(settings, engine, period, "collect", source_fingerprint(settings), work)


def _on_feedback(settings: Settings, engine: Engine, period: str, stage: str,
                 work: Callable[[], Any]) -> dict[str, Any]:
    """A stage that reads the feedback rows (and may flag them): skipped while they are unchanged."""
    def fp() -> str:
        return data_fingerprint(settings, engine, "feedback")

    return _staged(settings, engine, period, stage, fp(), work, after=fp)


@task(name="validate data quality", cache_policy=NO_CACHE)
def validate_data(settings: Settings, engine: Engine, period: str) -> dict[str, Any]:
    from cxloop.tasks.validate import validate_period

    return _on_feedback(settings, engine, period, "validate",
                        lambda: validate_period(settings, engine, period))


@task(name="read comments", cache_policy=NO_CACHE)
def read_comments(settings: Settings, engine: Engine, period: str) -> dict[str, Any]:
    from cxloop.tasks.comments import analyse_comments

    return _on_feedback(settings, engine, period, "comments",
                        lambda: analyse_comments(settings, engine, period))


@task(name="compute KPIs", cache_policy=NO_CACHE)
def compute_kpis(settings: Settings, engine: Engine, period: str, provisional: bool) -> dict[str, Any]:
    import cxloop.tasks.kpis as kpis

    def fp() -> str:
        return data_fingerprint(settings, engine, "feedback", "kpis") + f":{provisional}"

    def work() -> dict[str, Any]:
        rows = kpis.compute_kpis(settings, engine, period, provisional=provisional)
        statuses = [r.status for r in rows]
        return {"results": len(rows), "provisional": provisional,
                **{s: statuses.count(s) for s in ("met", "at_risk", "missed", "insufficient")},
                "signal_low": sum(r.signal == "signal_low" for r in rows)}

    return _staged(settings, engine, period, "kpis", fp(), work, after=fp)


@task(name="re-measure open actions", cache_policy=NO_CACHE)
def remeasure_actions(settings: Settings, engine: Engine, period: str) -> dict[str, Any]:
    from cxloop.tasks.remeasure import remeasure_actions as remeasure

    def fp() -> str:
        return data_fingerprint(settings, engine, "feedback", "kpis", "actions")

    return _staged(settings, engine, period, "remeasure", fp(),
                   lambda: remeasure(settings, engine, period), after=fp)


@task(name="open or update actions", cache_policy=NO_CACHE)
def assign_actions(settings: Settings, engine: Engine, period: str) -> dict[str, Any]:
    from cxloop.tasks.actions import open_actions

    def fp() -> str:
        return data_fingerprint(settings, engine, "kpis", "actions")

    return _staged(settings, engine, period, "actions", fp(),
                   lambda: open_actions(settings, engine, period), after=fp)


@task(name="notify owners", cache_policy=NO_CACHE, **IO_RETRIES)
def notify_owners(settings: Settings, engine: Engine, period: str, held: bool) -> dict[str, Any]:
    """Never skipped: the outbox makes it idempotent and a re-run is the retry of unsent notices."""
    from cxloop.tasks.notify import deliver, queue_notices

    def work() -> dict[str, Any]:
        queued = queue_notices(settings, engine, period, held=held)
        return {"queued": len(queued), **_counts(deliver(settings, engine, period=period))}

    return _staged(settings, engine, period, "notify", None, work)


@task(name="write reports", cache_policy=NO_CACHE)
def write_reports(settings: Settings, engine: Engine, period: str) -> dict[str, Any]:
    from cxloop.tasks.report import write_reports as write

    def work() -> dict[str, Any]:
        paths = write(settings, engine, period)
        if paths:
            update_cycle(engine, period, report_path=str(paths[0]))
        return {"reports": len(paths), "company_report": str(paths[0]) if paths else ""}

    fp = data_fingerprint(settings, engine, "feedback", "kpis", "actions")
    return _staged(settings, engine, period, "report", fp, work)


@flow(name="cx-monthly-cycle", flow_run_name="cx-{period}", log_prints=True)
def cx_monthly_cycle(period: str, config: str | None = None, started_by: str = "schedule",
                     accept_data_risk: bool = False, risk_reason: str = "") -> dict[str, Any]:
    """One monthly CX cycle. Safe to re-run: finished stages with unchanged inputs are not redone."""
    settings = load_settings(config)
    engine = _engine(settings.database_url)
    with period_lock(engine, period), month.keeping(engine, period), background_checkpoints(engine):
        _, died = start_cycle(engine, period, started_by)
        if died:
            print(f"cycle {period}: {died}")
        warm_up(settings)  # later stages' libraries load while collect works
        done: dict[str, dict[str, Any]] = {}
        try:
            done["collect"] = collect_feedback(settings, engine, period)
            done["validate"] = validate_data(settings, engine, period)
            gate = done["validate"].get("status", "passed")
            held = gate == "held" and not accept_data_risk
            if gate == "held" and accept_data_risk:
                update_cycle(engine, period, gate="accepted", risk_accepted_by=started_by,
                             risk_accepted_at=utcnow(), risk_reason=risk_reason or "(no reason given)")
            else:
                update_cycle(engine, period, gate=gate, risk_accepted_by=None, risk_accepted_at=None,
                             risk_reason=None)
            done["comments"] = read_comments(settings, engine, period)
            done["kpis"] = compute_kpis(settings, engine, period, provisional=held)
            if held:
                for stage in ("remeasure", "actions"):
                    skip_stage(engine, period, stage, "cycle held by the data-quality gate")
            else:
                done["remeasure"] = remeasure_actions(settings, engine, period)
                done["actions"] = assign_actions(settings, engine, period)
            done["notify"] = notify_owners(settings, engine, period, held=held)
            done["report"] = write_reports(settings, engine, period)
        except BaseException as exc:
            if (signame := interruption(exc)) is not None:  # stopped from outside: not `failed`
                mark_interrupted(engine, period, f"stopped by {signame}")
            elif isinstance(exc, Exception):
                update_cycle(engine, period, status="failed", finished_at=utcnow(),
                             error=f"{type(exc).__name__}: {exc}")
            raise
        status = "held" if held else "completed"
        update_cycle(engine, period, status=status, finished_at=utcnow())
    resumed = [name for name, counts in done.items() if counts.get("resumed")]
    return {"period": period, "status": status, "gate": gate, "resumed": resumed}
