"""Rendering of list results for the CLI: a rich table for people, JSON or CSV for machines."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

# Exit codes, documented in the README. 4: the work was done but a notice could not be delivered
# (it waits in the outbox as `failed`), so cron and monitoring see it.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_HELD, EXIT_NOTICES_FAILED = 0, 1, 2, 3, 4

STATUS_STYLES = {
    "met": "green", "missed": "bold red", "at_risk": "yellow", "insufficient": "dim",
    "no_target": "", "signal_low": "red", "signal_high": "green",
    "open": "yellow", "escalated": "bold red", "verified": "green", "cancelled": "dim",
    "improved": "green", "worsened": "red", "no_change": "yellow",
    "sent": "green", "failed": "red", "pending": "yellow", "no_route": "magenta",
    "completed": "green", "held": "bold yellow", "running": "cyan",
}


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 4)
    return value


# A cell a spreadsheet would run as a formula starts with one of these (OWASP "CSV Injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def csv_safe(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text instead of evaluating it.

    Exported cells carry customers' raw values (`=HYPERLINK(...)`, `=cmd|' /C calc'!A0`); Excel,
    LibreOffice and Sheets run a cell starting with `=`, `+`, `-`, `@`, tab or carriage return as a
    formula. OWASP's remedy is a leading single quote. Plain numbers (`-3.5`, `+2`) are left alone
    so a negative value stays a number.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def _csv_value(value: Any) -> Any:
    if isinstance(value, list | dict):
        return csv_safe(json.dumps(value, ensure_ascii=False))
    return csv_safe(_plain(value))


# ANSI/VT sequences (CSI such as `ESC[2J`, OSC such as the `ESC]8;;url BEL` hyperlink, 8-bit CSI),
# then lone C0/C1 control characters and the bidirectional overrides that reorder what is shown.
_TERMINAL_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|\x9b[0-?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """Text with the terminal's escape and control codes removed, for printing to a terminal.

    Comments and raw values come from customers: `ESC[2J` clears an admin's screen, an OSC 8
    sequence hides a link behind harmless text, a bidi override shows text in a different order.
    Tabs and line breaks stay.
    """
    return _CONTROL.sub("", _TERMINAL_SEQUENCE.sub("", text))


PIPED_WIDTH = 1000  # columns of output that goes to a pipe or a file


def cli_console(*, stderr: bool = False) -> Console:
    """The CLI's console. With a terminal on any standard stream Rich fits lines and tables to
    its width (piped into `less` too). With none (cron, CI, a scheduled run's log file) it wraps
    them at 80 columns, splitting a table's cells over several lines and a command to copy in
    two: there lines keep their length (up to `PIPED_WIDTH`), unless COLUMNS asks for a width."""
    if os.environ.get("COLUMNS") or any(_is_terminal(fd) for fd in (0, 1, 2)):
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=PIPED_WIDTH)


def _is_terminal(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


_LABEL_STYLES = {"warning": "bold yellow", "note": "bold yellow"}  # any other label: an error


def print_error(label: str, message: str, console: Console | None = None) -> None:
    """An error (or a warning, a note) on stderr: the label in bold red (yellow), the message as
    plain text.

    Never Rich markup: `[...]` in a path, a value or a config key must show as written, not be
    eaten as a style tag (or crash the printer as an unknown closing tag)."""
    err = console or cli_console(stderr=True)
    err.print(Text.assemble((label, _LABEL_STYLES.get(label, "bold red")), " ", terminal_safe(message)),
              highlight=False, soft_wrap=True)


def _cell(value: Any) -> str:
    return terminal_safe(_cell_text(value))


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def emit(rows: Sequence[dict[str, Any]], fmt: Format | str, columns: Sequence[str] | None = None,
         title: str | None = None, console: Console | None = None) -> None:
    """Print rows; JSON and CSV keep every key, the table shows `columns` (default: all)."""
    fmt = Format(fmt)
    if fmt is Format.json:
        sys.stdout.write(json.dumps([{k: _plain(v) for k, v in r.items()} for r in rows],
                                    ensure_ascii=False, indent=2, default=str) + "\n")
        return
    cols = list(columns or (rows[0].keys() if rows else []))
    if fmt is Format.csv:
        buf = io.StringIO()
        keys = list(rows[0].keys()) if rows else cols
        writer = csv.DictWriter(buf, fieldnames=[csv_safe(k) for k in keys], extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({csv_safe(k): _csv_value(v) for k, v in r.items()})
        sys.stdout.write(buf.getvalue())
        return
    console = console or cli_console()
    table = Table(title=title, show_lines=False, header_style="bold")
    for c in cols:
        table.add_column(c, overflow="fold")
    for r in rows:
        cells = []
        for c in cols:
            text = _cell(r.get(c))
            style = STATUS_STYLES.get(text, "") if c in {"status", "signal", "verdict", "gate"} else ""
            cells.append(f"[{style}]{text}[/]" if style else text.replace("[", r"\["))
        table.add_row(*cells)
    if not rows:
        console.print(Text(f"{title + ': ' if title else ''}nothing to show", style="dim"))
    else:
        console.print(table)
