"""CLI commands of the collect area: `init`, `collect`, `imports`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cxloop.commands.common import ConfigOpt, CxError, FormatOpt, OptionalPeriodOpt, PeriodOpt, load
from cxloop.output import EXIT_ERROR, EXIT_USAGE, Format, cli_console, emit, print_error

IMPORT_COLUMNS = ["id", "started_at", "period", "source", "file", "rows_read", "loaded", "updated",
                  "duplicates", "rejected", "out_of_period", "error", "warnings"]
SUMMARY_COLUMNS = ["source", "file", "read", "loaded", "updated", "duplicates", "rejected",
                   "out_of_period"]
OUTCOME_COLUMNS = ["file", "read", "stored", "skipped", "unchanged", "error"]


def init(
    directory: Annotated[Path, typer.Argument(help="Where to write cxloop.toml and data/.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write a commented example cxloop.toml and a small sample data folder it collects as is."""
    from cxloop.tasks.collect import CannotWrite, write_example_project

    try:
        written = write_example_project(directory, force=force)
    except (FileExistsError, CannotWrite) as exc:
        raise CxError(str(exc)) from None
    out = cli_console()
    for path in written:
        out.print(f"wrote {path}", highlight=False, markup=False)
    config = directory / "cxloop.toml"
    out.print(f"\nNext: edit {escape(str(config))}, then run  "
              f"[bold]cxloop collect --period 2026-10 --config {escape(str(config))}[/]", highlight=False)


def collect(period: PeriodOpt, config: ConfigOpt = None, fmt: FormatOpt = Format.table) -> None:
    """Read every [[sources]] entry and load the responses submitted in the period (idempotent)."""
    from cxloop.tasks.collect import collect_period

    settings, engine = load(config)
    if not settings.sources:
        raise CxError("the config has no [[sources]]; add one (see `cxloop init`)")
    summary = collect_period(settings, engine, period)
    rows = [i.row() for i in summary.imports]
    if fmt is Format.table and len(rows) > 1:
        total = {"source": "total", "file": f"{len(rows)} file(s)", "read": summary.total("rows_read")}
        total.update({k: summary.total(k) for k in SUMMARY_COLUMNS[3:]})
        total["loaded"] = summary.total("loaded")
        rows = [*rows, total]
    emit(rows, fmt, columns=SUMMARY_COLUMNS, title=f"collect {period}")
    if summary.outcomes is not None and fmt is Format.table:
        emit([f.row() for f in summary.outcomes.files], fmt, columns=OUTCOME_COLUMNS, title="outcomes")
    err = cli_console(stderr=True)
    for line in summary.warning_lines:
        print_error("warning", line, err)
    if summary.errors:
        for line in summary.errors:
            print_error("error", line, err)
        # a mapped outcomes column the file lacks is a config to fix (2), like a bad key
        raise typer.Exit(EXIT_USAGE if summary.outcomes and summary.outcomes.config_error else EXIT_ERROR)


def imports(
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
    period: OptionalPeriodOpt = None,
    source: Annotated[str | None, typer.Option("--source", "-s", help="Only this source.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many, newest first.")] = 50,
) -> None:
    """List import records: source, file, content hash, rows read / loaded / duplicates / updated /
    rejected / out of period, and the error of a file that could not be read."""
    from cxloop.tasks.collect import list_imports

    _, engine = load(config)
    emit(list_imports(engine, period=period, source=source, limit=limit or None), fmt,
         columns=IMPORT_COLUMNS, title="imports")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("init")(init)
    app.command("collect")(collect)
    app.command("imports")(imports)
