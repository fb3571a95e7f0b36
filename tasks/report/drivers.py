"""The report's "What drives the score" section: the key drivers of the page's outcome (company, or
the department's own when it has enough responses), as a table and an importance x performance
priority matrix, with intervals, and ties shown as ties (`tasks.drivers`, docs/methods.md).
Absent when no `[[drivers]]` are configured or no scope had enough rated responses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from markupsafe import Markup

from cxloop.config import DriverConfig, Settings
from cxloop.tasks import charts
from cxloop.tasks.drivers import DriverAnalysis, DriverResult
from cxloop.tasks.rendering import translate
from cxloop.tasks.report.scorecard import _dept_name
from cxloop.vocabulary import kpi_label

Analyses = Mapping[tuple[str, str], DriverAnalysis]
QUADRANT_TEXT = {"fix": "Fix first", "maintain": "Keep up", "monitor": "Watch", "surplus": "Above need"}


@dataclass
class DriverRow:
    driver: str
    label: str
    owner: str
    rank: str  # "1", or "=1" when tied
    tied: bool
    share: str  # importance: % of the explained variance
    share_ci: str
    mean: str  # performance: mean on the driver's own scale
    mean_ci: str
    scale: str
    quadrant: str
    quadrant_label: str


@dataclass
class DriversSection:
    outcome: str
    scope_note: str
    n: int
    r2: str
    r2_ci: str
    rows: list[DriverRow]
    chart: Markup
    excluded: list[str] = field(default_factory=list)


def driver_label(driver: DriverConfig | None, name: str, lang: str) -> str:
    """A driver's name in the reader's language (the other one, then its id, as fallbacks)."""
    if driver is None:
        return name
    first, second = (driver.label_zh, driver.label_en) if lang == "zh" else (driver.label_en, driver.label_zh)
    return first or second or name


def rank_text(result: DriverResult) -> str:
    return f"={result.rank}" if result.tied else str(result.rank)


def pick_analysis(analyses: Analyses, department: str | None) -> tuple[DriverAnalysis, bool] | None:
    """The department's own analysis, else the company's (and whether it is the company's)."""
    if department is not None and ("department", department) in analyses:
        return analyses[("department", department)], False
    overall = analyses.get(("overall", "all"))
    return (overall, True) if overall is not None else None


def drivers_section(settings: Settings, analyses: Analyses, department: str | None,
                    lang: str) -> DriversSection | None:
    picked = pick_analysis(analyses, department)
    if picked is None:
        return None
    analysis, company_wide = picked
    declared = {d.name: d for d in settings.drivers}

    def t(text: str) -> str:
        return translate(text, lang)

    rows: list[DriverRow] = []
    points: list[charts.MatrixPoint] = []
    for d in analysis.ranked():
        cfg = declared.get(d.driver)
        lo, hi = cfg.scale if cfg else (0.0, 1.0)
        owner = settings.driver_owner(cfg) if cfg else None
        name = driver_label(cfg, d.driver, lang)
        rows.append(DriverRow(
            driver=d.driver, label=name, owner=_dept_name(settings, owner) if owner else "",
            rank=rank_text(d), tied=d.tied, share=f"{d.share:.0f}%",
            share_ci=f"{d.share_low:.0f}–{d.share_high:.0f}%",
            mean=f"{d.mean:.2f}", mean_ci=f"{d.mean_low:.2f}–{d.mean_high:.2f}", scale=f"{lo:g}–{hi:g}",
            quadrant=d.quadrant, quadrant_label=t(QUADRANT_TEXT[d.quadrant])))

        def perf(v: float, lo: float = lo, hi: float = hi) -> float:
            return (v - lo) / (hi - lo) * 100 if hi > lo else 50.0

        points.append(charts.MatrixPoint(name, d.share, d.share_low, d.share_high, d.performance,
                                         perf(d.mean_low), perf(d.mean_high), rank_text(d),
                                         fix=d.quadrant == "fix"))
    shares = [d.share for d in analysis.drivers]
    perfs = [d.performance for d in analysis.drivers]
    chart = charts.priority_matrix(
        points, x_cut=sum(shares) / len(shares), y_cut=sum(perfs) / len(perfs),
        title=t("Priority matrix: importance x performance"),
        x_label=t("Importance (% of explained variance)"),
        y_label=t("Performance (0–100 of the scale)"),
        quadrants=[t(QUADRANT_TEXT[q]) for q in ("surplus", "maintain", "monitor", "fix")])
    excluded = [driver_label(declared.get(k), k, lang) for k in sorted(analysis.excluded)]
    note = t("Company-wide drivers (this department has too few rated responses of its own).") \
        if company_wide and department is not None else ""
    return DriversSection(
        outcome=kpi_label(analysis.outcome, lang), scope_note=note, n=analysis.n, r2=f"{analysis.r2:.2f}",
        r2_ci=f"{analysis.r2_low:.2f}–{analysis.r2_high:.2f}", rows=rows, chart=chart, excluded=excluded)
