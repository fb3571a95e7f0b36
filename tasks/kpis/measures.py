"""One KPI, its n and its interval, from its histogram or stored statistics (`tasks.stats`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxloop.tasks import stats
from cxloop.tasks.kpis.prepare import _CX_ANSWERED, _CX_SCORES
from cxloop.tasks.kpis.specs import METHODS, SPECS


@dataclass(frozen=True)
class Measure:
    value: float | None
    n: int
    ci_low: float | None
    ci_high: float | None
    method: str


@dataclass(frozen=True)
class HistItem:
    """One KPI to measure: its histogram (bins ascending) and the key that seeds its bootstrap."""

    kpi: str
    bins: NDArray[np.float64]
    counts: NDArray[np.float64]
    key: tuple[object, ...] = ()


def _opt(x: Any) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def measure_many(items: Sequence[HistItem], *, confidence: float = 0.95,
                 resamples: int = 999) -> list[Measure]:
    """Value, n and interval of many KPIs at once, vectorised per interval method.

    Proportions go through one statsmodels Wilson call, nets through one adjusted-Wald array
    computation, quantiles through one binomial call, CX indices through one delta-method matrix
    product; only the CES-mean bootstrap runs per item (seeded by its key).
    """
    out: list[Measure | None] = [None] * len(items)
    by_kind: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        kind = SPECS[it.kpi].kind
        n = int(round(float(np.sum(it.counts))))
        if kind == "count":
            out[i] = Measure(float(n), n, None, None, METHODS[kind])
        elif n == 0:
            out[i] = Measure(None, 0, None, None, METHODS[kind])
        else:
            by_kind.setdefault(kind, []).append(i)

    def n_of(i: int) -> int:
        return int(round(float(np.sum(items[i].counts))))

    idx = by_kind.get("net", [])
    if idx:
        pos = np.array([items[i].counts[items[i].bins >= SPECS[items[i].kpi].high].sum() for i in idx])
        neg = np.array([items[i].counts[items[i].bins <= SPECS[items[i].kpi].low].sum() for i in idx])
        tot = np.array([items[i].counts.sum() for i in idx])
        lo, hi = stats.adjusted_wald_many(pos, tot - pos - neg, neg, confidence)
        for j, i in enumerate(idx):
            out[i] = Measure(float((pos[j] - neg[j]) / tot[j] * 100), n_of(i), _opt(lo[j]), _opt(hi[j]),
                             "adjusted_wald")
    idx = by_kind.get("top", []) + by_kind.get("flag", [])
    if idx:
        hits = np.array([
            items[i].counts[items[i].bins >= SPECS[items[i].kpi].high].sum()
            if SPECS[items[i].kpi].kind == "top" else items[i].counts[items[i].bins == 1].sum()
            for i in idx])
        tot = np.array([items[i].counts.sum() for i in idx])
        lo, hi = stats.wilson_many(hits, tot, confidence)
        for j, i in enumerate(idx):
            out[i] = Measure(float(hits[j] / tot[j] * 100), n_of(i), _opt(lo[j]), _opt(hi[j]), "wilson")
    for i in by_kind.get("mean", []):
        it = items[i]
        lo_m, hi_m = stats.bootstrap_mean(it.bins, it.counts, resamples,
                                          stats.rng_for(it.kpi, *it.key), confidence)
        out[i] = Measure(stats.hist_mean(it.bins, it.counts), n_of(i), lo_m, hi_m, "bootstrap_poisson")
    idx = by_kind.get("quantile", [])
    for q in sorted({SPECS[items[i].kpi].q for i in idx}):
        sub = [i for i in idx if SPECS[items[i].kpi].q == q]
        intervals = stats.quantile_intervals([(items[i].bins, items[i].counts) for i in sub], q, confidence)
        for i, (lo_q, hi_q) in zip(sub, intervals, strict=True):
            out[i] = Measure(stats.hist_quantile(items[i].bins, items[i].counts, q), n_of(i), lo_q, hi_q,
                             "bootstrap_exact")
    idx = by_kind.get("order_quantile", [])
    for q in sorted({SPECS[items[i].kpi].q for i in idx}):
        sub = [i for i in idx if SPECS[items[i].kpi].q == q]
        intervals = stats.order_statistic_intervals([(items[i].bins, items[i].counts) for i in sub], q,
                                                    confidence)
        for i, (lo_q, hi_q) in zip(sub, intervals, strict=True):
            out[i] = Measure(stats.hist_quantile(items[i].bins, items[i].counts, q), n_of(i), lo_q, hi_q,
                             "order_statistic")
    idx = by_kind.get("index", [])
    if idx:
        joint = np.zeros((len(idx), 64))
        for j, i in enumerate(idx):
            np.add.at(joint[j], items[i].bins.astype(np.int64), items[i].counts)
        est, se = stats.mean_of_nets_many(joint, _CX_ANSWERED, _CX_SCORES)
        half = stats.z_value(confidence) * se
        lo_i, hi_i = np.maximum(-100.0, est - half), np.minimum(100.0, est + half)
        for j, i in enumerate(idx):
            out[i] = Measure(_opt(est[j]), n_of(i), _opt(lo_i[j]), _opt(hi_i[j]), "delta")
    return [m for m in out if m is not None]


def kpi_from_hist(kpi: str, bins: NDArray[np.float64], counts: NDArray[np.float64], *,
                  confidence: float = 0.95, resamples: int = 999,
                  key: Sequence[object] = ()) -> Measure:
    """Value, n and interval of one KPI from its family histogram (bins ascending).

    For the shares (theme KPIs) the histogram is binary over all commented responses (bin 1 =
    mentions the topic, or mentions it negatively). `key` seeds the bootstrap deterministically.
    """
    item = HistItem(kpi, np.asarray(bins, dtype=float), np.asarray(counts, dtype=float), tuple(key))
    return measure_many([item], confidence=confidence, resamples=resamples)[0]


def kpi_from_stats(kpi: str, stored: dict[str, Any], *, confidence: float = 0.95,
                   resamples: int = 999, key: Sequence[object] = ()) -> Measure:
    """Recompute a KPI from a KpiResult.stats dict (or a merge of several, see `merge_stats`)."""
    return kpi_from_hist(kpi, np.asarray(stored.get("bins", []), dtype=float),
                         np.asarray(stored.get("counts", []), dtype=float),
                         confidence=confidence, resamples=resamples, key=key)


def merge_stats(*stored: dict[str, Any]) -> dict[str, Any]:
    """Add the histograms of several KpiResult.stats of the same KPI (e.g. two months pooled)."""
    total: dict[float, float] = {}
    family = ""
    for s in stored:
        family = family or s.get("family", "")
        for b, c in zip(s.get("bins", []), s.get("counts", []), strict=True):
            total[float(b)] = total.get(float(b), 0) + c
    bins = sorted(total)
    return {"family": family, "bins": bins, "counts": [int(total[b]) for b in bins]}
