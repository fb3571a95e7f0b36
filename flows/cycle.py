"""`cx_monthly_cycle(period)`: the CX loop for one month, one readable line per stage.

collect -> validate (gate) -> comments -> KPIs -> re-measure -> actions -> notify -> report.
A held cycle (a critical data-quality check failed) stores its KPIs as provisional, opens no
action and tells only the data owners. While the period is locked, the stages share one frame of
the month's rows (`cxloop.tasks.month`), handed with the settings, engine and period to each stage
in one `CycleContext`; SQLite's log is checkpointed between stages on a thread of its
own, and the libraries of later stages load while collect works (`flows.warmup`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff
from sqlalchemy import Engine

from cxloop.config import Settings, load_settings
from cxloop.db import background_checkpoints, checkpoint_soon, open_db
from cxloop.flows.bookkeeping import (
    acceptance,
    begin_stage,
    data_fingerprint,
    end_stage,
    gate_basis,
    mark_interrupted,
    period_lock,
    set_gate,
    skip_stage,
    source_fingerprint,
    stage_done_with,
    start_cycle,
    update_cycle,
)
from cxloop.flows.context import CycleContext
from cxloop.flows.process import interruption
from cxloop.flows.warmup import warm_up
from cxloop.models import utcnow

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


def _counts(result: Any) -> dict[str, Any]:
    if hasattr(result, "counts"):
        return dict(result.counts())
    return dict(result) if isinstance(result, dict) else {}


def _staged(ctx: CycleContext, stage: str, fingerprint: str | None,
            work: Callable[[], Any], after: Callable[[], str] | None = None) -> dict[str, Any]:
    """Run a stage once per input: skipped when it finished before on the same fingerprint."""
    engine, period = ctx.engine, ctx.period
    if fingerprint:
        done = stage_done_with(engine, period, stage, fingerprint)
        if done is not None:
            print(f"{stage}: inputs unchanged since {done.finished_at:%Y-%m-%d %H:%M}, not redone")
            return {**done.counts, "resumed": True}
    begin_stage(engine, period, stage, fingerprint or "", ctx.stamp)
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
    ctx.month.release()
    checkpoint_soon(engine)
    print(f"{stage}: {counts}")
    return counts


def _fingerprint(ctx: CycleContext, *parts: str) -> str:
    return data_fingerprint(ctx.settings, ctx.engine, *parts, stamp=ctx.stamp)


@task(name="collect feedback", cache_policy=NO_CACHE, **IO_RETRIES)
def collect_feedback(ctx: CycleContext) -> dict[str, Any]:
    from cxloop.tasks.collect import collect_period

    def work() -> Any:
        summary = collect_period(ctx.settings, ctx.engine, ctx.period)
        ctx.month.seed(summary.inserted())  # a new month need not be read back
        return summary

    return _staged(ctx, "collect", source_fingerprint(ctx.settings), work)


def _on_feedback(ctx: CycleContext, stage: str, work: Callable[[], Any]) -> dict[str, Any]:
    """A stage that reads the feedback rows (and may flag them): skipped while they are unchanged."""
    def fp() -> str:
        return _fingerprint(ctx, "feedback")

    return _staged(ctx, stage, fp(), work, after=fp)


@task(name="validate data quality", cache_policy=NO_CACHE)
def validate_data(ctx: CycleContext) -> dict[str, Any]:
    from cxloop.tasks.validate import validate_period

    return _on_feedback(ctx, "validate", lambda: validate_period(ctx.settings, ctx.engine, ctx.period,
                                                                 month_rows=ctx.month))


@task(name="read comments", cache_policy=NO_CACHE)
def read_comments(ctx: CycleContext) -> dict[str, Any]:
    from cxloop.tasks.comments import analyse_comments

    return _on_feedback(ctx, "comments", lambda: analyse_comments(ctx.settings, ctx.engine, ctx.period,
                                                                  month_rows=ctx.month))


@task(name="compute KPIs", cache_policy=NO_CACHE)
def compute_kpis(ctx: CycleContext, provisional: bool) -> dict[str, Any]:
    import cxloop.tasks.kpis as kpis

    def fp() -> str:
        return _fingerprint(ctx, "feedback", "kpis") + f":{provisional}"

    def work() -> dict[str, Any]:
        rows = kpis.compute_kpis(ctx.settings, ctx.engine, ctx.period, provisional=provisional,
                                 month_rows=ctx.month)
        statuses = [r.status for r in rows]
        return {"results": len(rows), "provisional": provisional,
                **{s: statuses.count(s) for s in ("met", "at_risk", "missed", "insufficient")},
                "signal_low": sum(r.signal == "signal_low" for r in rows)}

    return _staged(ctx, "kpis", fp(), work, after=fp)


@task(name="re-measure open actions", cache_policy=NO_CACHE)
def remeasure_actions(ctx: CycleContext) -> dict[str, Any]:
    from cxloop.tasks.remeasure import remeasure_actions as remeasure

    def fp() -> str:
        return _fingerprint(ctx, "feedback", "kpis", "actions")

    return _staged(ctx, "remeasure", fp(),
                   lambda: remeasure(ctx.settings, ctx.engine, ctx.period, month_rows=ctx.month), after=fp)


@task(name="open or update actions", cache_policy=NO_CACHE)
def assign_actions(ctx: CycleContext) -> dict[str, Any]:
    from cxloop.tasks.actions import open_actions

    def fp() -> str:
        return _fingerprint(ctx, "kpis", "actions")

    return _staged(ctx, "actions", fp(),
                   lambda: open_actions(ctx.settings, ctx.engine, ctx.period, month_rows=ctx.month,
                                        drivers=ctx.key_drivers()), after=fp)


@task(name="notify owners", cache_policy=NO_CACHE, **IO_RETRIES)
def notify_owners(ctx: CycleContext, held: bool) -> dict[str, Any]:
    """Never skipped: the outbox makes it idempotent and a re-run is the retry of unsent notices."""
    from cxloop.tasks.notify import deliver, queue_notices

    def work() -> dict[str, Any]:
        queued = queue_notices(ctx.settings, ctx.engine, ctx.period, held=held)
        return {"queued": len(queued), **_counts(deliver(ctx.settings, ctx.engine, period=ctx.period))}

    return _staged(ctx, "notify", None, work)


@task(name="write reports", cache_policy=NO_CACHE)
def write_reports(ctx: CycleContext) -> dict[str, Any]:
    """The period's reports; written again when the gate or its acceptance changes (a held
    month's pages say its figures are provisional, an accepted one's who accepted it)."""
    from cxloop.tasks.report import write_reports as write

    def work() -> dict[str, Any]:
        paths = write(ctx.settings, ctx.engine, ctx.period, month_rows=ctx.month, drivers=ctx.key_drivers())
        if paths:
            update_cycle(ctx.engine, ctx.period, report_path=str(paths[0]))
        counts: dict[str, Any] = {"reports": len(paths), "company_report": str(paths[0]) if paths else ""}
        if ctx.settings.drivers:
            counts["driver_scopes"] = len(ctx.key_drivers())  # scopes with enough rated responses
        return counts

    return _staged(ctx, "report", _fingerprint(ctx, "feedback", "kpis", "actions", "outcomes")
                   + acceptance(ctx.engine, ctx.period), work)


@flow(name="cx-monthly-cycle", flow_run_name="cx-{period}", log_prints=True)
def cx_monthly_cycle(period: str, config: str | None = None, started_by: str = "schedule",
                     accept_data_risk: bool = False, risk_reason: str = "",
                     notify: bool = True) -> dict[str, Any]:
    """One monthly CX cycle. Safe to re-run: finished stages with unchanged inputs are not redone.
    `notify` False: no notice is queued or sent (`NOT_NOTIFIED`; a backfilled month of history)."""
    settings = load_settings(config)  # once per run: every stage is handed these (`CycleContext`)
    engine = open_db(settings.database_url)
    try:
        return _run(settings, engine, period, started_by, accept_data_risk, risk_reason, notify)
    finally:
        engine.dispose()


# Why a month's notify stage did not run when its cycle was told not to notify.
NOT_NOTIFIED = ("a month of history run by backfill: only the newest month notifies "
                "(`cxloop notify --period P` sends this one's notices)")


def _run(settings: Settings, engine: Engine, period: str, started_by: str, accept_data_risk: bool,
         risk_reason: str, notify: bool = True) -> dict[str, Any]:
    with period_lock(engine, period), background_checkpoints(engine):
        ctx = CycleContext.for_run(settings, engine, period)
        _, died = start_cycle(engine, period, started_by)
        if died:
            print(f"cycle {period}: {died}")
        warm_up(settings)  # later stages' libraries load while collect works
        done: dict[str, dict[str, Any]] = {}
        try:
            done["collect"] = collect_feedback(ctx)
            done["validate"] = validate_data(ctx)
            validated = done["validate"]
            gate, note = set_gate(engine, period, validated.get("status", "passed"), gate_basis(validated),
                                  accepted_by=started_by if accept_data_risk else None, reason=risk_reason)
            held = gate == "held"
            done["comments"] = read_comments(ctx)
            done["kpis"] = compute_kpis(ctx, provisional=held)
            if held:
                for stage in ("remeasure", "actions"):
                    skip_stage(engine, period, stage, "cycle held by the data-quality gate")
            else:
                done["remeasure"] = remeasure_actions(ctx)
                done["actions"] = assign_actions(ctx)
            if notify:
                done["notify"] = notify_owners(ctx, held=held)
            else:  # a month that notified in an earlier run keeps its record
                skip_stage(engine, period, "notify", NOT_NOTIFIED, keep_done=True)
            done["report"] = write_reports(ctx)
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
    return {"period": period, "status": status, "gate": gate, "resumed": resumed, "note": note}
