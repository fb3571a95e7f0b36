"""The customer journey map: journey stage x touchpoint cells scored with the KPI stage's
per-response scores, n in each cell, pain points marked.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
from markupsafe import Markup

from cxloop.config import Settings
from cxloop.tasks import charts
from cxloop.tasks.rendering import translate
from cxloop.tasks.report.feedback import FeedbackSummary
from cxloop.tasks.report.formatting import _ordered, fmt, kpi_digits, label
from cxloop.vocabulary import (
    kpi_label,
    lower_is_better,
    scope_label,
)

JOURNEY_KPIS = ("nps", "csat", "ces", "ces_top", "cx_index")


def check_journey_kpi(kpi: str) -> None:
    """ValueError unless the journey map can show `kpi`."""
    if kpi not in JOURNEY_KPIS:
        raise ValueError(f"the journey map cannot show {kpi!r}; use one of {', '.join(JOURNEY_KPIS)}")


_MIN_SPAN = {"nps": 20.0, "cx_index": 20.0, "csat": 10.0, "ces_top": 10.0, "ces": 0.5}


def _stats(groups: pd.DataFrame) -> tuple[float | None, int, float | None]:
    """(value, n, standard error) of the responses counted in `groups`: the mean of the per-response
    scores and their standard deviation (ddof=1) / sqrt(n), from score x count.

    Summed exactly (fractions over the few distinct scores), so the result does not depend on the
    order of the groups, which differs between databases (cx_index scores are thirds)."""
    ok = groups["_s"].notna().to_numpy()
    values, inverse = np.unique(groups["_s"].to_numpy(dtype=float)[ok], return_inverse=True)
    counts = np.bincount(inverse, weights=groups["count"].to_numpy(dtype=float)[ok], minlength=len(values))
    n = int(counts.sum())
    if n == 0:
        return None, 0, None
    pairs = [(Fraction(float(v)), int(c)) for v, c in zip(values, counts, strict=True)]
    mean = sum((v * c for v, c in pairs), Fraction(0)) / n
    if n == 1:
        return float(mean), n, None
    var = sum(((v - mean) ** 2 * c for v, c in pairs), Fraction(0)) / (n - 1)
    return float(mean), n, math.sqrt(var) / math.sqrt(n)


def _journey(page: FeedbackSummary, company: FeedbackSummary, settings: Settings, kpi: str,
             lang: str) -> tuple[Markup | None, list[str], str, str]:
    """Heat map of journey stage x touchpoint (channel when touchpoints are not recorded).

    A pain point is a crossing with enough answers whose 95% interval lies wholly on the bad side
    of the company value: clearly worse than the company, not just the lowest number by chance."""
    groups = page.groups
    col_field = "touchpoint" if groups["touchpoint"].notna().any() else "channel"
    data = groups[groups["journey_stage"].notna() & groups[col_field].notna()]
    if data.empty:
        return None, [], scope_label("journey_stage", lang), scope_label(col_field, lang)
    check_journey_kpi(kpi)
    overall, _, _ = _stats(company.groups)
    min_n = settings.kpis.min_n_per_kpi.get(kpi, settings.kpis.min_n)
    lower = lower_is_better(kpi)
    stages = _ordered(data["journey_stage"].unique(), settings.vocabulary.journey_stage)
    vocab_cols = settings.vocabulary.touchpoint if col_field == "touchpoint" else settings.vocabulary.channel
    points = _ordered(data[col_field].unique(), vocab_cols)
    cells: dict[tuple[str, str], charts.HeatCell] = {}
    pains: list[str] = []
    for (stage, point), grp in data.groupby(["journey_stage", col_field]):
        value, n, se = _stats(grp)
        if value is None:
            continue
        pain = False
        if n >= min_n and se is not None and overall is not None:
            pain = (value - 1.96 * se > overall) if lower else (value + 1.96 * se < overall)
        cells[(str(stage), str(point))] = charts.HeatCell(value, n, pain, n < min_n)
        if pain:
            pains.append(f"{label(str(stage), lang)} × {label(str(point), lang)}: "
                         f"{fmt(kpi, value)} (n={n})")
    # Colours centred on the company value (yellow = as the company), so that a full -100..100 or
    # 0..100 scale does not wash real differences out; at least a minimal span keeps noise pale.
    centre = overall if overall is not None else 0.0
    vals = [c.value for c in cells.values() if c.value is not None and not c.insufficient]
    span = max([abs(v - centre) for v in vals] + [_MIN_SPAN.get(kpi, 10.0)])
    lo, hi = centre - span, centre + span
    chart = charts.heatmap(
        [(s, label(s, lang)) for s in stages], [(p, label(p, lang)) for p in points], cells,
        lo=lo, hi=hi, higher_is_better=not lower,
        title=f"{translate('Customer journey map', lang)}: {kpi_label(kpi, lang)}",
        pain_label=translate("pain point", lang), insufficient_label=translate("too few answers", lang),
        digits=kpi_digits(kpi))
    return chart, pains, scope_label("journey_stage", lang), scope_label(col_field, lang)
