"""Reading pages: the company dashboard, a department's page, and the data owners' quality page.

KPIs, charts, themes and comments come from `tasks.report.build_report` (the monthly report's own
data and inline-SVG charts), so the workspace and the report can never disagree.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from sqlmodel import Session, col, select

from cxloop.db import session_scope
from cxloop.models import Cycle, QualityCheck, QuarantinedRow
from cxloop.tasks.rendering import render
from cxloop.tasks.report import build_report
from cxloop.tasks.report.formatting import label
from cxloop.vocabulary import KPI_STATUS_LABELS, kpi_status_label
from cxloop.web import access
from cxloop.web.app import Refused, Web
from cxloop.web.routes_actions import today
from cxloop.web.users import audit
from cxloop.web.views import Filters, find_actions, labels

QUARANTINE_PAGE = 200


def _report(web: Web, period: str, department: str | None, lang: str) -> Any:
    return web.reports.get(web.engine, period, department, lang,
                           lambda: build_report(web.settings, web.engine, period, department, lang))


def _report_context(r: Any, lang: str) -> dict[str, Any]:
    return {"r": r, "status_labels": {k: kpi_status_label(k, lang) for k in KPI_STATUS_LABELS},
            "tr": lambda text: label(str(text), lang)}


def _dashboard_part(web: Web, period: str, lang: str, full: bool, department: str | None) -> Markup:
    """The dashboard's report sections (tiles, scorecard, journey map), rendered once per data
    stamp for each kind of reader (full view, or a department's) instead of on every request."""
    own = None if full else department

    def build() -> Markup:
        return Markup(render("web/_dashboard_report.html", lang, full=full, own_department=own, period=period,
                             departments=web.department_names(),
                             **_report_context(_report(web, period, None, lang), lang)))

    return web.reports.get(web.engine, period, None, lang, build,
                           part=f"dashboard:{'full' if full else own or ''}")


def register(app: FastAPI, web: Web) -> None:
    @app.get("/")
    def dashboard(request: Request) -> Response:
        user = web.user(request)
        period = web.period(request)
        lang = web.lang(user)
        context: dict[str, Any] = {"period": period}
        if period is not None:
            context["report_part"] = _dashboard_part(web, period, lang, access.sees_everything(user),
                                                     user.department)
        return web.page(request, "dashboard.html", user, **context)

    @app.get("/departments/{department}")
    def department_page(request: Request, department: str) -> Response:
        user = web.user(request)
        if department not in web.department_names():
            raise Refused(404, f"no department {department!r}")
        if not access.can_see_department(user, department):
            raise Refused(403, f"department {department!r} is not yours")
        period = web.period(request)
        lang = web.lang(user)
        context: dict[str, Any] = {"period": period, "department": department,
                                   "department_name": web.department_names()[department]}
        if period is not None and department in web.settings.departments:
            context.update(_report_context(_report(web, period, department, lang), lang))
        rows, total = find_actions(web.engine, Filters(status="active"), department, today(web))
        context.update(rows=[(a, labels(web.settings, a, lang, today(web))) for a in rows], total=total)
        return web.page(request, "department.html", user, **context)

    @app.get("/quality")
    def quality(request: Request) -> Response:
        user = web.user(request)
        if not access.can_handle_quality(user):
            raise Refused(403, "the data-quality page is for the data owners (admins)")
        period = web.period(request)
        cycle, checks, rows = None, [], []
        if period is not None:
            with Session(web.engine) as session:
                cycle = session.exec(select(Cycle).where(Cycle.period == period)).first()
                checks = list(session.exec(select(QualityCheck).where(QualityCheck.period == period)
                                           .order_by(col(QualityCheck.success), col(QualityCheck.id))).all())
                rows = list(session.exec(select(QuarantinedRow).where(QuarantinedRow.period == period,
                                                                      col(QuarantinedRow.readmitted_at).is_(None))
                                         .order_by(col(QuarantinedRow.id)).limit(QUARANTINE_PAGE)).all())
        return web.page(request, "quality.html", user, period=period, cycle=cycle, checks=checks, rows=rows,
                        limit=QUARANTINE_PAGE, result=None)

    @app.post("/quality/readmit")
    async def readmit(request: Request) -> Response:
        user = web.user(request)
        form = await web.form(request)
        if not access.can_handle_quality(user):
            raise Refused(403, "readmitting rows is for the data owners (admins)")
        from cxloop.periods import parse_period
        from cxloop.tasks.validate import SuiteError
        from cxloop.tasks.validate import readmit as readmit_rows

        try:
            period = parse_period(form.get("period", ""))
            result = readmit_rows(web.settings, web.engine, period)
        except (ValueError, SuiteError) as exc:
            raise Refused(400, str(exc)) from None
        with session_scope(web.engine) as session:
            audit(session, user.name, "readmit", f"period:{period}",
                  ", ".join(f"{k}={v}" for k, v in result.items()))
        return RedirectResponse(f"/quality?period={period}&readmitted={result.get('readmitted', 0)}",
                                status_code=303)
