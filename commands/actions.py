"""`cxloop actions ...`: list, inspect and move corrective actions (for CX admins and heads)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from cxloop.commands.common import ConfigOpt, CxError, FormatOpt, OptionalPeriodOpt, load
from cxloop.output import PIPED_WIDTH, Format, cli_console, emit, terminal_safe

actions_app = typer.Typer(help="Corrective actions: list, show, acknowledge, start, finish, cancel, assign.",
                          no_args_is_help=True)

IdArg = Annotated[int, typer.Argument(help="Action id (see `cxloop actions list`).", show_default=False)]
NoteOpt = Annotated[str, typer.Option("--note", "-n", help="Why / what was done; kept in the history.")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who does this (default: $CXLOOP_USER or login).",
                                           show_default=False)]
LIST_COLUMNS = ["id", "kpi", "scope", "scope_value", "department", "status", "severity", "opened_period",
                "due", "last_value", "target", "cycles"]


@actions_app.command("list")
def list_command(
    config: ConfigOpt = None,
    status: Annotated[str | None, typer.Option(
        "--status", "-s", help="A status, several separated by commas, or active / closed.")] = None,
    department: Annotated[str | None, typer.Option("--department", "-d", help="Department id.")] = None,
    period: OptionalPeriodOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """List actions (filter by status, department, and period opened or re-confirmed in)."""
    from cxloop.tasks.actions import ActionError, action_row, latest_measurements, list_actions

    _, engine = load(config)
    try:
        actions = list_actions(engine, status=status, department=department, period=period)
        latest = latest_measurements(engine, [a.id for a in actions if a.id is not None])
        rows = [action_row(a, latest.get(a.id or 0)) for a in actions]
    except ActionError as exc:  # a status it does not know: bad usage (exit 2), like a bad --format
        raise typer.BadParameter(str(exc), param_hint="--status") from None
    emit(rows, fmt, LIST_COLUMNS, title="actions")


@actions_app.command("show")
def show_command(action_id: IdArg, config: ConfigOpt = None, fmt: FormatOpt = Format.table) -> None:
    """One action: details, evidence per cycle, history and its re-measurements."""
    from cxloop.tasks.actions import ActionError, action_detail

    _, engine = load(config)
    try:
        detail = action_detail(engine, action_id)
    except ActionError as exc:
        raise CxError(str(exc)) from None
    action = detail["action"]
    data: dict[str, Any] = {
        "action": action.model_dump(mode="json"),
        "events": [e.model_dump(mode="json") for e in detail["events"]],
        "measurements": [m.model_dump(mode="json") for m in detail["measurements"]],
    }
    if fmt is not Format.table:
        if fmt is Format.csv:
            raise CxError("`actions show` prints table or json; use `actions list --format csv` for CSV")
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    _show_table(data)


def _show_table(data: dict[str, Any]) -> None:
    from rich.markdown import Markdown

    console = cli_console()
    action = data["action"]
    fields = ["id", "kpi", "scope", "scope_value", "department", "head", "status", "severity",
              "opened_period", "due", "baseline_value", "target", "closed_period"]
    emit([{"field": f, "value": action.get(f)} for f in fields], Format.table, ["field", "value"],
         title=f"action {action['id']}", console=console)
    evidence = [{k: e.get(k) for k in ("period", "value", "ci_low", "ci_high", "n", "target", "gap",
                                        "status", "signal", "severity")} for e in action["evidence"]]
    emit(evidence, Format.table, title="evidence", console=console)
    for entry in action["evidence"]:
        for c in entry.get("worst_comments", []):
            console.print(f"  {entry['period']} “{terminal_safe(str(c['text']))}”", highlight=False,
                          markup=False)
        from cxloop.tasks.notify.items import driver_line

        for d in entry.get("drivers", []):
            console.print(f"  {entry['period']} driver: {terminal_safe(driver_line(d, 'en'))}",
                          highlight=False, markup=False)
    emit([{k: e[k] for k in ("at", "by", "from_status", "to_status", "period", "note")}
          for e in data["events"]], Format.table, title="history", console=console)
    emit([{k: m[k] for k in ("period", "value", "n", "change", "change_ci_low", "change_ci_high", "effect",
                             "effect_ci_low", "effect_ci_high", "method", "verdict", "decision")}
          for m in data["measurements"]], Format.table, title="measurements", console=console)
    if action.get("playbook"):
        console.print(Markdown(terminal_safe(action["playbook"])),  # no terminal: as wide as one
                      width=100 if console.width >= PIPED_WIDTH else None)


def _move(word: str, action_id: int, note: str, by: str | None, config: Any) -> None:
    from cxloop.tasks.actions import STATUS_WORDS, ActionError, change_status, default_actor
    from cxloop.tasks.lifecycle import TransitionError

    settings, engine = load(config)
    try:
        action = change_status(settings, engine, action_id, STATUS_WORDS[word], by=by or default_actor(),
                               note=note)
    except (ActionError, TransitionError) as exc:
        raise CxError(str(exc)) from None
    typer.echo(f"action {action.id}: {action.status}")


@actions_app.command("ack")
def ack_command(action_id: IdArg, note: NoteOpt = "", by: ByOpt = None, config: ConfigOpt = None) -> None:
    """Acknowledge an action (the owner has seen it)."""
    _move("ack", action_id, note, by, config)


@actions_app.command("start")
def start_command(action_id: IdArg, note: NoteOpt = "", by: ByOpt = None, config: ConfigOpt = None) -> None:
    """Mark an action in progress."""
    _move("start", action_id, note, by, config)


@actions_app.command("done")
def done_command(action_id: IdArg, note: NoteOpt = "", by: ByOpt = None, config: ConfigOpt = None) -> None:
    """Mark an action done; the next cycle's re-measurement verifies it."""
    _move("done", action_id, note, by, config)


@actions_app.command("cancel")
def cancel_command(action_id: IdArg, note: NoteOpt = "", by: ByOpt = None, config: ConfigOpt = None) -> None:
    """Cancel an action; a reason (--note) is required."""
    _move("cancel", action_id, note, by, config)


@actions_app.command("assign")
def assign_command(
    action_id: IdArg,
    department: Annotated[str, typer.Option("--department", "-d", help="Department id to hand it to.",
                                            show_default=False)],
    note: NoteOpt = "",
    by: ByOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Hand an action to another department (head and playbook follow)."""
    from cxloop.tasks.actions import ActionError, assign, default_actor

    settings, engine = load(config)
    try:
        action = assign(settings, engine, action_id, department, by or default_actor(), note)
    except ActionError as exc:
        raise CxError(str(exc)) from None
    typer.echo(f"action {action.id}: assigned to {action.department}")


def register(app: typer.Typer) -> None:
    """Add `cxloop actions ...` to the root app."""
    app.add_typer(actions_app, name="actions")
