"""Row-level helpers for other stages (re-measure, actions, decisions): which responses fall in a
scope value, and a KPI's value from responses themselves rather than from a histogram.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from cxloop.config import Settings
from cxloop.models import SCOPE_FIELDS
from cxloop.tasks.codes import factorize
from cxloop.tasks.kpis.measures import Measure, kpi_from_hist
from cxloop.tasks.kpis.prepare import (
    _CX_QUESTIONS,
    Coded,
    _column_codes,
    _cx_class,
    _explode_topics,
    _family_codes,
    _has_comment,
    _hours,
    _is_negative,
    _numeric,
    _score_codes,
)
from cxloop.tasks.kpis.specs import KPI_ORDER, SPECS, _kcfg
from cxloop.vocabulary import (
    CROSS_SEP,
    OVERALL,
    TOPIC,
    TOPIC_ONLY,
    VALUE_SEP,
    split_themes,
)


def _topic_mask(df: pd.DataFrame, topic: str | None) -> NDArray[np.bool_]:
    if topic is None:
        raise ValueError("theme KPIs need the topic id (topic=...)")
    rows, topics = _explode_topics(df.reset_index(drop=True))
    mask = np.zeros(len(df), dtype=bool)
    mask[rows[topics == topic]] = True
    return mask


def _is_value(values: pd.Series, value: str) -> NDArray[np.bool_]:
    """`values.strip() == value` for text, tested once per distinct value (as scopes group them)."""
    codes, uniques = factorize(values)
    return np.array([str(u).strip() == value for u in uniques.tolist()] + [False], dtype=bool)[codes]


def _has_theme(themes: pd.Series, topic: str) -> NDArray[np.bool_]:
    """Exact membership in the comma-separated `themes` (one test per distinct themes string)."""
    codes, uniques = factorize(themes)
    hit = np.array([topic in split_themes(u) for u in uniques.tolist()] + [False])
    return hit[codes]


def scope_mask(df: pd.DataFrame, scope: str, scope_value: str,
               coded: dict[str, Coded] | None = None) -> NDArray[np.bool_] | None:
    """Which rows of `df` belong to one scope value (crossings included); None for a scope the
    frame cannot be filtered by. `coded` keeps each column's codes for the next call on the same
    frame (one factorisation per column, however many values are asked for)."""
    mask = np.ones(len(df), dtype=bool)
    if scope == OVERALL:
        return mask
    scopes = scope.split(CROSS_SEP)
    values = scope_value.split(VALUE_SEP) if len(scopes) > 1 else [scope_value]
    if len(values) != len(scopes):
        return None
    for part_scope, part_value in zip(scopes, values, strict=True):
        if part_scope in SCOPE_FIELDS and part_scope in df.columns:
            if coded is None:
                mask &= _is_value(df[part_scope], part_value)
                continue
            if part_scope not in coded:
                coded[part_scope] = _column_codes(df, part_scope)
            codes, labels = coded[part_scope]
            hit = np.flatnonzero(labels == part_value)
            mask &= (codes == hit[0]) if hit.size else False
        elif part_scope == TOPIC and "themes" in df.columns:
            mask &= _has_theme(df["themes"], part_value)
        else:
            return None
    return mask


def family_bins(df: pd.DataFrame, settings: Settings | None = None) -> dict[str, tuple[
        NDArray[np.int64], NDArray[np.float64]]]:
    """Per KPI family: (bin code of each row, -1 = not counted; the bin of each code)."""
    fams = _family_codes(df.reset_index(drop=True), _kcfg(settings))
    return {f: (codes, np.asarray(labels, dtype=float)) for f, (codes, labels) in fams.items()}


def response_scores(kpi: str, df: pd.DataFrame, *, settings: Settings | None = None,
                    topic: str | None = None) -> NDArray[np.float64]:
    """One score per response (NaN dropped) whose mean is the KPI for mean-type KPIs.

    nps and nets +100/0/-100; csat, ces_top, complaint_rate, *_sla, theme shares 100/0; ces 1..7;
    cx_index: the mean of the response's answered nets (equals the index when every response
    answers all three); times: raw hours (the KPI is their median / p90, not the mean);
    responses: 1 per row. Theme KPIs need `topic` and are scored over commented responses.
    """
    if kpi not in SPECS:
        raise ValueError(f"unknown KPI {kpi!r}; known: {', '.join(KPI_ORDER)}")
    spec = SPECS[kpi]
    kcfg = _kcfg(settings)
    df = df.reset_index(drop=True)
    out: NDArray[np.float64]
    if kpi in TOPIC_ONLY:
        mentioned = _topic_mask(df, topic)
        if kpi == "theme_negative_share":
            mentioned &= _is_negative(df)
        out = np.where(mentioned, 100.0, 0.0)[_has_comment(df)]
        return out
    if spec.kind == "count":
        return np.ones(len(df))
    if spec.kind == "quantile":
        h = _hours(df, spec.family)
        return h[np.isfinite(h)]
    if kpi.endswith("_sla"):
        prefix = kpi.removesuffix("_sla")
        h = _hours(df, prefix)
        sla = kcfg.first_response_sla_hours if prefix == "first_response" else kcfg.resolution_sla_hours
        return np.where(h[np.isfinite(h)] <= sla, 100.0, 0.0)
    if kpi == "complaint_rate":
        f = _numeric(df, "is_complaint")
        return np.where(f[np.isfinite(f)] > 0, 100.0, 0.0)
    if spec.kind == "index":
        classes = np.stack([_cx_class(df, q) for q in _CX_QUESTIONS], axis=1)
        scores = np.select([classes == 1, classes == 3, classes == 2], [-100.0, 100.0, 0.0], np.nan)
        answered = np.isfinite(scores).any(axis=1)
        return np.asarray(np.nanmean(scores[answered], axis=1), dtype=float)
    codes, labels = _score_codes(df, spec.family)
    v = labels[codes[codes >= 0]]
    if spec.kind == "net":
        return np.select([v >= spec.high, v <= spec.low], [100.0, -100.0], 0.0)
    if spec.kind == "top":
        return np.where(v >= spec.high, 100.0, 0.0)
    return np.asarray(v, dtype=float)  # mean (ces)


def kpi_value(kpi: str, df: pd.DataFrame, *, settings: Settings | None = None,
              topic: str | None = None) -> tuple[float | None, int]:
    """(value, n) of one KPI over all rows of `df` (e.g. one scope_frame value), same code as the stage."""
    m = kpi_measure(kpi, df, settings=settings, topic=topic)
    return m.value, m.n


def kpi_measure(kpi: str, df: pd.DataFrame, *, settings: Settings | None = None,
                topic: str | None = None, key: Sequence[object] = ()) -> Measure:
    """Like `kpi_value` with the interval and method."""
    if kpi not in SPECS:
        raise ValueError(f"unknown KPI {kpi!r}; known: {', '.join(KPI_ORDER)}")
    kcfg = _kcfg(settings)
    spec = SPECS[kpi]
    if kpi in TOPIC_ONLY:
        scores = response_scores(kpi, df, settings=settings, topic=topic)
        hits = float((scores > 0).sum())
        bins, counts_ = np.array([0.0, 1.0]), np.array([scores.size - hits, hits])
    else:
        df = df.reset_index(drop=True)
        codes, labels = _family_codes(df, kcfg)[spec.family]
        counts_ = np.bincount(codes[codes >= 0], minlength=len(labels)).astype(float)
        nz = counts_ > 0
        bins, counts_ = labels[nz].astype(float), counts_[nz]
    return kpi_from_hist(kpi, bins, counts_, confidence=kcfg.confidence,
                         resamples=kcfg.bootstrap_resamples, key=key)
