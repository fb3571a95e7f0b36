"""How the report says things: which KPIs it shows, their digits and axis ranges, and the
reader's words for action states.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from cxloop.tasks.rendering import translate
from cxloop.vocabulary import (
    DOMAINS,
)

HEADLINE_KPIS = ("nps", "csat", "ces", "cx_index")
SCORECARD_KPIS = ("nps", "csat", "ces", "cx_index", "complaint_rate", "first_response_hours",
                  "resolution_hours", "resolution_sla")
TREND_CYCLES = 12
# Action statuses and re-measurement verdicts as a reader says them.
STATE_LABELS = {"in_progress": "in progress", "no_change": "no detectable change",
                "insufficient": "insufficient data"}


def label(value: str, lang: str) -> str:
    """A stored id (journey stage, status, ...) as text: the catalog's word, else the id de-snaked."""
    text = STATE_LABELS.get(value, value)
    out = translate(text, lang)
    return out.replace("_", " ") if out == text else out


def kpi_digits(kpi: str, value: float | None = None) -> int:
    """Decimals shown for a KPI: the CES mean (1-7) needs two; percentages, nets and hours one."""
    if kpi == "ces":
        return 2
    if kpi == "responses":
        return 0
    return 1


def fmt(kpi: str, value: float | None) -> str:
    """The one formatting of a KPI value used everywhere on the page (tests parse it back)."""
    if value is None:
        return "–"
    return f"{value:.{kpi_digits(kpi, value)}f}"


def _domain(kpi: str, values: Iterable[float | None]) -> tuple[float, float]:
    if kpi in DOMAINS:
        return DOMAINS[kpi]
    vals = [v for v in values if v is not None]
    if kpi.endswith(("_rate", "_share", "_sla")) or kpi in {"csat", "ces_top"}:
        return (0.0, 100.0)  # percentages, as tasks.kpis stores them
    return (0.0, max(vals + [1.0]) * 1.1)


def _ordered(values: Iterable[Any], vocabulary: Sequence[str]) -> list[str]:
    vals = {str(v) for v in values}
    return [v for v in vocabulary if v in vals] + sorted(vals - set(vocabulary))
