"""`cxloop quarantine ...`: see, export and readmit the rows the data-quality gate held back.

Rows come from both stages that quarantine: `collect` (rows that could not be parsed) and
`validate` (rows that failed a GX row expectation). Each keeps its source, `response_id` where it has
one, the raw values and every reason, so an admin can fix the source and bring the rows back.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from cxloop.commands.common import ConfigOpt, CxError, FormatOpt, PeriodOpt, load
from cxloop.models import CANONICAL_FIELDS, QuarantinedRow
from cxloop.output import Format, emit
from cxloop.tasks.quarantine import quarantined_rows

quarantine = typer.Typer(help="Rows held back by the data-quality gate: list, show, export, readmit.",
                         no_args_is_help=True)

ALL_OPT = Annotated[bool, typer.Option("--all", help="Include rows already readmitted.")]
STAGE_OPT = Annotated[str | None, typer.Option("--stage", help="Only this stage: collect | validate.")]


def _reason_text(reasons: list[dict[str, Any]]) -> str:
    return "; ".join(str(r.get("message") or r.get("expectation") or r) for r in reasons)


def _summary(q: QuarantinedRow) -> dict[str, Any]:
    return {
        "id": q.id, "source": q.source, "row_key": q.row_key, "response_id": q.response_id,
        "stage": q.stage, "reasons": len(q.reasons or []),
        "first_reason": _reason_text((q.reasons or [])[:1]),
        "readmitted_at": q.readmitted_at,
    }


def _full(q: QuarantinedRow) -> dict[str, Any]:
    return {
        "id": q.id, "period": q.period, "source": q.source, "row_key": q.row_key,
        "response_id": q.response_id, "file": q.file, "line": q.line, "stage": q.stage,
        "created_at": q.created_at, "readmitted_at": q.readmitted_at,
        "raw": q.raw or {}, "reasons": q.reasons or [],
    }


def _flat(q: QuarantinedRow) -> dict[str, Any]:
    """One CSV line: bookkeeping, every reason in one cell, then the raw values as columns."""
    out = {k: v for k, v in _full(q).items() if k not in ("raw", "reasons")}
    out["reasons"] = _reason_text(q.reasons or [])
    # validate's reasons name an expectation, collect's the check that refused the value
    out["expectations"] = ",".join(str(r.get("expectation") or r.get("check") or "") for r in q.reasons or [])
    raw = q.raw or {}
    for key in [*CANONICAL_FIELDS, *sorted(set(raw) - set(CANONICAL_FIELDS))]:
        val = raw.get(key)
        out[f"raw.{key}"] = json.dumps(val, ensure_ascii=False) if isinstance(val, list | dict) else val
    return out


@quarantine.command("list")
def list_rows(period: PeriodOpt, fmt: FormatOpt = Format.table, include_readmitted: ALL_OPT = False,
              stage: STAGE_OPT = None, config: ConfigOpt = None) -> None:
    """List quarantined rows of a period with their first reason."""
    _settings, engine = load(config)
    rows = [_summary(q) for q in quarantined_rows(engine, period, include_readmitted, stage)]
    emit(rows, fmt, columns=["id", "source", "row_key", "stage", "reasons", "first_reason"],
         title=f"Quarantined rows {period}")


@quarantine.command("show")
def show(key: Annotated[str, typer.Argument(help="Quarantine id, row key (response_id or file:line), "
                                                 "or source|row_key.")],
         period: PeriodOpt, fmt: FormatOpt = Format.table, config: ConfigOpt = None) -> None:
    """Show one quarantined row: raw values and every reason."""
    _settings, engine = load(config)
    rows = quarantined_rows(engine, period, True, None)
    found = [q for q in rows if str(q.id) == key or q.row_key == key or f"{q.source}|{q.row_key}" == key]
    if len(found) > 1:
        found = [q for q in found if str(q.id) == key] or found
    if not found:
        raise CxError(f"no quarantined row {key!r} in {period} "
                      f"(see `cxloop quarantine list --period {period}`)")
    if len(found) > 1:
        raise CxError(f"{key!r} matches {len(found)} rows in {period} (sources "
                      f"{', '.join(q.source for q in found)}); use the id or source|row_key")
    q = found[0]
    if fmt is not Format.table:
        if fmt is Format.json:
            sys.stdout.write(json.dumps(_full(q), ensure_ascii=False, indent=2, default=str) + "\n")
        else:
            emit([_flat(q)], fmt)
        return
    head = {k: v for k, v in _full(q).items() if k not in ("raw", "reasons")}
    emit([{"field": k, "value": v} for k, v in head.items()], fmt, title=f"Quarantined row {q.id}")
    emit([{"field": k, "value": v} for k, v in (q.raw or {}).items()], fmt, title="Raw values")
    emit([{k: r.get(k) for k in ("expectation", "column", "value", "message")} for r in q.reasons or []],
         fmt, title="Reasons")


class ExportFormat(StrEnum):
    """What `quarantine export` writes: a file to fix rows in (`quarantine list` shows a table)."""

    csv = "csv"
    json = "json"


@quarantine.command("export")
def export(period: PeriodOpt,
           fmt: Annotated[ExportFormat, typer.Option("--format", "-f")] = ExportFormat.csv,
           out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here, not to stdout.")] = None,
           include_readmitted: ALL_OPT = False, stage: STAGE_OPT = None, config: ConfigOpt = None) -> None:
    """Export quarantined rows (raw values + reasons) to fix them at the source (`quarantine list`
    shows them as a table)."""
    _settings, engine = load(config)
    rows = quarantined_rows(engine, period, include_readmitted, stage)
    data = [_full(q) for q in rows] if fmt is ExportFormat.json else [_flat(q) for q in rows]
    if out is None:
        emit(data, fmt)
        return

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        emit(data, fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(buf.getvalue(), encoding="utf-8")
    typer.echo(f"{len(rows)} row(s) written to {out}", err=True)


@quarantine.command("readmit")
def readmit_cmd(period: PeriodOpt, fmt: FormatOpt = Format.table, config: ConfigOpt = None) -> None:
    """Re-run the checks on the period after fixing rows; corrected rows come back."""
    settings, engine = load(config)
    from cxloop.tasks.validate import SuiteError, readmit

    try:
        result = readmit(settings, engine, period)
    except SuiteError as exc:
        raise CxError(str(exc)) from None
    emit([result], fmt, title=f"Readmit {period}")
    if result["readmitted"]:  # the stored KPIs, actions and report do not count them yet
        typer.echo(f"{result['readmitted']} row(s) readmitted: run the cycle again (`cxloop run --period "
                   f"{period}`) so its KPIs, actions and report count them.", err=True)
    if result["collect_quarantined"]:
        typer.echo(f"{result['collect_quarantined']} row(s) could not be parsed at collection; fix the "
                   f"source file and re-collect (`cxloop collect --period {period}`).", err=True)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(quarantine, name="quarantine")
