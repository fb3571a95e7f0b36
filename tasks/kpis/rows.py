"""The result row (`KpiRow`) and how a scope value's histograms become result rows, judged
against their targets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from cxloop.config import Settings
from cxloop.tasks.kpis.measures import HistItem, measure_many
from cxloop.tasks.kpis.prepare import scope_names
from cxloop.tasks.kpis.specs import KPI_ORDER, SPECS, _kcfg
from cxloop.tasks.kpis.targets import default_min_n, judge, target_for
from cxloop.vocabulary import (
    CASE_KPIS,
    OVERALL,
    OVERALL_VALUE,
    TOPIC,
    TOPIC_ONLY,
)


@dataclass
class KpiRow:
    """One KPI of one scope value in one period: value, n, interval, target, status, signal."""

    kpi: str
    scope: str
    scope_value: str
    n: int
    value: float | None
    ci_low: float | None
    ci_high: float | None
    method: str
    target: float | None = None
    min_n: int | None = None
    status: str = "no_target"
    signal: str | None = None
    provisional: bool = False
    period: str = ""
    stats: dict[str, Any] = field(default_factory=dict, repr=False)

    def as_dict(self, with_stats: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not with_stats:
            out.pop("stats")
        return out

    @property
    def key(self) -> tuple[str, str, str]:
        return self.kpi, self.scope, self.scope_value


Hist1D = tuple[NDArray[np.float64], NDArray[np.float64]]


def _groups(hist: pd.DataFrame) -> dict[tuple[str, str], dict[str, Hist1D]]:
    """{(scope, value): {family: (bins, counts)}} from a merged (sorted) histogram frame."""
    out: dict[tuple[str, str], dict[str, Hist1D]] = {}
    if hist.empty:
        return out
    scope = hist["scope"].to_numpy(dtype=object)
    value = hist["scope_value"].to_numpy(dtype=object)
    fam = hist["family"].to_numpy(dtype=object)
    bins = hist["bin"].to_numpy(dtype=float)
    counts = hist["count"].to_numpy(dtype=float)
    change = np.ones(len(hist), dtype=bool)
    change[1:] = (scope[1:] != scope[:-1]) | (value[1:] != value[:-1]) | (fam[1:] != fam[:-1])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], len(hist))
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        out.setdefault((scope[s], value[s]), {})[fam[s]] = (bins[s:e], counts[s:e])
    return out


def _stats_dict(family: str, bins: NDArray[np.float64], counts: NDArray[np.float64]) -> dict[str, Any]:
    return {"family": family, "bins": [float(x) for x in bins], "counts": [int(x) for x in counts]}


def rows_from_histograms(hist: pd.DataFrame, settings: Settings | None = None, *, period: str = "",
                         provisional: bool = False) -> list[KpiRow]:
    """KPI rows with intervals, targets and status (no signals: those need the stored history).

    A KPI row exists for a scope value when the KPI has at least one answer there; the overall
    scope always has every non-topic KPI of the responses (n = 0 when nothing was measured), so
    reports always have a headline; the case KPIs only when the period has cases.
    """
    kcfg = _kcfg(settings)
    groups = _groups(hist)
    groups.setdefault((OVERALL, OVERALL_VALUE), {})
    overall = groups[(OVERALL, OVERALL_VALUE)]
    commented = float(overall["commented"][1].sum()) if "commented" in overall else 0.0
    order = {s: i for i, s in enumerate(scope_names(settings))}
    items: list[HistItem] = []
    where: list[tuple[str, str, str]] = []
    for (scope, value) in sorted(groups, key=lambda k: (order.get(k[0], len(order)), k[0], k[1])):
        fams = groups[(scope, value)]
        for kpi in KPI_ORDER:
            spec = SPECS[kpi]
            if kpi in TOPIC_ONLY:
                if scope != TOPIC or "theme" not in fams:
                    continue
                tb, tc = fams["theme"]
                hits = float(tc.sum()) if kpi == "theme_share" else float(tc[tb == 1].sum())
                bins, cnts = np.array([0.0, 1.0]), np.array([max(commented - hits, 0.0), hits])
            elif spec.family in fams:
                bins, cnts = fams[spec.family]
            elif scope == OVERALL and kpi not in CASE_KPIS:  # a period without cases: no 0/0
                bins, cnts = np.zeros(0), np.zeros(0)
            else:
                continue
            items.append(HistItem(kpi, bins, cnts, (scope, value)))
            where.append((kpi, scope, value))
    measures = measure_many(items, confidence=kcfg.confidence, resamples=kcfg.bootstrap_resamples)
    rows: list[KpiRow] = []
    for (kpi, scope, value), m, it in zip(where, measures, items, strict=True):
        found = target_for(settings, kpi, scope, value) if settings is not None else None
        target, min_n = found if found else (None, default_min_n(settings, kpi))
        rows.append(KpiRow(
            kpi=kpi, scope=scope, scope_value=value, n=m.n, value=m.value, ci_low=m.ci_low,
            ci_high=m.ci_high, method=m.method, target=target, min_n=min_n,
            status=judge(kpi, m.value, m.ci_low, m.ci_high, m.n, target, min_n),
            provisional=provisional, period=period,
            stats=_stats_dict("share" if kpi in TOPIC_ONLY else SPECS[kpi].family, it.bins, it.counts),
        ))
    return rows
