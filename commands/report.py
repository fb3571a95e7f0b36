"""`cxloop report`: write the monthly CX report (company page and one page per department)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine

from cxloop.commands.common import ConfigOpt, CxError, PeriodOpt, load
from cxloop.output import print_error


def _lang(value: str | None) -> str | None:
    if value is not None and value not in ("zh", "en"):
        raise typer.BadParameter(f"{value!r}: use zh or en")
    return value


def report_command(
    period: PeriodOpt,
    department: Annotated[str | None, typer.Option(
        "--department", "-d", help="Only this department's page (id from the config).")] = None,
    lang: Annotated[str | None, typer.Option(
        "--lang", "-l", help="zh or en (default: project language; a department's own language).",
        callback=_lang)] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write one page to this file (the company page, or --department's).",
        show_default=False)] = None,
    journey_kpi: Annotated[str, typer.Option(
        "--journey-kpi", help="KPI of the journey map: nps, csat, ces, ces_top or cx_index.")] = "nps",
    pdf: Annotated[bool, typer.Option(
        "--pdf", help="Also print each page to PDF with headless Chromium.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Write the HTML report of a cycle and print the path(s) written.

    Without --department and --out: the company report and every department's report under
    reports/<period>/. The pages are self-contained: open them offline, attach them, print them.
    """
    from cxloop.tasks.report import render_report, report_dir, report_filename, write_pdf, write_reports
    from cxloop.tasks.report.journey import check_journey_kpi
    from cxloop.tasks.report.pages import check_department

    try:  # bad usage (exit 2), before the config is read
        check_journey_kpi(journey_kpi)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--journey-kpi") from None
    settings, engine = load(config)
    try:
        check_department(settings, department)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--department") from None
    # Pages that differ from the cycle's (a forced language, another journey KPI) go to a folder of
    # their own, reports/<period>/<lang>-<kpi>/: the cycle's pages are what notices link to.
    variant = "-".join(v for v in (lang, journey_kpi if journey_kpi != "nps" else None) if v)
    folder = report_dir(settings, period) / variant if variant else report_dir(settings, period)
    try:
        if department is None and out is None:
            paths = write_reports(settings, engine, period, out_dir=folder, lang=lang,
                                  journey_kpi=journey_kpi)
        else:
            path = out or folder / report_filename(department)
            html = render_report(settings, engine, period, department, lang, journey_kpi=journey_kpi,
                                 out_dir=path.parent)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(html, encoding="utf-8")
            paths = [path]
        if pdf:
            paths += [write_pdf(p) for p in list(paths)]
    except (ValueError, OSError, RuntimeError) as exc:
        raise CxError(str(exc)) from None
    for p in paths:
        typer.echo(str(p))
    if not _has_month(engine, period):
        print_error("warning", f"{period}: no responses and no cycle for this month, so the report is "
                    "empty (collect it, or run its cycle, first)")


def _has_month(engine: Engine, period: str) -> bool:
    """Whether the period has a response or a cycle: a report of neither is empty, likely a typo."""
    from sqlmodel import Session, select

    from cxloop.models import Feedback
    from cxloop.tasks.cycles import stored_cycles

    if stored_cycles(engine, period):
        return True
    with Session(engine) as s:
        return s.exec(select(Feedback.id).where(Feedback.period == period).limit(1)).first() is not None


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("report")(report_command)
