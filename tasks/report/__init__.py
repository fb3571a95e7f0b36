"""The monthly CX report: data assembly from the database, then one Jinja2 template per language.

Every KPI number on the page is read from `KpiResult` (what `cxloop kpis` shows), never recomputed,
so the report and the CLI cannot disagree. Only the journey map and the comment summary are
computed here, from the period's feedback rows, because no stored result holds every
journey stage x touchpoint crossing. The page is self-contained (inline CSS and SVG): it opens
offline, travels as an e-mail attachment and prints.
"""

from cxloop.tasks.report.feedback import department_rows, load_feedback, summarise_feedback
from cxloop.tasks.report.formatting import HEADLINE_KPIS, fmt
from cxloop.tasks.report.limits import xmr_limits
from cxloop.tasks.report.pages import build_report, render_report, report_dir, report_filename, write_reports
from cxloop.tasks.report.pdf import write_pdf

__all__ = [
    "HEADLINE_KPIS",
    "build_report",
    "department_rows",
    "fmt",
    "load_feedback",
    "render_report",
    "report_dir",
    "report_filename",
    "summarise_feedback",
    "write_pdf",
    "write_reports",
    "xmr_limits",
]
