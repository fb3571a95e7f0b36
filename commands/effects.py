"""`cxloop effects`: the re-measurements of corrective actions - did each one work?"""

from __future__ import annotations

from typing import Annotated

import typer

from cxloop.commands.common import ConfigOpt, FormatOpt, OptionalPeriodOpt, load
from cxloop.output import Format, emit

COLUMNS = ["action_id", "period", "value", "n", "change", "change_ci_low", "change_ci_high", "effect",
           "effect_ci_low", "effect_ci_high", "verdict"]
TABLE_COLUMNS = ["action_id", "period", "value", "n", "change", "effect", "effect_ci_low", "effect_ci_high",
                 "verdict", "method", "decision"]


def effects(
    period: OptionalPeriodOpt = None,
    action: Annotated[int | None, typer.Option("--action", "-a", help="Only this action id.")] = None,
    fmt: FormatOpt = Format.table,
    config: ConfigOpt = None,
) -> None:
    """Each action's measurement: value now, change since its baseline, effect against comparable
    scopes (difference-in-differences) with intervals, and the verdict.

    Verdicts: improved / worsened (the effect's interval lies above / below zero in the KPI's
    better direction), no_change (the interval covers zero), insufficient (too few responses).
    """
    from cxloop.tasks.remeasure import list_measurements

    _, engine = load(config)
    rows = list_measurements(engine, period=period, action_id=action)
    if fmt is Format.table:
        emit(rows, fmt, TABLE_COLUMNS, title="Effects of corrective actions")
    else:
        emit([{k: r[k] for k in (*COLUMNS, "baseline", "method", "comparison_scopes", "decision", "note")}
              for r in rows], fmt)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("effects")(effects)
