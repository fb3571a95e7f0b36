"""CLI of the notify area: `cxloop notify` (queue and send a cycle's notices) and `cxloop outbox`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxloop.commands.common import ConfigOpt, CxError, FormatOpt, OptionalPeriodOpt, load
from cxloop.output import EXIT_NOTICES_FAILED, Format, emit, print_error
from cxloop.tasks.cycles import gate_held

COLUMNS = ["id", "period", "recipient", "kind", "language", "status", "attempts", "route", "last_error"]


def notify(
    config: ConfigOpt = None,
    period: OptionalPeriodOpt = None,
    retry: Annotated[bool, typer.Option("--retry", help="Only re-send pending/failed messages now, "
                                        "ignoring the back-off (every period unless --period).")] = False,
    dry_run: Annotated[Path | None, typer.Option("--dry-run", help="Write the messages that would be "
                                                  "sent to files in this folder; send nothing.",
                                                  file_okay=False)] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Queue a cycle's notices (digests, escalations, or the data-owner alert when the gate held)
    and deliver them through Apprise.

    --dry-run DIR writes the notices that would go out to files (HTML for e-mail routes, Markdown
    for chat routes) and prints them; nothing is sent or stored.
    """
    from cxloop.tasks.notify import deliver, outbox_rows, preview, queue_notices  # on use: not at start-up

    settings, engine = load(config)
    if not retry and period is None and dry_run is None:
        raise CxError("give --period YYYY-MM to queue a cycle's notices, or --retry to re-send")
    if retry or period is None:  # the outbox as it stands (a dry run of it without --period)
        summary = deliver(settings, engine, period=period, dry_run_dir=dry_run, force=True, carry_over=False)
    else:
        held = gate_held(engine, period)
        if dry_run is not None:
            summary = preview(settings, engine, period, held, dry_run)
        else:
            queue_notices(settings, engine, period, held=held)
            summary = deliver(settings, engine, period=period)
    if dry_run is not None:
        if fmt is Format.table:
            for path in summary.files:
                typer.echo(f"==> {path}")
                typer.echo(path.read_text(encoding="utf-8"))
        emit(summary.messages, fmt, COLUMNS[:-1], title=f"dry run: {len(summary.files)} file(s) in {dry_run}")
        if period is not None and not summary.files and (sent := outbox_rows(engine, period, "sent")):
            typer.echo(f"nothing would go out again: {len(sent)} notice(s) of {period} were sent already "
                       f"(`cxloop outbox --period {period}` lists them)", err=True)
        return
    emit(summary.messages, fmt, COLUMNS, title="notices")
    if fmt is Format.table:
        counts = summary.counts()
        typer.echo(", ".join(f"{k} {v}" for k, v in counts.items() if v), err=True)
    if summary.failed:
        print_error("error", f"{summary.failed} notice(s) could not be delivered; they stay failed in "
                    "the outbox (`cxloop outbox --status failed`) and are retried by the next run or "
                    "`cxloop notify --retry`")
        raise typer.Exit(EXIT_NOTICES_FAILED)


def outbox(
    config: ConfigOpt = None,
    period: OptionalPeriodOpt = None,
    status: Annotated[str | None, typer.Option(
        "--status", help="pending | sending | sent | failed | no_route")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """List the outbox: every notice, where it goes (secrets masked), its status and last error."""
    from cxloop.tasks.notify import outbox_rows

    if status is not None and status not in ("pending", "sending", "sent", "failed", "no_route"):
        raise typer.BadParameter("use pending, sending, sent, failed or no_route", param_hint="--status")
    _, engine = load(config)
    emit(outbox_rows(engine, period, status), fmt, COLUMNS + ["sent_at"], title="outbox")


def register(app: typer.Typer) -> None:
    """Add `notify` and `outbox` to the root app."""
    app.command("notify")(notify)
    app.command("outbox")(outbox)
