"""The period's feedback rows summarised once (groups, negatives, comments), in parts, and narrowed
to one department's rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sqlalchemy import Engine

from cxloop.config import Settings
from cxloop.tasks import month
from cxloop.tasks.codes import factorize
from cxloop.tasks.kpis import response_scores
from cxloop.tasks.report.grouping import Coded, _combine, _count_groups, _first_rows, _value_codes
from cxloop.vocabulary import (
    split_themes,
)

_FEEDBACK_COLS = ("response_id", "department", "journey_stage", "touchpoint", "channel", "nps", "csat",
                  "ces", "cx_success", "cx_effort", "cx_emotion", "comment", "is_complaint",
                  "sentiment", "sentiment_score", "themes")


def load_feedback(engine: Engine, period: str, month_rows: month.Month | None = None) -> pd.DataFrame:
    """The period's clean (non-quarantined) responses (from `month_rows`, the month the cycle
    shares, when given), with `id` and the columns the report needs."""
    return month.of(engine, period, month_rows).rows(("id", *_FEEDBACK_COLS), clean=True)


# What each journey KPI is scored from (tasks.kpis.response_scores reads these columns).
_JOURNEY_SCORE_COLS = {"nps": ("nps",), "csat": ("csat",), "ces": ("ces",), "ces_top": ("ces",),
                       "cx_index": ("cx_success", "cx_effort", "cx_emotion")}
_KEY_COLS = ("department", "journey_stage", "touchpoint", "channel")
_COMMENT_COLS = (*_KEY_COLS, "themes", "comment", "sentiment_score", "response_id")


@dataclass
class FeedbackSummary:
    """The period's responses as the report needs them, aggregated instead of row by row.

    `groups`: response counts (`count`) per department, journey stage, touchpoint, channel, one
    0/1 column per topic a department owns (`topic:<id>`) and the journey KPI's answer columns;
    `negatives`: counts of negative or complaint responses per the same keys and their themes
    (`first` orders themes as they first occur); `comments`: the negative responses that have a
    comment, most negative first (`by_theme`: their positions per theme; a department page keeps
    them all and selects with `comment_mask`). A million responses make a few thousand groups, so
    each page (company and every department) works on those instead of re-filtering every row."""

    kpi: str
    groups: pd.DataFrame
    negatives: pd.DataFrame
    comments: pd.DataFrame
    _scores: dict[tuple[Any, ...], float | None] = field(default_factory=dict)
    by_theme: dict[str, NDArray[np.int64]] = field(default_factory=dict)
    comment_mask: NDArray[np.bool_] | None = None
    _texts: dict[str, str] = field(default_factory=dict)  # comment -> masked, one line


def _owned_topics(settings: Settings) -> list[str]:
    return sorted({t for d in settings.departments.values() for t in (d.owns.get("topic") or [])})


def summarise_feedback(engine: Engine, settings: Settings, period: str, journey_kpi: str = "nps",
                       month_rows: month.Month | None = None) -> FeedbackSummary:
    """`FeedbackSummary` of a period, from its rows (`month_rows`: the month the cycle shares); a
    month too large to keep is summarised part by part (`tasks.month.Month.parts`) and the parts'
    summaries merged."""
    parts = []
    for rows in month.of(engine, period, month_rows).parts(("id", *_FEEDBACK_COLS), clean=True):
        parts.append(_summary_part(rows, settings, journey_kpi))
        del rows  # before the next part is read
    if len(parts) == 1:
        groups, negs, comments, _ = parts[0]
        return _add_scores(FeedbackSummary(journey_kpi, groups, negs, comments.drop(columns="id")), settings)
    return _add_scores(_merged(journey_kpi, parts), settings)


def summarise_frame(df: pd.DataFrame, settings: Settings, journey_kpi: str = "nps") -> FeedbackSummary:
    """`FeedbackSummary` of responses in a frame (`load_feedback`'s columns); `first` of a
    negatives group is its smallest id."""
    groups, negs, comments, _ = _summary_part(df, settings, journey_kpi)
    return _add_scores(FeedbackSummary(journey_kpi, groups, negs, comments.drop(columns="id")), settings)


# A summary of rows (ordered by id) before scoring: groups, negatives, comments (with `id`), and per
# group column the first id of each value (the order of the values' first rows orders the groups).
Part = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, dict[Any, int]]]


def _summary_part(df: pd.DataFrame, settings: Settings, journey_kpi: str) -> Part:
    score_cols = list(_JOURNEY_SCORE_COLS.get(journey_kpi, ()))
    df = df.reset_index(drop=True)
    # Every key column coded once, for the groups and the negatives alike.
    coded = {c: _value_codes(df[c]) for c in (*_KEY_COLS, "themes")}
    # Topic flags worked out on the distinct themes strings (the last one: missing), then spread.
    codes, uniques = factorize(df["themes"])
    distinct = pd.Series([*uniques, None], dtype=object)
    flags = {f"topic:{t}": _has_theme(distinct, [t]).to_numpy(dtype=np.int64)[codes]
             for t in _owned_topics(settings)}
    extra = {**flags, **{c: df[c] for c in score_cols}}
    value_codes = [*(coded[c] for c in _KEY_COLS), *(_value_codes(pd.Series(v)) for v in extra.values())]
    group_frame = df[list(_KEY_COLS)].assign(**extra)
    groups = _count_groups(group_frame, value_codes)
    negative = ((df["sentiment"].to_numpy(dtype=object) == "negative")
                | (df["is_complaint"].to_numpy(dtype=float) == 1.0))
    negs = _negatives(df, negative, coded)
    comments = df.loc[negative & df["comment"].notna().to_numpy(), ["id", *_COMMENT_COLS]]
    ids = df["id"].to_numpy(dtype=np.int64)
    firsts = {c: _first_ids(group_frame[c], coded_c, ids)
              for c, coded_c in zip(group_frame.columns, value_codes, strict=True)}
    return groups, negs, comments.reset_index(drop=True), firsts


def _first_ids(values: pd.Series, coded: Coded, ids: NDArray[np.int64]) -> dict[Any, int]:
    """The first id of each present value, of rows ordered by id. `_value_codes` number values in
    the order they first occur (the last code: missing), so a value's first row is where the
    running maximum of the codes reaches its code: one pass, no table per code."""
    codes, k = coded
    present = np.flatnonzero(codes < k - 1)
    if not present.size:
        return {}
    seen = np.maximum.accumulate(codes[present])
    first = present[np.flatnonzero(np.r_[True, seen[1:] > seen[:-1]])]
    return {_key(v): int(i) for v, i in zip(values.iloc[first].tolist(), ids[first].tolist(), strict=True)}


def _key(value: Any) -> Any:
    """A value as a dictionary key: every missing value is None (NaN is not equal to itself)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _merged(kpi: str, parts: list[Part]) -> FeedbackSummary:
    """The summary of all the parts' rows, as `_summary_part` of them at once gives it: groups
    ordered by their values' first rows (missing last), negatives by their first row, comments
    by id. Parts hold a few thousand groups each, so this works on groups, not rows."""
    cols = list(parts[0][0].columns.drop("count"))
    lowest: dict[str, dict[Any, int]] = {c: {} for c in cols}
    for part in parts:
        for c, firsts in part[3].items():
            for value, i in firsts.items():
                lowest[c][value] = min(i, lowest[c].get(value, i))
    rank = {c: {v: r for r, v in enumerate(sorted(lowest[c], key=lowest[c].__getitem__))} for c in cols}
    groups, count, _ = _add_up(pd.concat([p[0] for p in parts], ignore_index=True), cols)
    ranked = [tuple(rank[c].get(_key(v), len(rank[c])) for c, v in zip(cols, values, strict=True))
              for values in groups[cols].itertuples(index=False, name=None)]
    order = sorted(range(len(groups)), key=ranked.__getitem__)
    groups = groups.iloc[order].reset_index(drop=True).assign(count=count[order])
    keys = [*_KEY_COLS, "themes"]
    negs, n, first = _add_up(pd.concat([p[1] for p in parts], ignore_index=True), keys)
    by_first = np.argsort(first, kind="stable")
    negs = negs.iloc[by_first][keys].reset_index(drop=True).assign(count=n[by_first], first=first[by_first])
    comments = pd.concat([p[2] for p in parts], ignore_index=True)
    comments = comments.iloc[np.argsort(comments["id"].to_numpy(), kind="stable")]
    return FeedbackSummary(kpi, groups, negs, comments.drop(columns="id").reset_index(drop=True))


def _add_up(frame: pd.DataFrame, cols: list[str]) -> tuple[
        pd.DataFrame, NDArray[np.int64], NDArray[np.int64]]:
    """One row per distinct `cols` values (the first row having them), its summed `count` and its
    smallest `first` (if the frame has one). Missing values are one value, as in `_key`."""
    counts = frame["count"].to_numpy(dtype=np.int64)
    firsts = frame["first"].to_numpy(dtype=np.int64) if "first" in frame.columns else counts
    if not len(frame):
        return frame.reset_index(drop=True), counts, firsts
    codes = frame.groupby(cols, dropna=False, sort=False).ngroup().to_numpy()  # in order of first rows
    _, rows = np.unique(codes, return_index=True)
    total = np.zeros(len(rows), dtype=np.int64)
    np.add.at(total, codes, counts)
    lowest = np.full(len(rows), np.iinfo(np.int64).max)
    np.minimum.at(lowest, codes, firsts)
    return frame.iloc[rows].reset_index(drop=True), total, lowest


def _negatives(df: pd.DataFrame, negative: NDArray[np.bool_], coded: dict[str, Coded]) -> pd.DataFrame:
    """The negative rows per key and themes, with their number (`count`) and smallest id
    (`first`), groups in the order they first occur: a groupby(dropna=False, sort=False) of them."""
    keys = [*_KEY_COLS, "themes"]
    rows = np.flatnonzero(negative)
    combined, space = _combine(len(rows), [(coded[c][0][rows], coded[c][1]) for c in keys])
    first, counts = _first_rows(combined, space)
    lowest = np.full(space, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(lowest, combined, df["id"].to_numpy(dtype=np.int64)[rows])
    present = np.flatnonzero(counts)
    order = present[np.argsort(first[present], kind="stable")]
    return (df.iloc[rows[first[order]]][keys].reset_index(drop=True)
            .assign(count=counts[order], first=lowest[order]))


def _owner_mask(frame: pd.DataFrame, settings: Settings, dept: str) -> pd.Series:
    """`department_rows`' rule on a summary frame (topics from `themes` or the `topic:` flags)."""
    owns = settings.departments[dept].owns if dept in settings.departments else {}
    mask = _is_one_of(frame["department"], [dept])
    for scope in ("journey_stage", "touchpoint", "channel"):
        if owns.get(scope):
            mask |= _is_one_of(frame[scope], owns[scope])
    if owns.get("topic"):
        if "themes" in frame.columns:
            mask |= _has_theme(frame["themes"], owns["topic"]).to_numpy(dtype=bool)
        else:
            for t in owns["topic"]:
                mask |= frame[f"topic:{t}"].to_numpy(dtype=np.int64) == 1
    return pd.Series(mask, index=frame.index, dtype=bool)


def _is_one_of(values: pd.Series, wanted: Sequence[str]) -> NDArray[np.bool_]:
    """`values.isin(wanted)` for text, tested once per distinct value: each page asks this of the
    same columns (their codes are shared), so it costs a lookup per page instead of a pass."""
    codes, uniques = factorize(values)
    hit = set(wanted)
    return np.array([u in hit for u in uniques.tolist()] + [False], dtype=bool)[codes]


def _department_summary(summary: FeedbackSummary, settings: Settings, dept: str) -> FeedbackSummary:
    return FeedbackSummary(
        summary.kpi, summary.groups[_owner_mask(summary.groups, settings, dept)],
        summary.negatives[_owner_mask(summary.negatives, settings, dept)],
        summary.comments, summary._scores, summary.by_theme,
        _owner_mask(summary.comments, settings, dept).to_numpy(dtype=bool), summary._texts)


def department_rows(df: pd.DataFrame, settings: Settings, dept: str) -> pd.DataFrame:
    """Responses a department answers for: its own, plus the stages/touchpoints/channels/topics it owns."""
    return df[_owner_mask(df, settings, dept)]


def _has_theme(themes: pd.Series, wanted: Sequence[str]) -> pd.Series:
    """Rows whose themes contain any of `wanted`, tested once per distinct themes string."""
    codes, uniques = factorize(themes)
    hit = np.array([bool(set(split_themes(u)) & set(wanted)) for u in uniques.tolist()] + [False], dtype=bool)
    return pd.Series(hit[codes], index=themes.index)


def _score_one(settings: Settings, kpi: str, cols: Sequence[str], values: tuple[Any, ...]) -> float | None:
    """The score of one answer combination (`tasks.kpis.response_scores`), None if the
    combination is not scored (unanswered or out of range)."""
    frame = pd.DataFrame([values], columns=list(cols))
    arr = pd.Series(response_scores(kpi, frame, settings=settings), dtype=float).dropna()
    return float(arr.iloc[0]) if len(arr) else None


def _add_scores(summary: FeedbackSummary, settings: Settings) -> FeedbackSummary:
    """Score every group of `summary.groups` once (column `_s`): a group is one answer combination,
    and there are at most a few hundred distinct combinations, so each is scored only once."""
    groups = summary.groups
    cols = list(_JOURNEY_SCORE_COLS.get(summary.kpi, ()))
    scores = []
    for row in groups[cols].itertuples(index=False, name=None) if cols else ():
        key = tuple(None if pd.isna(v) else v for v in row)
        if key not in summary._scores:
            summary._scores[key] = _score_one(settings, summary.kpi, cols, key)
        value = summary._scores[key]
        scores.append(math.nan if value is None else value)
    summary.groups = groups.assign(_s=pd.Series(scores if cols else math.nan, index=groups.index,
                                                dtype=float))
    summary.comments = _most_negative_first(summary.comments)
    # Positions per theme, worked out once per distinct themes string.
    codes, uniques = pd.factorize(summary.comments["themes"].to_numpy(dtype=object), use_na_sentinel=True)
    names = [set(split_themes(u)) for u in uniques] + [set()]  # code -1: missing
    summary.by_theme = {theme: np.flatnonzero(np.array([theme in n for n in names])[codes])
                        for theme in set().union(*names)}
    return summary


def _most_negative_first(comments: pd.DataFrame) -> pd.DataFrame:
    """The comments shown first are the most negative (lowest probability of positive, `_score`;
    missing: 0.5), ties by response id: a stable sort_values(["_score", "response_id"]), with
    the ids ranked by Python's sort of the distinct ids (pandas sorts them as an object array,
    several times slower)."""
    score = comments["sentiment_score"].to_numpy(dtype=float, na_value=np.nan)
    score = np.where(np.isnan(score), 0.5, score)
    codes, uniques = pd.factorize(comments["response_id"].to_numpy(dtype=object), use_na_sentinel=True)
    ids = uniques.tolist()
    rank = np.empty(len(ids) + 1, dtype=np.int64)  # the last: a missing id, sorted last
    rank[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))
    rank[-1] = len(ids)
    order = np.lexsort((rank[codes], score))
    return comments.iloc[order].assign(_score=score[order]).reset_index(drop=True)
