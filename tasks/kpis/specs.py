"""What each KPI is: its family, kind, interval method, scopes and the columns it reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cxloop.config import KpiConfig, Settings
from cxloop.models import SCOPE_FIELDS, SCORE_FIELDS
from cxloop.vocabulary import (
    KPIS,
    OVERALL,
    TOPIC,
)

BASE_SCOPES: tuple[str, ...] = (OVERALL, *SCOPE_FIELDS, TOPIC)

Kind = Literal["net", "top", "flag", "mean", "quantile", "order_quantile", "index", "count"]


@dataclass(frozen=True)
class KpiSpec:
    """How one KPI is read from its family's histogram."""

    kind: Kind
    family: str
    low: int = 0  # net: bins <= low are negative
    high: int = 0  # net: bins >= high are positive; top: bins >= high count
    q: float = 0.5  # quantile

    @property
    def chart(self) -> str | None:
        if self.kind == "count":
            return None
        return "laney_p" if self.kind in ("top", "flag") else "xmr"


SPECS: dict[str, KpiSpec] = {
    "nps": KpiSpec("net", "nps", low=6, high=9),
    "csat": KpiSpec("top", "csat", high=4),
    "ces": KpiSpec("mean", "ces"),
    "ces_top": KpiSpec("top", "ces", high=5),
    "cx_index": KpiSpec("index", "cx"),
    "cx_success": KpiSpec("net", "cx_success", low=3, high=6),
    "cx_effort": KpiSpec("net", "cx_effort", low=3, high=6),
    "cx_emotion": KpiSpec("net", "cx_emotion", low=3, high=6),
    "complaint_rate": KpiSpec("flag", "complaint"),
    "first_response_hours": KpiSpec("quantile", "first_response", q=0.5),
    "first_response_p90": KpiSpec("quantile", "first_response", q=0.9),
    "first_response_sla": KpiSpec("flag", "first_response_sla"),
    "resolution_hours": KpiSpec("quantile", "resolution", q=0.5),
    "resolution_p90": KpiSpec("quantile", "resolution", q=0.9),
    "resolution_sla": KpiSpec("flag", "resolution_sla"),
    "responses": KpiSpec("count", "rows"),
    "theme_share": KpiSpec("flag", "share"),
    "theme_negative_share": KpiSpec("flag", "share"),
    # Follow-up cases (tasks.cases.kpis builds these families from the period's cases).
    "followup_rate": KpiSpec("flag", "case_contacted"),
    "first_contact_hours": KpiSpec("order_quantile", "case_first_contact", q=0.5),
    "first_contact_p90": KpiSpec("order_quantile", "case_first_contact", q=0.9),
    "first_contact_sla": KpiSpec("flag", "case_contact_sla"),
    "recovery_rate": KpiSpec("flag", "case_recovered"),
}
KPI_ORDER: tuple[str, ...] = KPIS
assert tuple(SPECS) == KPIS, "every KPI of the vocabulary has a recipe, in its order"

METHODS = {"net": "adjusted_wald", "top": "wilson", "flag": "wilson", "mean": "bootstrap_poisson",
           "quantile": "bootstrap_exact", "order_quantile": "order_statistic", "index": "delta",
           "count": "count"}

# Columns a KPI computation reads. Derived ones are computed in `load_responses`.
DERIVED_COLUMNS = ("first_response_hours", "resolution_hours", "has_comment")
KPI_COLUMNS: tuple[str, ...] = (
    *SCOPE_FIELDS, *SCORE_FIELDS, "is_complaint", "sentiment", "themes", *DERIVED_COLUMNS,
)
_DURATIONS = {"first_response": "first_response_at", "resolution": "resolved_at"}
_HIST_COLUMNS = ["scope", "scope_value", "family", "bin", "count"]


def _kcfg(settings: Settings | None) -> KpiConfig:
    return settings.kpis if settings is not None else KpiConfig()
