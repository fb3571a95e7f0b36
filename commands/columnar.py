"""`cxloop rebuild --period P`: write a period's columnar copy again from the database."""

from __future__ import annotations

import typer

from cxloop.commands.common import ConfigOpt, CxError, PeriodOpt, load


def rebuild_command(period: PeriodOpt, config: ConfigOpt = None) -> None:
    """Write the period's columnar copy (read by the stages of a big month) again from the
    database, the system of record: after restoring a backup, moving the copies' folder, or to
    have it ready before a cycle. Waits for nobody: a cycle running on the period makes it fail."""
    from cxloop.flows.bookkeeping import CycleBusy, period_lock
    from cxloop.tasks.columnar import Copies

    settings, engine = load(config)
    copies = Copies(settings.resolve(settings.engine.columnar_dir))
    try:
        with period_lock(engine, period):
            rows = copies.rebuild(engine, period)
    except CycleBusy as exc:
        raise CxError(str(exc)) from None
    except OSError as exc:
        raise CxError(f"engine.columnar_dir: cannot write {copies.path(period)} "
                      f"({exc.strerror or exc})") from None
    typer.echo(f"{rows} row(s) of {period} written to {copies.path(period)}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("rebuild")(rebuild_command)
