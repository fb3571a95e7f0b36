"""Running the loop: run, backfill, status, serve, deploy and the demo."""

from __future__ import annotations

import getpass
import logging
import os
import sys
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import Engine

from cxloop.commands.common import ConfigOpt, CxError, FormatOpt, OptionalPeriodOpt, PeriodOpt, _period, load
from cxloop.config import Settings
from cxloop.output import EXIT_ERROR, EXIT_HELD, EXIT_NOTICES_FAILED, Format, cli_console, emit, print_error
from cxloop.periods import parse_period, period_range
from cxloop.tasks.cycles import stage_records, stored_cycles

if TYPE_CHECKING:
    from cxloop.tasks.demo_followup import FollowupStory

def _quiet_prefect(verbose: bool) -> None:
    """Prefect logs every task to the terminal; an admin wants the outcome, not the chatter."""
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry from a closed network
    # Without PREFECT_API_URL, Prefect starts a temporary local server; a busy machine needs longer.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _checked(config: Path | None) -> tuple[Path, Settings, Engine]:
    """The config's path, its settings and the database, loaded once by the command. This fails
    fast, before Prefect starts: exit 2 on a bad config, one line for a database that cannot be
    opened or migrated (unreachable, read-only). Each cycle run loads the file once more itself:
    the flow is self-contained, as a deployment's worker runs it without this command."""
    path = Path(config or os.environ.get("CXLOOP_CONFIG") or "cxloop.toml")
    settings, engine = load(path)
    return path.resolve(), settings, engine


def _config_path(config: Path | None) -> Path:
    path, _, engine = _checked(config)
    engine.dispose()
    return path


def run_cycles(config: Path, settings: Settings, periods: list[str], by: str, accept_risk: bool = False,
               reason: str = "", notify_only: Collection[str] | None = None) -> list[dict[str, Any]]:
    """Run the periods' cycles in order; `notify_only`: the periods whose cycles notify (None:
    all). SIGTERM (or Ctrl-C) stops the command cleanly: the running cycle is marked `interrupted`
    with the signal, Prefect's temporary server is stopped, and the command exits 128 + the
    signal's number (143, 130) after one line on stderr."""
    from cxloop.flows.process import interruption, stop_cleanly_on_sigterm, temporary_server
    from cxloop.flows.warmup import warm_up

    current: list[str] = []
    try:
        with stop_cleanly_on_sigterm():
            warm_up(settings)  # the stages' libraries load while Prefect's server starts
            with temporary_server():
                return _run_each(config, periods, by, accept_risk, reason, current, notify_only)
    except BaseException as exc:  # a signal, or an error Prefect raised while handling one
        if interruption(exc) is None:
            raise
        _interrupted(config, current, exc)


def _interrupted(config: Path, current: list[str], exc: BaseException) -> NoReturn:
    from cxloop.flows.bookkeeping import mark_interrupted
    from cxloop.flows.process import exit_code_for, exit_now_if_held, interruption

    signame = interruption(exc) or "a signal"
    if current:  # the flow marks it itself; this covers a signal between its steps
        _, engine = load(config)
        mark_interrupted(engine, current[-1], f"stopped by {signame}")
        engine.dispose()
    where = f"cycle {current[-1]} interrupted" if current else "interrupted before a cycle started"
    tail = f"; `cxloop run --period {current[-1]}` resumes it" if current else ""
    print_error("error", f"{where} by {signame}{tail}")
    exit_now_if_held(exit_code_for(exc))
    raise typer.Exit(exit_code_for(exc))


def _run_each(config: Path, periods: list[str], by: str, accept_risk: bool, reason: str,
              current: list[str], notify_only: Collection[str] | None = None) -> list[dict[str, Any]]:
    from cxloop.flows.bookkeeping import CycleBusy
    from cxloop.flows.cycle import cx_monthly_cycle, on_temporary_server
    from cxloop.flows.process import interruption

    outcomes = []
    for period in periods:
        current.append(period)
        err = cli_console(stderr=True)  # made when used: the streams a test or a scheduler set up
        status_ctx = err.status(f"cycle {period}: running …") if err.is_terminal else None
        try:
            if status_ctx:
                status_ctx.start()
            with on_temporary_server():
                outcomes.append(cx_monthly_cycle(period, config=str(config), started_by=by,
                                                 accept_data_risk=accept_risk, risk_reason=reason,
                                                 notify=notify_only is None or period in notify_only))
        except CycleBusy as exc:
            raise CxError(str(exc)) from None
        except Exception as exc:
            if interruption(exc) is not None:
                raise  # stopped by a signal, not failed: `run_cycles` says so
            raise CxError(f"cycle {period} failed: {type(exc).__name__}: {exc}\n"
                          f"  see `cxloop status --period {period}`; re-running resumes") from None
        finally:
            if status_ctx:
                status_ctx.stop()
    return outcomes


def _stage_rows(engine: Any, period: str) -> list[dict[str, Any]]:
    from cxloop.flows.cycle import STAGES

    rows = stage_records(engine, period)
    out = []
    for name in STAGES:
        r = rows.get(name)
        if r is None:
            continue
        secs = (r.finished_at - r.started_at).total_seconds() if r.finished_at else None
        out.append({"stage": name, "status": r.status, "counts": r.counts, "error": r.error,
                    "seconds": round(secs, 2) if secs is not None else None})
    return out


def _cycle_rows(engine: Any, period: str | None = None) -> list[dict[str, Any]]:
    """The cycles as stored, except that a cycle `running` with no process running it any more
    (killed with kill -9, a crash, a reboot) shows as `interrupted` with what is known of the run."""
    from cxloop.flows.bookkeeping import dead_run_note, is_dead_run

    rows = []
    for c in stored_cycles(engine, period):
        dead = is_dead_run(engine, c)
        rows.append({"period": c.period, "status": "interrupted" if dead else c.status, "gate": c.gate,
                     "started_by": c.started_by, "started_at": c.started_at, "finished_at": c.finished_at,
                     "risk_accepted_by": c.risk_accepted_by, "risk_reason": c.risk_reason,
                     "report": c.report_path, "error": dead_run_note(c) if dead else c.error})
    return rows


def run(
    period: PeriodOpt,
    config: ConfigOpt = None,
    accept_data_risk: Annotated[bool, typer.Option(
        "--accept-data-risk", help="Publish KPIs and open actions although the data gate held.")] = False,
    reason: Annotated[str, typer.Option(help="Why the data risk is accepted (recorded).")] = "",
    by: Annotated[str, typer.Option(help="Who starts the run (recorded).")] = "",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs.")] = False,
) -> None:
    """Run the monthly cycle for one period (re-running resumes and duplicates nothing).

    Exit code 3 when the data-quality gate held the cycle, 4 when a notice could not be delivered,
    1 when a source file could not be read (named on stderr; the cycle went on without it)."""
    _quiet_prefect(verbose)
    if accept_data_risk and not reason:
        raise typer.BadParameter("--accept-data-risk needs --reason '…' (it is recorded)")
    cfg, settings, engine = _checked(config)
    who = by or getpass.getuser()
    (outcome,) = run_cycles(cfg, settings, [period], who, accept_data_risk, reason)
    rows = _stage_rows(engine, period)
    for row in rows:
        if row["stage"] in outcome.get("resumed", []):
            row["status"] = "unchanged (kept)"
    emit(rows, Format.table, ["stage", "status", "seconds", "counts"],
         title=f"cycle {period}: {outcome['status']} (gate {outcome['gate']})", console=cli_console())
    _where_next(engine, period)
    if outcome.get("note"):
        print_error("note", f"cycle {period}: {outcome['note']}")
    if outcome["status"] == "held":
        cli_console(stderr=True).print(
            f"[yellow]cycle {period} is HELD by the data-quality gate: KPIs are provisional, no "
            "action opened, no department notified. Fix the source and re-run, or re-run with "
            "--accept-data-risk --reason '…'.[/]")
    unread = collect_failures(engine, period)
    for line in unread:
        print_error("error", f"{line} (the cycle went on without it)")
    code = exit_code(engine, [outcome], bool(unread))
    if code == EXIT_NOTICES_FAILED:
        print_error("error", f"cycle {period}: notices could not be delivered (`cxloop outbox --status "
                    "failed`); the next run or `cxloop notify --retry` sends them")
    if code:
        raise typer.Exit(code)


def exit_code(engine: Any, outcomes: list[dict[str, Any]], unread: bool) -> int:
    """What a finished run tells cron: 3 when a cycle was held (the bigger news), else 4 when a
    notice of these periods is still undelivered (`failed` in the outbox), else 1 when a source
    file could not be read (`unread`, from `collect_failures`: the cycle went on without it, and
    `cxloop collect` exits 1 for the same), else 0."""
    from cxloop.tasks.notify import outbox_rows

    if any(o["status"] == "held" for o in outcomes):
        return EXIT_HELD
    if any(outbox_rows(engine, o["period"], "failed") for o in outcomes):
        return EXIT_NOTICES_FAILED
    return EXIT_ERROR if unread else 0


def collect_failures(engine: Any, period: str) -> list[str]:
    """The files the period's last collect could not read, one line each (none when it read all)."""
    from cxloop.tasks.collect.records import failures_since

    collect = stage_records(engine, period).get("collect")
    if collect is None or not (collect.counts or {}).get("errors"):
        return []
    outcomes = [str(line) for line in collect.counts.get("outcome_failures") or []]  # no record keeps them
    return failures_since(engine, period, collect.started_at) + outcomes


def _where_next(engine: Any, period: str) -> None:
    rows = _cycle_rows(engine, period)
    if rows and rows[0]["report"]:
        cli_console().print(f"report: {rows[0]['report']}", markup=False)


def backfill(
    first: Annotated[str, typer.Option("--from", help="First period, YYYY-MM.")],
    last: Annotated[str, typer.Option("--to", help="Last period, YYYY-MM.")],
    config: ConfigOpt = None,
    by: Annotated[str, typer.Option(help="Who starts the run (recorded).")] = "",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    notify_all: Annotated[bool, typer.Option(
        "--notify-all", help="Notify every month, not only the newest.")] = False,
) -> None:
    """Run every period from --from to --to in order; each re-measures the actions of the ones before.

    Only the newest month notifies, and only when no later month's cycle completed: a department head
    is told once where things stand (its digest lists what earlier months left open), not sent a
    year of stale notices (`--notify-all` sends them; `cxloop notify --period P` one month's)."""
    _quiet_prefect(verbose)
    try:
        periods = period_range(parse_period(first), parse_period(last))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    cfg, settings, engine = _checked(config)
    # A later month that completed has sent the current digests; one that failed or held has not.
    later = any(c.period > periods[-1] and c.status == "completed" for c in stored_cycles(engine))
    newest = [] if later else periods[-1:]
    outcomes = run_cycles(cfg, settings, periods, by or getpass.getuser(),
                          notify_only=None if notify_all else newest)
    emit(outcomes, Format.table, ["period", "status", "gate"], title="backfill", console=cli_console())
    if not notify_all and len(newest) < len(periods):
        quiet = [p for p in periods if p not in newest]
        print_error("note", f"no notices for {quiet[0]}{'..' + quiet[-1] if len(quiet) > 1 else ''} "
                    "(months of history; `cxloop notify --period P` sends one month's, "
                    "`backfill --notify-all` every month's)")
    for o in outcomes:
        if o.get("note"):
            print_error("note", f"cycle {o['period']}: {o['note']}")
    unread = [f"{o['period']}: {line}" for o in outcomes for line in collect_failures(engine, o["period"])]
    for line in unread:
        print_error("error", f"{line} (the cycle went on without it)")
    code = exit_code(engine, outcomes, bool(unread))
    if code:
        raise typer.Exit(code)


def status(period: OptionalPeriodOpt = None, config: ConfigOpt = None, fmt: FormatOpt = Format.table) -> None:
    """Cycles and, for one period, each stage with its timing, counts and error."""
    _, engine = load(config)
    if period:
        cycles = _cycle_rows(engine, period)
        if not cycles:
            raise CxError(f"no cycle has run for {period}; start one with `cxloop run --period {period}`")
        if fmt is Format.table:
            emit(cycles, fmt, ["period", "status", "gate", "started_by", "started_at", "finished_at",
                               "risk_accepted_by", "error"], title="cycle")
            emit(_stage_rows(engine, period), fmt, ["stage", "status", "seconds", "counts", "error"],
                 title="stages")
        else:
            emit([{**cycles[0], "stages": _stage_rows(engine, period)}], fmt)
        return
    emit(_cycle_rows(engine), fmt,
         ["period", "status", "gate", "started_by", "finished_at", "report", "error"], title="cycles")


def serve(config: ConfigOpt = None) -> None:
    """Run the monthly schedule in the foreground ([schedule] cron; processes the previous month)."""
    from cxloop.flows.schedule import serve as serve_flow

    serve_flow(_config_path(config))


def deploy(
    pool: Annotated[str, typer.Option(help="Prefect work pool (type process) whose workers run it.")],
    config: ConfigOpt = None,
    name: Annotated[str, typer.Option(help="Deployment name (the daily follow-up one: NAME-daily-followup).")
                    ] = "cxloop-monthly",
) -> None:
    """Register the monthly deployment (and the daily follow-up one, with [[cases.rules]]) on a
    Prefect server (PREFECT_API_URL)."""
    from cxloop.flows.schedule import deploy as deploy_flow

    registered = deploy_flow(_config_path(config), pool, name)
    out = cli_console()
    for deployment, deployment_id in registered.items():
        out.print(f"deployment {escape(deployment)} registered ({deployment_id})", highlight=False)
    out.print(f"start a worker with `prefect worker start --pool {escape(pool)}`", highlight=False)


def demo(
    months: Annotated[int, typer.Option(min=1, max=24, help="How many months to generate and run.")] = 6,
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the demo.")] = Path("cxloop-demo"),
    rows: Annotated[int, typer.Option(min=200, help="Responses per month.")] = 3000,
    last: Annotated[str, typer.Option(help="The demo's last month, YYYY-MM (the same story on any date).",
                                      callback=_period)] = "2026-10",
    seed: Annotated[int, typer.Option(help="Seed of the generated answers.")] = 7,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Generate several months of realistic feedback with planted stories, then run every cycle."""
    from cxloop.commands.demo_story import tell_story
    from cxloop.tasks.demo import default_plan, write_demo

    _quiet_prefect(verbose)
    if (directory / "cxloop.db").exists():
        raise CxError(f"{directory} already holds a demo; remove it or pick another --dir")
    plan = default_plan(last, months, rows, seed)
    cfg = write_demo(directory, plan)
    out = cli_console()
    out.print(f"[bold]cxloop demo[/]: {months} months of feedback written to {escape(str(directory))}/data "
              f"({plan.periods[0]} .. {plan.periods[-1]})")
    cfg, settings, engine = _checked(cfg)
    _train_demo_model(settings, directory, out)
    outcomes = []
    followup = None
    for period in plan.periods:
        if period == plan.periods[-1]:  # the month the survey asked for consent: its follow-up runs first
            followup = _replay_followup(settings, engine, period, seed, out)
        outcomes.extend(run_cycles(cfg, settings, [period], "demo"))
        out.print(f"  cycle {period}: {outcomes[-1]['status']}")
    tell_story(settings, engine, plan, directory, out, followup)


def _replay_followup(settings: Settings, engine: Engine, period: str, seed: int, out: Console
                     ) -> FollowupStory:
    """Collect the month, then replay its daily follow-up runs, so its report counts the cases."""
    from cxloop.tasks.collect import collect_period
    from cxloop.tasks.demo_followup import replay_followup

    collect_period(settings, engine, period)
    story = replay_followup(settings, engine, period, seed)
    out.print(f"  follow-up {period}: {story.runs} daily runs, {story.opened} cases opened")
    return story


def _train_demo_model(settings: Settings, directory: Path, out: Console) -> None:
    """The demo company trains its own sentiment model first, as `cxloop comments train` would."""
    from cxloop.tasks.sentiment import read_labelled, save_model, train

    texts, labels = read_labelled(directory / "training" / "labelled_comments.csv")
    result = train(texts, labels, source="demo training set")
    save_model(result.model, settings.resolve(settings.comments.model_path))
    out.print(f"sentiment model trained on the demo's labelled comments: held-out accuracy "
              f"{result.accuracy:.2f} ({result.per_second:,.0f} comments/s)")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("backfill")(backfill)
    app.command("status")(status)
    app.command("serve")(serve)
    app.command("deploy")(deploy)
    app.command("demo")(demo)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the `cxloop` command")
