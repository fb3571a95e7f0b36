"""Options and set-up shared by every command: config loading, database, period and format options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine

from cxloop.config import Settings, load_settings
from cxloop.db import open_db
from cxloop.output import Format
from cxloop.periods import parse_period

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (default: $CXLOOP_CONFIG or ./cxloop.toml).",
                 show_default=False),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]


def _period(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_period(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


PeriodOpt = Annotated[str, typer.Option("--period", "-p", help="Cycle month, YYYY-MM.", callback=_period)]
OptionalPeriodOpt = Annotated[
    str | None, typer.Option("--period", "-p", help="Cycle month, YYYY-MM.", callback=_period)
]


class CxError(Exception):
    """An error the user can fix; printed without a traceback, exit code 1."""


def load(config: Path | None) -> tuple[Settings, Engine]:
    """Settings and a migrated database, the two things almost every command needs."""
    settings = load_settings(config)
    return settings, open_db(settings.database_url)
