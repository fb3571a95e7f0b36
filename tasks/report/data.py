"""What one report page holds (`ReportData` and its parts), as the template reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from markupsafe import Markup

from cxloop.tasks import charts
from cxloop.tasks.report.formatting import fmt


@dataclass
class KpiCell:
    kpi: str
    value: float | None
    n: int
    ci_low: float | None
    ci_high: float | None
    target: float | None
    status: str
    signal: str | None
    text: str
    ci_text: str
    bar: Markup | None = None

    @classmethod
    def of(cls, row: StoredKpi, lo: float = 0, hi: float = 100) -> KpiCell:
        ci = (f"{fmt(row.kpi, row.ci_low)} – {fmt(row.kpi, row.ci_high)}"
              if row.ci_low is not None and row.ci_high is not None else "")
        bar = charts.interval_bar(row.value, row.ci_low, row.ci_high, row.target, lo=lo, hi=hi)
        return cls(row.kpi, row.value, row.n, row.ci_low, row.ci_high, row.target, row.status,
                   row.signal, fmt(row.kpi, row.value), ci, bar)


@dataclass
class Headline:
    kpi: str
    label: str
    cell: KpiCell | None
    target_text: str
    change: float | None
    change_text: str
    change_significant: bool
    change_better: bool
    previous_period: str | None
    chart: Markup


@dataclass
class ScoreRow:
    label: str
    kind: str
    cells: list[KpiCell | None]


@dataclass
class ActionRow:
    id: int
    kpi: str
    scope: str
    department: str
    owner: str
    status: str
    severity: str
    opened_period: str
    due: date | None
    overdue: bool
    baseline: str
    effect_text: str
    effect_ci: str
    verdict: str
    measured_period: str
    context: list[str] = field(default_factory=list)  # broader results short because of this one


@dataclass
class Voice:
    theme: str
    count: int
    share: float
    comments: list[str]


@dataclass
class Quality:
    files: int
    rows_read: int
    loaded: int
    duplicates: int
    updated: int
    rejected: int
    quarantined: int
    gate: str
    cycle_status: str
    risk_accepted_by: str | None
    failed_checks: list[dict[str, Any]]
    validation_link: str | None
    import_errors: list[str]


@dataclass
class ReportData:
    period: str
    lang: str
    title: str
    company: str
    department: str | None
    department_name: str | None
    provisional: bool
    headlines: list[Headline]
    score_kpis: list[str]
    score_rows: list[ScoreRow]
    journey_kpi: str
    journey_rows_label: str
    journey_cols_label: str
    journey_chart: Markup | None
    pain_points: list[str]
    action_counts: dict[str, int]
    actions: list[ActionRow]
    voices: list[Voice]
    voices_chart: Markup | None
    complaints: int
    responses: int
    quality: Quality
    kpi_labels: dict[str, str] = field(default_factory=dict)
    drivers: Any = None  # tasks.report.drivers.DriversSection, when drivers are configured and analysed
    outcomes: Any = None  # tasks.report.outcomes.OutcomesSection: company page, when [outcomes] is configured
    cases: Any = None  # tasks.report.cases.CasesSection, when the period has follow-up cases


class StoredKpi(Protocol):
    """A stored KPI result as the report reads it (a row of `KpiResult`'s table)."""

    period: str
    kpi: str
    scope: str
    scope_value: str
    n: int
    value: float | None
    ci_low: float | None
    ci_high: float | None
    target: float | None
    status: str
    signal: str | None
    stats: dict[str, Any]
