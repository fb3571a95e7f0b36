"""The report's entry points: build one page's data, render it, and write every page of a period."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, select
from sqlmodel import Session, col

from cxloop.config import Settings
from cxloop.models import (
    Cycle,
    KpiResult,
)
from cxloop.periods import parse_period
from cxloop.tasks import charts
from cxloop.tasks.month import Month
from cxloop.tasks.ratings import month_drivers
from cxloop.tasks.rendering import render, translate
from cxloop.tasks.report.actions import _actions
from cxloop.tasks.report.cases import cases_section
from cxloop.tasks.report.data import ReportData
from cxloop.tasks.report.drivers import Analyses, drivers_section
from cxloop.tasks.report.feedback import (
    FeedbackSummary,
    _department_summary,
    summarise_feedback,
    summarise_frame,
)
from cxloop.tasks.report.formatting import HEADLINE_KPIS, label
from cxloop.tasks.report.journey import _journey
from cxloop.tasks.report.outcomes import outcomes_section
from cxloop.tasks.report.quality import _quality
from cxloop.tasks.report.scorecard import _dept_name, _headlines, _kpi_rows, _scorecard
from cxloop.tasks.report.voices import _voices
from cxloop.vocabulary import (
    KPI_STATUS_LABELS,
    KPIS,
    kpi_label,
    kpi_status_label,
)


def report_dir(settings: Settings, period: str) -> Path:
    return settings.resolve("reports") / parse_period(period)


def report_filename(department: str | None) -> str:
    return "report.html" if department is None else f"report-{department}.html"


def check_department(settings: Settings, department: str | None) -> None:
    """ValueError unless `department` is None (the company page) or a configured department."""
    if department is not None and department not in settings.departments:
        known = ", ".join(settings.departments) or "none configured"
        raise ValueError(f"unknown department {department!r}; known: {known}")


def build_report(settings: Settings, engine: Engine, period: str, department: str | None = None,
                 lang: str | None = None, journey_kpi: str = "nps", out_dir: Path | None = None,
                 feedback: pd.DataFrame | FeedbackSummary | None = None,
                 drivers: Analyses | None = None) -> ReportData:
    """Everything the template shows, as plain data (tests and other outputs can use it too).
    `drivers`: the month's key-driver analyses (None: analysed here when drivers are configured)."""
    period = parse_period(period)
    check_department(settings, department)
    lang = lang or (settings.department_language(department) if department else settings.project.language)
    out_dir = out_dir if out_dir is not None else report_dir(settings, period)
    with Session(engine) as session:
        cycle = session.scalars(select(Cycle).where(col(Cycle.period) == period)).first()
        scope, value = ("department", department) if department else ("overall", "all")
        if department is None:
            overall = {r.scope_value for r in _kpi_rows(session, [period], HEADLINE_KPIS, "overall")}
            value = "all" if "all" in overall or not overall else sorted(overall)[0]
        headlines = _headlines(session, settings, period, scope, value, lang)
        score_kpis, score_rows = _scorecard(session, settings, period, department, lang)
        provisional = bool(cycle and cycle.gate == "held") or bool(session.scalars(
            select(col(KpiResult.id)).where(col(KpiResult.period) == period,
                                            col(KpiResult.provisional).is_(True))).first())
        counts, actions = _actions(session, settings, period, department, lang)
        quality = _quality(session, period, cycle, out_dir)
        cases = cases_section(session, settings, period, department, lang)
    if isinstance(feedback, FeedbackSummary) and feedback.kpi == journey_kpi:
        company = feedback
    elif isinstance(feedback, pd.DataFrame):
        company = summarise_frame(feedback, settings, journey_kpi)
    else:
        company = summarise_feedback(engine, settings, period, journey_kpi)
    page = _department_summary(company, settings, department) if department else company
    chart, pains, rows_label, cols_label = _journey(page, company, settings, journey_kpi, lang)
    voices, complaints = _voices(page, settings, lang)
    voices_chart = charts.bar_chart(
        [(v.theme, float(v.count), f"{v.count} · {v.share:.0%}") for v in voices],
        title=translate("Top complaint themes", lang)) if voices else None
    dept_name = _dept_name(settings, department) if department else None
    if drivers is None:
        drivers = month_drivers(settings, engine, period)
    title = translate("Customer experience report", lang)
    return ReportData(
        period=period, lang=lang, title=title, company=settings.project.name, department=department,
        department_name=dept_name, provisional=provisional, headlines=headlines, score_kpis=score_kpis,
        score_rows=score_rows, journey_kpi=journey_kpi, journey_rows_label=rows_label,
        journey_cols_label=cols_label, journey_chart=chart, pain_points=pains, action_counts=counts,
        actions=actions, voices=voices, voices_chart=voices_chart, complaints=complaints,
        responses=int(page.groups["count"].sum()), quality=quality,
        kpi_labels={k: kpi_label(k, lang) for k in KPIS},
        drivers=drivers_section(settings, drivers, department, lang), cases=cases,
        outcomes=outcomes_section(settings, engine, period, lang) if department is None else None)


def render_report(settings: Settings, engine: Engine, period: str, department: str | None = None,
                  lang: str | None = None, journey_kpi: str = "nps", out_dir: Path | None = None,
                  feedback: pd.DataFrame | FeedbackSummary | None = None,
                  drivers: Analyses | None = None) -> str:
    """The report as one self-contained HTML page (`feedback`: the period's rows or their
    `FeedbackSummary`, if already loaded)."""
    data = build_report(settings, engine, period, department, lang, journey_kpi, out_dir, feedback, drivers)
    # Data-derived labels are translated here, not with `_()` in the template: jinja2's new-style
    # gettext %-formats every string, and labels such as "CSAT (% 4–5)" hold a percent sign.
    statuses = {k: kpi_status_label(k, data.lang) for k in KPI_STATUS_LABELS}
    return render("report.html", data.lang, r=data, status_labels=statuses,
                  tr=lambda text: label(str(text), data.lang))


def write_reports(settings: Settings, engine: Engine, period: str, out_dir: Path | None = None,
                  lang: str | None = None, journey_kpi: str = "nps", *,
                  month_rows: Month | None = None, drivers: Analyses | None = None) -> list[Path]:
    """Company report plus one per department, under reports/<period>/ (or out_dir).

    Department pages use the department's own language unless `lang` forces one for all.
    `month_rows`: the month the cycle shares among its stages (None: read from the database);
    `drivers`: the month's key-driver analyses (None: analysed here, once for every page)."""
    period = parse_period(period)
    target = Path(out_dir) if out_dir is not None else report_dir(settings, period)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    feedback = summarise_feedback(engine, settings, period, journey_kpi, month_rows)  # once for all pages
    if drivers is None:
        drivers = month_drivers(settings, engine, period)
    for dept in [None, *settings.departments]:
        path = target / report_filename(dept)
        html = render_report(settings, engine, period, dept, lang, journey_kpi, out_dir=target,
                             feedback=feedback, drivers=drivers)
        tmp = path.with_suffix(".html.tmp")
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written
