"""Per-row preparation: the numeric codes of every KPI family and every scope, so histograms
count integers (durations binned, answers classed, scopes and topics factorised).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from cxloop.config import KpiConfig, Settings
from cxloop.models import SCOPE_FIELDS, SCORE_FIELDS
from cxloop.tasks.codes import factorize
from cxloop.tasks.kpis.specs import _DURATIONS, BASE_SCOPES, _kcfg
from cxloop.vocabulary import (
    CROSS_SEP,
    OVERALL,
    OVERALL_VALUE,
    TOPIC,
    VALUE_SEP,
    split_themes,
)

_TIME_TIERS: tuple[tuple[float, float], ...] = ((10.0, 0.1), (100.0, 0.5), (1000.0, 1.0), (math.inf, 10.0))


def time_codes(hours: NDArray[np.float64]) -> NDArray[np.int64]:
    """Bin code of each duration (-1 for missing or negative); codes increase with the duration."""
    h = np.asarray(hours, dtype=float)
    codes = np.full(h.shape, -1, dtype=np.int64)
    valid = np.isfinite(h) & (h >= 0)
    start, base = 0.0, 0
    for upper, step in _TIME_TIERS:
        m = valid & (h >= start) & (h < upper)
        codes[m] = base + np.rint((h[m] - start) / step).astype(np.int64)
        if math.isfinite(upper):
            base += int(round((upper - start) / step))
        start = upper
    return codes


def time_labels(codes: NDArray[np.int64]) -> NDArray[np.float64]:
    """Hours at the centre of each bin code (inverse of `time_codes`)."""
    c = np.asarray(codes, dtype=np.int64)
    out = np.zeros(c.shape, dtype=float)
    start, base = 0.0, 0
    done = np.zeros(c.shape, dtype=bool)
    for upper, step in _TIME_TIERS:
        width = int(round((upper - start) / step)) if math.isfinite(upper) else np.iinfo(np.int64).max
        m = ~done & (c <= base + width) if math.isfinite(upper) else ~done
        out[m] = np.round(start + (c[m] - base) * step, 6)
        done |= m
        if math.isfinite(upper):
            base += width
        start = upper
    return out


def _numeric(df: pd.DataFrame, col: str) -> NDArray[np.float64]:
    if col not in df.columns:
        return np.full(len(df), np.nan)
    s = df[col]
    if s.dtype == bool:
        return s.to_numpy(dtype=float)
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _hours(df: pd.DataFrame, prefix: str) -> NDArray[np.float64]:
    """Duration in hours from opened_at (derived column if the loader computed it)."""
    col = f"{prefix}_hours"
    if col in df.columns:
        h = _numeric(df, col)
    elif "opened_at" in df.columns and _DURATIONS[prefix] in df.columns:
        start = pd.to_datetime(df["opened_at"], utc=True, errors="coerce")
        end = pd.to_datetime(df[_DURATIONS[prefix]], utc=True, errors="coerce")
        h = ((end - start).dt.total_seconds() / 3600.0).to_numpy(dtype=float, na_value=np.nan)
    else:
        return np.full(len(df), np.nan)
    h = h.copy()
    h[h < 0] = np.nan  # a response before the ticket opened is a data error, not a time
    return h


def _has_comment(df: pd.DataFrame) -> NDArray[np.bool_]:
    if "has_comment" in df.columns:
        return _numeric(df, "has_comment") > 0
    if "comment" in df.columns:
        s = df["comment"]
        return (s.notna() & (s.astype("string").str.strip().fillna("") != "")).to_numpy(dtype=bool)
    return np.zeros(len(df), dtype=bool)


def _is_negative(df: pd.DataFrame) -> NDArray[np.bool_]:
    if "sentiment" not in df.columns:
        return np.zeros(len(df), dtype=bool)
    return (df["sentiment"] == "negative").fillna(False).to_numpy(dtype=bool)


def _score_codes(df: pd.DataFrame, col: str) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    lo, hi = SCORE_FIELDS[col]
    v = _numeric(df, col)
    with np.errstate(invalid="ignore"):
        ok = (v >= lo) & (v <= hi) & (np.floor(v) == v)  # NaN compares False
    codes = np.full(v.shape, -1, dtype=np.int64)
    codes[ok] = v[ok].astype(np.int64) - lo
    return codes, np.arange(lo, hi + 1, dtype=float)


def _cx_class(df: pd.DataFrame, col: str) -> NDArray[np.int64]:
    """0 missing, 1 negative (1-3), 2 neutral (4-5), 3 positive (6-7)."""
    return _class_of(_score_codes(df, col)[0])


def _class_of(codes: NDArray[np.int64]) -> NDArray[np.int64]:
    """`_cx_class` of a CX question's score codes (answer - 1, -1 missing)."""
    return _CLASS_OF_ANSWER[codes + 1]


# The joint answer cell of the three CX-index questions: class(success) * 16 + class(effort) * 4 +
# class(emotion); cell 0 (none answered) is not counted.
_CX_QUESTIONS = ("cx_success", "cx_effort", "cx_emotion")
_CX_CELLS = np.arange(64)
_CX_CLASSES = np.stack([_CX_CELLS // 16, (_CX_CELLS // 4) % 4, _CX_CELLS % 4], axis=1)
_CX_ANSWERED = _CX_CLASSES > 0
_CX_SCORES = np.select([_CX_CLASSES == 1, _CX_CLASSES == 3], [-100.0, 100.0], default=0.0)


def _family_codes(df: pd.DataFrame, kcfg: KpiConfig) -> dict[str, tuple[NDArray[np.int64], NDArray[Any]]]:
    """Per family: the bin code of every row (-1 = not counted) and the label of every code."""
    fams: dict[str, tuple[NDArray[np.int64], NDArray[Any]]] = {}
    for col in ("nps", "csat", "ces", *_CX_QUESTIONS):
        fams[col] = _score_codes(df, col)
    classes = [_class_of(fams[q][0]) for q in _CX_QUESTIONS]
    cx = classes[0] * 16 + classes[1] * 4 + classes[2]
    fams["cx"] = (np.where(cx > 0, cx, -1), _CX_CELLS.astype(float))
    flag = _numeric(df, "is_complaint")
    fams["complaint"] = (np.where(np.isfinite(flag), (flag > 0).astype(np.int64), -1), np.array([0.0, 1.0]))
    for prefix, sla in (("first_response", kcfg.first_response_sla_hours),
                        ("resolution", kcfg.resolution_sla_hours)):
        h = _hours(df, prefix)
        codes = time_codes(h)
        top = int(codes.max()) if codes.size and codes.max() >= 0 else 0
        fams[prefix] = (codes, time_labels(np.arange(top + 1)))
        within = np.where(np.isfinite(h), (h <= sla).astype(np.int64), -1)
        fams[f"{prefix}_sla"] = (within, np.array([0.0, 1.0]))
    fams["rows"] = (np.zeros(len(df), dtype=np.int64), np.array([0.0]))
    commented = _has_comment(df)
    fams["commented"] = (np.where(commented, 0, -1).astype(np.int64), np.array([0.0]))
    # Topic scope only: 1 = a negative comment mentioning the topic, 0 = any other comment on it.
    fams["theme"] = (np.where(commented, _is_negative(df).astype(np.int64), -1), np.array([0.0, 1.0]))
    return fams


# Families counted together in one joint histogram per scope (one np.bincount instead of one per
# family); each family's own histogram is a marginal of the joint. Code 0 of each axis = missing.
_PACKS: tuple[tuple[str, ...], ...] = (
    ("nps", "csat", "ces"), _CX_QUESTIONS,
    ("complaint", "first_response_sla", "resolution_sla", "theme"),
    ("first_response",), ("resolution",),
)
# Joint (success, effort, emotion) answer 0..7 each (0 = missing) -> CX-index cell 0..63.
_CLASS_OF_ANSWER = np.array([0, 1, 1, 1, 2, 2, 3, 3])
_A, _B, _C = np.meshgrid(np.arange(8), np.arange(8), np.arange(8), indexing="ij")
_CX_CELL_OF_JOINT = (_CLASS_OF_ANSWER[_A] * 16 + _CLASS_OF_ANSWER[_B] * 4 + _CLASS_OF_ANSWER[_C]).ravel()
_CX_CELL_MATRIX = np.zeros((512, 64))
_CX_CELL_MATRIX[np.arange(512), _CX_CELL_OF_JOINT] = 1.0


def _emitted(scope: str, family: str) -> bool:
    if family == "theme":
        return scope == TOPIC
    if family == "commented":
        return scope == OVERALL
    return True


def _blank(values: NDArray[Any]) -> NDArray[np.bool_]:
    s = pd.Series(values, dtype=object)
    return (s.isna() | (s.astype(str).str.strip() == "")).to_numpy(dtype=bool)


def _explode_topics(df: pd.DataFrame) -> tuple[NDArray[np.int64], NDArray[Any]]:
    """(row position, topic id) for every topic a row's comment mentions; fast for many rows."""
    rows, codes, labels = _explode_topic_codes(df)
    return rows, labels[codes]


def _explode_topic_codes(df: pd.DataFrame) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[Any]]:
    """(row position, topic code, topic of each code) for every topic a row's comment mentions.

    Factorises the themes strings first (few distinct combinations), splits each distinct string
    once, and repeats row positions with numpy instead of exploding a million Python lists.
    """
    if "themes" not in df.columns or len(df) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object)
    codes, uniques = factorize(df["themes"])
    lists = [split_themes(u) for u in uniques]
    lens = np.array([len(x) for x in lists] + [0], dtype=np.int64)  # index -1 -> 0 topics
    flat_codes, labels = pd.factorize(np.array([t for x in lists for t in x], dtype=object))
    offsets = np.concatenate([[0], np.cumsum(lens[:-1])])[:len(lists)] if lists else np.zeros(0, np.int64)
    row_lens = lens[codes]
    rows = np.repeat(np.arange(len(df), dtype=np.int64), row_lens)
    labels = np.asarray(labels, dtype=object)
    if rows.size == 0:
        return rows, np.zeros(0, dtype=np.int64), labels
    starts = np.repeat(np.cumsum(row_lens) - row_lens, row_lens)
    within = np.arange(rows.size) - starts
    topic = flat_codes[np.repeat(offsets[codes[row_lens > 0]], row_lens[row_lens > 0]) + within]
    return rows, topic.astype(np.int64), labels


Coded = tuple[NDArray[np.int64], NDArray[Any]]


def _column_codes(df: pd.DataFrame, column: str) -> Coded:
    """(code of each row, -1 for empty; label of each code): the column's values stripped, so
    values differing only in surrounding spaces share one code."""
    if column not in df.columns:
        return np.full(len(df), -1, dtype=np.int64), np.zeros(0, dtype=object)
    codes, uniques = factorize(df[column])
    uniq = np.asarray(uniques, dtype=object)
    if uniq.size == 0:
        return codes.astype(np.int64), uniq
    blank = _blank(uniq)
    label_codes, labels = pd.factorize(np.array([str(u).strip() for u in uniq], dtype=object))
    remap = np.where(blank, -1, label_codes)
    return np.where(codes >= 0, remap[codes], -1).astype(np.int64), np.asarray(labels, dtype=object)


def _scope_codes(df: pd.DataFrame, scope: str, coded: dict[str, Coded] | None = None) -> tuple[
        NDArray[np.int64] | None, NDArray[np.int64], NDArray[Any]]:
    """(row positions or None for all rows, group code per position (-1 = none), group labels).

    `coded` keeps each column's codes for the next scope (crossings reuse their parts')."""
    if scope == OVERALL:
        return None, np.zeros(len(df), dtype=np.int64), np.array([OVERALL_VALUE], dtype=object)
    parts = scope.split(CROSS_SEP)
    unknown = [p for p in parts if p not in SCOPE_FIELDS and p != TOPIC]
    if unknown:
        raise ValueError(f"unknown scope {scope!r}: {unknown} is not one of {', '.join(BASE_SCOPES)}")
    coded = {} if coded is None else coded
    rows: NDArray[np.int64] | None = None
    topic: Coded | None = None
    if TOPIC in parts:
        rows, topic_codes, topic_labels = _explode_topic_codes(df)
        topic = topic_codes, topic_labels
    combined = np.zeros(len(df) if rows is None else rows.size, dtype=np.int64)
    part_labels: list[NDArray[Any]] = []
    for part in parts:
        if part == TOPIC:
            assert topic is not None
            codes, uniq = topic
        else:
            if part not in coded:
                coded[part] = _column_codes(df, part)
            codes, uniq = coded[part]
            codes = codes if rows is None else codes[rows]
        k = max(len(uniq), 1)
        combined = np.where((combined >= 0) & (codes >= 0), combined * k + codes, -1)
        part_labels.append(uniq)
    # Compact the combined codes to 0..G-1 in sorted order: a bincount over the (small) code space
    # instead of sorting a million codes.
    space = int(np.prod([max(len(u), 1) for u in part_labels]))
    present = np.bincount(combined[combined >= 0], minlength=space) > 0
    uniq_codes = np.flatnonzero(present)
    remap = np.cumsum(present) - 1
    group = np.where(combined >= 0, remap[np.maximum(combined, 0)], -1)
    labels = []
    for code in uniq_codes.tolist():
        pieces = []
        for uniq in reversed(part_labels):
            k = max(len(uniq), 1)
            pieces.append(str(uniq[code % k]))
            code //= k
        labels.append(VALUE_SEP.join(reversed(pieces)))
    return rows, group, np.array(labels, dtype=object)


def scope_names(settings: Settings | None) -> list[str]:
    """Every scope computed: the base scopes plus configured crossings ("department x region")."""
    names = list(BASE_SCOPES)
    crossings = [CROSS_SEP.join(c) for c in _kcfg(settings).crossings]
    crossings += [t.scope for t in (settings.targets if settings is not None else []) if CROSS_SEP in t.scope]
    for name in crossings:
        if name not in names:
            names.append(name)
    return names


def scope_frame(df: pd.DataFrame, scope: str) -> pd.DataFrame:
    """The rows of `df` that belong to a value of `scope`, with a `scope_value` column.

    `overall`: every row, value "all". `topic`: one row per topic the comment mentions (a row can
    appear several times). Crossings "a x b": value "va | vb". Rows with an empty value are dropped.
    """
    if scope == OVERALL:
        return df.assign(scope_value=OVERALL_VALUE)
    rows, group, labels = _scope_codes(df, scope)
    keep = group >= 0
    positions = np.arange(len(df)) if rows is None else rows
    out = df.iloc[positions[keep]].copy()
    out["scope_value"] = labels[group[keep]] if labels.size else np.zeros(0, dtype=object)
    return out
