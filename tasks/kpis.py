"""KPI stage: every CX KPI per scope, with n and an interval, against its target, over time.

Pipeline of one period (`compute_kpis`):

1. take the period's clean responses from the month frame (`load_responses`, `tasks.month`; only
   the needed columns, durations and `has_comment` derived as the database used to compute them);
   a month too large to keep comes in parts of a million rows (`response_parts`);
2. count a histogram per (scope, scope value, family, bin) - the sufficient statistics of every
   KPI (`histograms`), per part; histograms of parts merge by adding counts (`merge_histograms`),
   exactly;
3. per scope value, compute each KPI and its interval from the histogram (`tasks.stats`), find its
   target and judge the status (`rows_from_histograms`);
4. compare with earlier cycles on a control chart (`tasks.spc`) for signal_high / signal_low;
5. upsert `KpiResult` (histogram in `stats`, so later stages can merge or re-measure) and the
   `AppliedTarget` rows of the period, in one transaction; re-running replaces, never duplicates.

Units: NPS and nets -100..100, proportions and shares in percent, CES mean 1..7, times in hours,
responses a count. Durations are binned (0.1 h below 10 h, 0.5 h below 100 h, 1 h below 1000 h,
10 h beyond) so their histograms stay small; the % within SLA is counted from exact durations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sqlalchemy import Engine, delete, select

from cxloop.config import KpiConfig, Settings, TargetConfig
from cxloop.db import session_scope
from cxloop.models import SCOPE_FIELDS, SCORE_FIELDS, AppliedTarget, KpiResult
from cxloop.periods import shift_period
from cxloop.tasks import decisions, month, spc, stats
from cxloop.tasks.codes import factorize
from cxloop.vocabulary import (
    CROSS_SEP,
    KPIS,
    LOWER_IS_BETTER,
    NO_SIGNAL,
    OVERALL,
    OVERALL_VALUE,
    TOPIC,
    TOPIC_ONLY,
    VALUE_SEP,
    split_themes,
)

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

BASE_SCOPES: tuple[str, ...] = (OVERALL, *SCOPE_FIELDS, TOPIC)

Kind = Literal["net", "top", "flag", "mean", "quantile", "index", "count"]


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
}
KPI_ORDER: tuple[str, ...] = KPIS
assert tuple(SPECS) == KPIS, "every KPI of the vocabulary has a recipe, in its order"

METHODS = {"net": "adjusted_wald", "top": "wilson", "flag": "wilson", "mean": "bootstrap_poisson",
           "quantile": "bootstrap_exact", "index": "delta", "count": "count"}

# Columns a KPI computation reads. Derived ones are computed in `load_responses`.
DERIVED_COLUMNS = ("first_response_hours", "resolution_hours", "has_comment")
KPI_COLUMNS: tuple[str, ...] = (
    *SCOPE_FIELDS, *SCORE_FIELDS, "is_complaint", "sentiment", "themes", *DERIVED_COLUMNS,
)
_DURATIONS = {"first_response": "first_response_at", "resolution": "resolved_at"}
_HIST_COLUMNS = ["scope", "scope_value", "family", "bin", "count"]


# --------------------------------------------------------------------------------------------
# Result row
# --------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Measure:
    value: float | None
    n: int
    ci_low: float | None
    ci_high: float | None
    method: str


# --------------------------------------------------------------------------------------------
# Per-row preparation: numeric codes of every family and every scope
# --------------------------------------------------------------------------------------------

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


def _kcfg(settings: Settings | None) -> KpiConfig:
    return settings.kpis if settings is not None else KpiConfig()


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


# --------------------------------------------------------------------------------------------
# Histograms (sufficient statistics) and their exact merge
# --------------------------------------------------------------------------------------------


def _empty_hist() -> pd.DataFrame:
    return pd.DataFrame({"scope": pd.Series(dtype=object), "scope_value": pd.Series(dtype=object),
                         "family": pd.Series(dtype=object), "bin": pd.Series(dtype=float),
                         "count": pd.Series(dtype=np.int64)})


def histograms(df: pd.DataFrame, settings: Settings | None = None,
               scopes: Sequence[str] | None = None) -> pd.DataFrame:
    """Counts per (scope, scope_value, family, bin) of a frame of responses.

    Equivalent to `groupby([scope_value, score]).size()` per family, done with integer codes and
    `np.bincount` so a million rows take a fraction of a second.
    """
    kcfg = _kcfg(settings)
    df = df.reset_index(drop=True)
    fams = _family_codes(df, kcfg)
    packs = []
    for pack in _PACKS:
        sizes = [len(fams[f][1]) + 1 for f in pack]
        joint = np.zeros(len(df), dtype=np.int64)
        for fam, size in zip(pack, sizes, strict=True):
            joint = joint * size + (fams[fam][0] + 1)
        packs.append((pack, sizes, joint))
    cols: dict[str, list[Any]] = {c: [] for c in _HIST_COLUMNS}

    def emit(scope: str, labels: NDArray[Any], family: str, counts: NDArray[np.int64],
             bin_labels: NDArray[Any]) -> None:
        k = counts.shape[1]
        nz = np.flatnonzero(counts)
        cols["scope"].append(np.full(nz.size, scope, dtype=object))
        cols["scope_value"].append(labels[nz // k])
        cols["family"].append(np.full(nz.size, family, dtype=object))
        cols["bin"].append(np.asarray(bin_labels, dtype=float)[nz % k])
        cols["count"].append(counts.ravel()[nz].astype(np.int64))

    coded: dict[str, Coded] = {}
    for scope in scopes or scope_names(settings):
        rows, group, labels = _scope_codes(df, scope, coded)
        n_groups = len(labels)
        if n_groups == 0:
            continue
        keep = group >= 0
        everyone = bool(keep.all())
        g = group if everyone else group[keep]
        for pack, sizes, joint in packs:
            j = joint if rows is None else joint[rows]
            if not everyone:
                j = j[keep]
            k = int(np.prod(sizes))
            flat = np.bincount(g * k + j, minlength=n_groups * k).reshape((n_groups, *sizes))
            for axis, fam in enumerate(pack, start=1):
                if not _emitted(scope, fam):
                    continue
                others = tuple(a for a in range(1, len(sizes) + 1) if a != axis)
                marginal = flat.sum(axis=others) if others else flat
                emit(scope, labels, fam, marginal[:, 1:], fams[fam][1])
            if pack == _CX_QUESTIONS:
                cells = (flat.reshape(n_groups, -1) @ _CX_CELL_MATRIX).astype(np.int64)
                cells[:, 0] = 0  # nothing answered
                emit(scope, labels, "cx", cells, fams["cx"][1])
            if "theme" in pack:
                emit(scope, labels, "rows", flat.reshape(n_groups, -1).sum(axis=1)[:, None], np.array([0.0]))
                if scope == OVERALL:
                    theme_axis = pack.index("theme") + 1
                    others = tuple(a for a in range(1, len(sizes) + 1) if a != theme_axis)
                    commented = flat.sum(axis=others)[:, 1:].sum(axis=1)
                    emit(scope, labels, "commented", commented[:, None], np.array([0.0]))
    if not cols["count"]:
        return _empty_hist()
    return pd.DataFrame({c: np.concatenate(v) for c, v in cols.items()})


def merge_histograms(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Add histograms of chunks or partitions; the result equals the histogram of all rows."""
    frames = [p for p in parts if len(p)]
    if not frames:
        return _empty_hist()
    if len(frames) == 1:
        merged = frames[0]
    else:
        merged = (pd.concat(frames, ignore_index=True)
                  .groupby(["scope", "scope_value", "family", "bin"], sort=False, as_index=False)["count"]
                  .sum())
    return merged.sort_values(["scope", "scope_value", "family", "bin"], kind="stable",
                              ignore_index=True)


# --------------------------------------------------------------------------------------------
# One KPI from its histogram
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Targets and status
# --------------------------------------------------------------------------------------------


def default_min_n(settings: Settings | None, kpi: str) -> int:
    kcfg = _kcfg(settings)
    return int(kcfg.min_n_per_kpi.get(kpi, kcfg.min_n))


def _pick_target(targets: Sequence[TargetConfig], kpi: str, scope: str,
                 value: str) -> TargetConfig | None:
    specific = general = None
    for t in targets:  # the later of two equal entries wins, as in a TOML override
        if t.kpi != kpi or t.scope != scope:
            continue
        if t.match is None:
            general = t
        elif t.match == value:
            specific = t
    return specific or general


def _find_target(settings: Settings, kpi: str, scope: str, scope_value: str) -> TargetConfig | None:
    """Only a target that names the result's scope applies: a crossing cell ("logistics | east")
    is judged only when a target names the crossing ("department x region"), never by inheriting
    its parts' targets - a company with a few crossings has hundreds of such cells, and holding each
    to a target nobody set was most of the false actions (docs/decisions.md)."""
    return _pick_target(settings.targets, kpi, scope, scope_value)


def target_for(settings: Settings, kpi: str, scope: str, scope_value: str) -> tuple[float, int] | None:
    """(target value, min_n) in force for a KPI result, or None without a target.

    A target with `match` equal to the scope value beats a general target of that scope. min_n:
    the target's own, else `kpis.min_n_per_kpi[kpi]`, else `kpis.min_n`.
    """
    t = _find_target(settings, kpi, scope, scope_value)
    if t is None:
        return None
    return t.value, int(t.min_n if t.min_n is not None else default_min_n(settings, kpi))


def judge(kpi: str, value: float | None, ci_low: float | None, ci_high: float | None, n: int,
          target: float | None, min_n: int) -> str:
    """Status of one result.

    insufficient: no value, or n below min_n (a count KPI is never insufficient); no_target;
    met: the point estimate is on the right side (or on the target); missed: the whole interval is
    on the wrong side; at_risk: the point misses but the interval reaches the target (noise).
    """
    counted = SPECS[kpi].kind == "count"
    if value is None or (not counted and n < min_n):
        return "insufficient"
    if target is None:
        return "no_target"
    lower = kpi in LOWER_IS_BETTER
    if (value <= target) if lower else (value >= target):
        return "met"
    if ci_low is None or ci_high is None:
        return "missed"
    wrong_side = ci_low > target if lower else ci_high < target
    return "missed" if wrong_side else "at_risk"


# --------------------------------------------------------------------------------------------
# From histograms to result rows
# --------------------------------------------------------------------------------------------


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
    scope always has every non-topic KPI (n = 0 when nothing was measured), so reports always have
    a headline.
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
            elif scope == OVERALL:
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


# --------------------------------------------------------------------------------------------
# Control-chart signals over the stored history
# --------------------------------------------------------------------------------------------

History = dict[tuple[str, str, str], list[tuple[str, float, int]]]


def load_history(settings: Settings, engine: Engine, period: str) -> History:
    """Earlier non-provisional results within `kpis.history_cycles` months, oldest first."""
    t = KpiResult.__table__  # type: ignore[attr-defined]
    first = shift_period(period, -settings.kpis.history_cycles)
    stmt = (select(t.c.kpi, t.c.scope, t.c.scope_value, t.c.period, t.c.value, t.c.n)
            .where(t.c.period < period, t.c.period >= first, t.c.provisional.is_(False),
                   t.c.value.is_not(None))
            .order_by(t.c.period))
    out: History = {}
    with engine.connect() as conn:
        for kpi, scope, value, per, val, n in conn.execute(stmt):
            out.setdefault((kpi, scope, value), []).append((per, float(val), int(n)))
    return out


def signal_for(row: KpiRow,
               history: Sequence[tuple[str, float, int]]) -> tuple[str | None, dict[str, Any] | None]:
    """('signal_high' | 'signal_low' | None, chart details in KPI units) for one result.

    signal_low is the worse direction: for lower-is-better KPIs a rise is signal_low.
    """
    spec = SPECS[row.kpi]
    if row.value is None or spec.chart is None or row.kpi in NO_SIGNAL:
        return None, None
    if spec.chart == "laney_p":
        res = spc.laney_p([v / 100 for _, v, _ in history], [n for _, _, n in history],
                          row.value / 100, row.n)
        scale = 100.0
    else:
        res = spc.xmr([v for _, v, _ in history], row.value)
        scale = 1.0
    if res is None:
        return None, None
    chart = {"chart": res.chart, "center": res.center * scale, "lcl": res.lcl * scale,
             "ucl": res.ucl * scale, "rule": res.rule, "history_points": res.history_points,
             "p_low": res.p_low, "p_high": res.p_high}
    if res.side is None:
        return None, chart
    better = (res.side == "low") if row.kpi in LOWER_IS_BETTER else (res.side == "high")
    return ("signal_high" if better else "signal_low"), chart


def apply_signals(rows: Sequence[KpiRow], history: History) -> None:
    for row in rows:
        sig, chart = signal_for(row, history.get(row.key, []))
        row.signal = sig
        if chart is not None:
            row.stats["chart"] = chart


# --------------------------------------------------------------------------------------------
# Database: reading responses, storing results
# --------------------------------------------------------------------------------------------


# The julianday of 1970-01-01 in milliseconds: SQLite keeps a time as whole milliseconds since the
# Julian day epoch.
_JULIAN_EPOCH_MS = 210_866_760_000_000


def _micros(times: pd.Series) -> NDArray[np.int64]:
    """Microseconds since 1970 of each time (garbage where NaT: mask those yourself)."""
    return times.dt.tz_convert(None).to_numpy(dtype="datetime64[us]").view(np.int64)


def _span_hours(start: pd.Series, end: pd.Series, sqlite: bool) -> NDArray[np.float64]:
    """Hours from `start` to `end` exactly as the database computed them before the month frame.

    PostgreSQL's `extract(epoch ...) / 3600` is exact; SQLite's julianday difference rounds each
    time to the millisecond and is a difference of two large day numbers, a few nanoseconds off,
    which moves about one duration in a thousand across a bin edge, so it is reproduced bit for bit
    there to keep stored results as they were."""
    a, b = _micros(start), _micros(end)
    if sqlite:
        days_a = ((a + 500) // 1000 + _JULIAN_EPOCH_MS) / 86_400_000.0
        days_b = ((b + 500) // 1000 + _JULIAN_EPOCH_MS) / 86_400_000.0
        hours = (days_b - days_a) * 24.0
    else:
        hours = (b - a) / 3_600_000_000.0
    hours[(start.isna() | end.isna()).to_numpy()] = np.nan
    hours[hours < 0] = np.nan  # as `_hours`: a response before the ticket opened is a data error
    return hours


def _has_text(comments: pd.Series) -> NDArray[np.bool_]:
    """A comment with something besides spaces, as SQL's `length(trim(comment)) > 0` read it
    (trim removes spaces only); tested once per distinct comment (real comments repeat a lot)."""
    codes, uniques = factorize(comments)
    return np.array([bool(c.strip(" ")) for c in uniques] + [False], dtype=bool)[codes]


def load_responses(settings: Settings, engine: Engine, period: str,
                   columns: Sequence[str] | None = None, *,
                   month_rows: month.Month | None = None) -> pd.DataFrame:
    """All non-quarantined responses of a period, only the columns asked for (default: KPI_COLUMNS).
    `month_rows`: the month the cycle shares among its stages (used when it is this period's).

    Besides the month frame's columns (`tasks.month.COLUMNS`), `columns` may name the derived
    `first_response_hours`, `resolution_hours` (hours from opened_at) and `has_comment`.
    """
    cols, read = _response_columns(columns)
    return _responses(month.of(engine, period, month_rows).rows(read, clean=True), cols, engine)


_FAMILY_COLUMNS: dict[str, tuple[str, ...]] = {
    "cx": ("cx_success", "cx_effort", "cx_emotion"), "complaint": ("is_complaint",),
    "first_response": ("first_response_hours",), "first_response_sla": ("first_response_hours",),
    "resolution": ("resolution_hours",), "resolution_sla": ("resolution_hours",),
    "share": ("themes", "sentiment", "has_comment"), "rows": (),
}


def columns_for(kpi_ids: Sequence[str]) -> list[str]:
    """The response columns the given KPIs need (plus every scope column): a 12-month history of
    a large company, or a second look at one month, is read with a few columns, not all of them."""
    cols = {*SCOPE_FIELDS, "themes"}
    for kpi in kpi_ids:
        spec = SPECS.get(kpi)
        if spec is not None:
            cols.update(_FAMILY_COLUMNS.get(spec.family, (spec.family,)))
    return sorted(cols)


def response_parts(settings: Settings, engine: Engine, period: str,
                   columns: Sequence[str] | None = None, *,
                   month_rows: month.Month | None = None) -> Iterator[pd.DataFrame]:
    """`load_responses` in parts (`tasks.month.Month.parts`), for counting a month too large to
    keep without holding all of its rows: a kept month is one part."""
    cols, read = _response_columns(columns)
    for rows in month.of(engine, period, month_rows).parts(read, clean=True):
        part = _responses(rows, cols, engine)
        del rows
        yield part
        del part  # the caller has done with it: not held while the next part is read


_SOURCES = {"has_comment": ("comment",), "first_response_hours": ("opened_at", "first_response_at"),
            "resolution_hours": ("opened_at", "resolved_at")}


def _response_columns(columns: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(the columns asked for, the month frame's columns they are made of)."""
    cols = list(columns or KPI_COLUMNS)
    unknown = [c for c in cols if c not in month.COLUMNS and c not in DERIVED_COLUMNS]
    if unknown:
        raise ValueError(f"load_responses: unknown column {unknown[0]!r}; use Feedback columns or "
                         f"{', '.join(DERIVED_COLUMNS)}")
    return cols, list(dict.fromkeys(s for c in cols for s in _SOURCES.get(c, (c,))))


def _responses(rows: pd.DataFrame, cols: list[str], engine: Engine) -> pd.DataFrame:
    """The asked columns of month rows, derived ones computed."""
    out: dict[str, Any] = {}
    for col in cols:
        if col == "has_comment":
            out[col] = _has_text(rows["comment"])
        elif col in _SOURCES:
            start, end = _SOURCES[col]
            out[col] = _span_hours(rows[start], rows[end], engine.dialect.name == "sqlite")
        else:
            out[col] = rows[col]
    return pd.DataFrame(out, index=rows.index, copy=False)  # the month frame's columns, not copies


def _upsert(conn: Any, table: Any, rows: list[dict[str, Any]], keys: list[str]) -> None:
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise RuntimeError(f"unsupported database {dialect}")
    stmt = insert(table)
    update = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_=update)
    for i in range(0, len(rows), 2000):
        conn.execute(stmt, rows[i:i + 2000])


def _delete_stale(conn: Any, table: Any, period: str, keep: set[tuple[str, ...]], keys: list[str]) -> None:
    existing = conn.execute(select(table.c.id, *[table.c[k] for k in keys]).where(table.c.period == period))
    stale = [r[0] for r in existing if tuple(r[1:]) not in keep]
    for i in range(0, len(stale), 1000):
        conn.execute(delete(table).where(table.c.id.in_(stale[i:i + 1000])))


def applied_targets(settings: Settings) -> list[dict[str, Any]]:
    """The configured targets as stored for a period (later duplicates win)."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for t in settings.targets:
        match = t.match or ""
        out[(t.kpi, t.scope, match)] = {
            "kpi": t.kpi, "scope": t.scope, "match": match, "value": float(t.value),
            "min_n": int(t.min_n if t.min_n is not None else default_min_n(settings, t.kpi)),
        }
    return list(out.values())


def store_results(settings: Settings, engine: Engine, period: str, rows: Sequence[KpiRow]) -> None:
    """Upsert the period's KpiResult and AppliedTarget rows and drop the ones no longer produced."""
    kt = KpiResult.__table__  # type: ignore[attr-defined]
    at = AppliedTarget.__table__  # type: ignore[attr-defined]
    records = [{
        "period": period, "kpi": r.kpi, "scope": r.scope, "scope_value": r.scope_value, "n": r.n,
        "value": r.value, "ci_low": r.ci_low, "ci_high": r.ci_high, "method": r.method,
        "target": r.target, "min_n": r.min_n, "status": r.status, "signal": r.signal,
        "provisional": r.provisional, "stats": r.stats,
    } for r in rows]
    targets = [{"period": period, **t} for t in applied_targets(settings)]
    with session_scope(engine) as session:
        conn = session.connection()
        _delete_stale(conn, kt, period, {r.key for r in rows}, ["kpi", "scope", "scope_value"])
        _upsert(conn, kt, records, ["period", "kpi", "scope", "scope_value"])
        _delete_stale(conn, at, period, {(t["kpi"], t["scope"], t["match"]) for t in targets},
                      ["kpi", "scope", "match"])
        _upsert(conn, at, targets, ["period", "kpi", "scope", "match"])


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


def compute_rows(settings: Settings, engine: Engine, period: str, provisional: bool = False, *,
                 month_rows: month.Month | None = None) -> list[KpiRow]:
    """Every KPI row of the period with status, signals and decisions, without storing anything."""
    parts = []  # one histogram per part: a month too large to keep is never held whole
    for responses in response_parts(settings, engine, period, month_rows=month_rows):
        parts.append(histograms(responses, settings))
        del responses  # before the next part is read
    hist = merge_histograms(parts)
    rows = rows_from_histograms(hist, settings, period=period, provisional=provisional)
    apply_signals(rows, load_history(settings, engine, period))
    judge_cycle(rows, load_previous(engine, period), settings,
                lambda columns: response_parts(settings, engine, period, columns, month_rows=month_rows))
    return rows


def judge_cycle(rows: Sequence[KpiRow], previous: dict[tuple[str, str, str], KpiRow],
                settings: Settings | None,
                parts: Callable[[list[str]], Iterable[pd.DataFrame]]) -> None:
    """The cycle's decisions (`tasks.decisions`): which results act, and which broader ones are
    explained by a more specific one. That needs the responses again, only when two results of one
    KPI act: `parts(columns)` reads the columns the acting KPIs need."""
    rules = decisions.Rules.of(settings)
    decisions.decide(rows, previous, rules)
    if decisions.needs_nesting(rows):
        columns = columns_for(sorted({r.kpi for r in decisions.acting(rows)}))
        decisions.explain_nested(rows, parts(columns), settings, rules)
        decisions.refine(rows, rules)


def load_previous(engine: Engine, period: str) -> dict[tuple[str, str, str], KpiRow]:
    """The previous cycle's results (histograms included), for pooling two cycles' evidence; none
    when that cycle was held (provisional)."""
    rows = stored_rows(engine, shift_period(period, -1))
    return {} if any(r.provisional for r in rows) else {r.key: r for r in rows}


def compute_kpis(settings: Settings, engine: Engine, period: str, provisional: bool = False, *,
                 month_rows: month.Month | None = None) -> list[KpiRow]:
    """The KPI stage: compute every KPI of every scope for the period and store the results.
    `month_rows`: the month the cycle shares among its stages (None: read from the database)."""
    rows = compute_rows(settings, engine, period, provisional, month_rows=month_rows)
    store_results(settings, engine, period, rows)
    return rows


def counts(rows: Sequence[KpiRow]) -> dict[str, int]:
    """Figures for the cycle's stage record: results per status and signals, and decisions."""
    out: dict[str, int] = {"results": len(rows), **decisions.summary(rows)}
    for r in rows:
        out[r.status] = out.get(r.status, 0) + 1
        if r.signal:
            out[r.signal] = out.get(r.signal, 0) + 1
    return out


def stored_rows(engine: Engine, period: str, scope: str | None = None) -> list[KpiRow]:
    """The stored KpiResult rows of a period as KpiRow (stats included), in display order."""
    t = KpiResult.__table__  # type: ignore[attr-defined]
    stmt = select(t).where(t.c.period == period)
    if scope:
        stmt = stmt.where(t.c.scope == scope)
    with engine.connect() as conn:
        recs = conn.execute(stmt).mappings().all()
    kpi_pos = {k: i for i, k in enumerate(KPI_ORDER)}
    scope_pos = {s: i for i, s in enumerate(BASE_SCOPES)}
    out = [KpiRow(kpi=r["kpi"], scope=r["scope"], scope_value=r["scope_value"], n=r["n"],
                  value=r["value"], ci_low=r["ci_low"], ci_high=r["ci_high"], method=r["method"],
                  target=r["target"], min_n=r["min_n"], status=r["status"], signal=r["signal"],
                  provisional=bool(r["provisional"]), period=r["period"], stats=r["stats"] or {})
           for r in recs]
    out.sort(key=lambda r: (scope_pos.get(r.scope, len(scope_pos)), r.scope, r.scope_value,
                            kpi_pos.get(r.kpi, 99)))
    return out


# --------------------------------------------------------------------------------------------
# Row-level helpers for other stages (re-measure, reports)
# --------------------------------------------------------------------------------------------


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


__all__ = [
    "KPI_ORDER", "LOWER_IS_BETTER", "KpiRow", "Measure",
    "compute_kpis", "compute_rows", "load_responses", "response_scores",
    "kpi_value", "kpi_measure", "scope_frame", "target_for", "judge", "histograms",
    "merge_histograms", "rows_from_histograms", "kpi_from_hist", "kpi_from_stats", "merge_stats",
    "stored_rows", "counts", "scope_mask", "family_bins", "judge_cycle", "load_previous",
]
