"""The monthly CX report: data assembly from the database, then one Jinja2 template per language.

Every KPI number on the page is read from `KpiResult` (what `cxloop kpis` shows), never recomputed,
so the report and the CLI cannot disagree. Only the journey map and the comment summary are
computed here, from the period's feedback rows, because no stored result holds every
journey stage x touchpoint crossing. The page is self-contained (inline CSS and SVG): it opens
offline, travels as an e-mail attachment and prints.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import pandas as pd
from markupsafe import Markup
from numpy.typing import NDArray
from sqlalchemy import Engine, select
from sqlmodel import Session, col

from cxloop.config import Settings
from cxloop.models import (
    Action,
    ActionEvent,
    Cycle,
    ImportRecord,
    KpiResult,
    Measurement,
    QualityCheck,
    QuarantinedRow,
)
from cxloop.periods import parse_period, period_end_date, shift_period
from cxloop.tasks import charts
from cxloop.tasks.codes import factorize
from cxloop.tasks.lifecycle import OPEN_STATUSES
from cxloop.tasks.masking import mask_pii
from cxloop.tasks.rendering import render, translate
from cxloop.vocabulary import (
    DOMAINS,
    KPI_STATUS_LABELS,
    KPIS,
    kpi_label,
    kpi_status_label,
    lower_is_better,
    scope_label,
    split_themes,
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


# --------------------------------------------------------------------------- optional sibling modules


@functools.cache
def _sibling(name: str) -> Any | None:
    """tasks.kpis / tasks.spc when they exist: the report prefers the shared formulas (looked up
    once per process: `find_spec` walks the import path, and this is asked per page and KPI)."""
    if importlib.util.find_spec(f"cxloop.tasks.{name}") is None:
        return None
    return importlib.import_module(f"cxloop.tasks.{name}")


def control_limits(series: Sequence[StoredKpi]) -> charts.Limits | None:
    """Control limits for the trend line of a KPI, the last row being this cycle.

    Preferred: the limits the KPI stage stored with the row (`stats["chart"]`), i.e. exactly what
    this cycle's signal was judged against (XmR, or Laney p' for proportions). Otherwise XmR over
    the earlier cycles (tasks.spc when present, else mean +/- 2.66 x mean moving range here)."""
    if not series:
        return None
    stored = (series[-1].stats or {}).get("chart") if isinstance(series[-1].stats, dict) else None
    if stored and all(stored.get(k) is not None for k in ("center", "lcl", "ucl")):
        return charts.Limits(float(stored["center"]), float(stored["lcl"]), float(stored["ucl"]))
    history = [float(r.value) for r in series[:-1] if r.value is not None]
    current = series[-1].value
    spc = _sibling("spc")
    if spc is not None and hasattr(spc, "xmr") and current is not None:
        res = spc.xmr(history, float(current))
        return charts.Limits(res.center, res.lcl, res.ucl) if res is not None else None
    return xmr_limits(history)


def xmr_limits(values: Sequence[float]) -> charts.Limits | None:
    """XmR (individuals) chart limits: mean +/- 2.66 x mean moving range, the textbook limits
    (docs/methods.md, "Control charts"), drawn only when `tasks.spc` is absent.

    Fewer than four points give no useful limits, so none are drawn."""
    vals = [float(v) for v in values if v is not None and not math.isnan(v)]
    if len(vals) < 4:
        return None
    center = sum(vals) / len(vals)
    mr = [abs(b - a) for a, b in zip(vals, vals[1:], strict=False)]
    mr_bar = sum(mr) / len(mr)
    return charts.Limits(center, center - 2.66 * mr_bar, center + 2.66 * mr_bar)


# --------------------------------------------------------------------------- formatting


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


# --------------------------------------------------------------------------- report data


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


_KPI_TABLE = KpiResult.__table__  # type: ignore[attr-defined]


def _kpi_rows(session: Session, periods: Sequence[str], kpis: Iterable[str] | None = None,
              scope: str | None = None, scope_value: str | None = None) -> list[StoredKpi]:
    """Rows of the table, not ORM objects: a page reads a few hundred, and building a `KpiResult`
    of each cost 0.2 ms (0.4 s for the six pages of a month)."""
    t = _KPI_TABLE
    stmt = select(t).where(t.c.period.in_(list(periods)))
    if kpis is not None:
        stmt = stmt.where(t.c.kpi.in_(list(kpis)))
    if scope is not None:
        stmt = stmt.where(t.c.scope == scope)
    if scope_value is not None:
        stmt = stmt.where(t.c.scope_value == scope_value)
    return cast(list[StoredKpi], list(session.execute(stmt)))


def _headlines(session: Session, settings: Settings, period: str, scope: str, scope_value: str,
               lang: str) -> list[Headline]:
    first = shift_period(period, -(TREND_CYCLES - 1))
    periods = [shift_period(first, i) for i in range(TREND_CYCLES)]
    rows = _kpi_rows(session, periods, HEADLINE_KPIS, scope, scope_value)
    by_kpi: dict[str, dict[str, StoredKpi]] = {}
    for r in rows:
        by_kpi.setdefault(r.kpi, {})[r.period] = r
    labels = {"ucl": translate("UCL", lang), "lcl": translate("LCL", lang),
              "center": translate("mean", lang), "target": translate("target", lang)}
    out = []
    for kpi in HEADLINE_KPIS:
        hist = by_kpi.get(kpi, {})
        cur = hist.get(period)
        if cur is None and scope != "overall":
            continue  # a department without this KPI: no empty tile
        lo, hi = _domain(kpi, [r.value for r in hist.values()])
        cell = KpiCell.of(cur, lo, hi) if cur else None
        earlier = sorted(p for p in hist if p < period and hist[p].value is not None)
        prev = hist[earlier[-1]] if earlier else None
        change = significant = None
        if cur and prev and cur.value is not None and prev.value is not None:
            change = cur.value - prev.value
            significant = _significant(cur, prev, change)
        series = [hist[p] for p in sorted(hist) if p <= period and hist[p].value is not None]
        points = [charts.TrendPoint(p.period[2:], float(p.value or 0), p.ci_low, p.ci_high,
                                    p.signal is not None) for p in series]
        limits = control_limits(series)
        title = f"{kpi_label(kpi, lang)} {series[0].period if series else ''}–{period}"
        chart = charts.trend_chart(points, limits=limits, target=cur.target if cur else None,
                                   title=title, labels=labels, digits=kpi_digits(kpi))
        out.append(Headline(
            kpi=kpi, label=kpi_label(kpi, lang), cell=cell,
            target_text=fmt(kpi, cur.target) if cur and cur.target is not None else "",
            change=change, change_text=(f"{change:+.{kpi_digits(kpi, change)}f}" if change is not None
                                        else ""),
            change_significant=bool(significant),
            change_better=change is not None and (change < 0 if lower_is_better(kpi) else change > 0),
            previous_period=prev.period if prev else None,
            chart=chart))
    return out


def _significant(cur: StoredKpi, prev: StoredKpi, change: float) -> bool:
    """A change is called real when it exceeds the combined half-widths of the two intervals
    (a z-test of the difference, with standard errors read back from the stored intervals)."""
    halves = []
    for r in (cur, prev):
        if r.ci_low is None or r.ci_high is None:
            return False
        halves.append((r.ci_high - r.ci_low) / 2)
    return abs(change) > math.hypot(*halves)


def _scorecard(session: Session, settings: Settings, period: str, department: str | None,
               lang: str) -> tuple[list[str], list[ScoreRow]]:
    rows = _kpi_rows(session, [period], SCORECARD_KPIS)
    index = {(r.kpi, r.scope, r.scope_value): r for r in rows}
    wanted: list[tuple[str, str, str]] = []  # (scope, value, label)
    if department is None:
        wanted.append(("overall", "all", translate("Company", lang)))
        depts = list(settings.departments)
        depts += sorted({r.scope_value for r in rows if r.scope == "department"} - set(depts))
        wanted += [("department", d, _dept_name(settings, d)) for d in depts]
    else:
        wanted.append(("department", department, _dept_name(settings, department)))
        owns = settings.departments[department].owns if department in settings.departments else {}
        for scope, values in owns.items():
            for v in values:
                label = _value_label(settings, scope, v, lang)
                wanted.append((scope, v, f"{scope_label(scope, lang)}: {label}"))
    present = {(r.scope, r.scope_value) for r in rows}
    if department is None:
        overall = {r.scope_value for r in rows if r.scope == "overall"}
        if overall and ("overall", "all") not in present:
            wanted[0] = ("overall", sorted(overall)[0], wanted[0][2])
    wanted = [w for w in wanted if (w[0], w[1]) in present]
    used_kpis = [k for k in SCORECARD_KPIS if any((k, s, v) in index for s, v, _ in wanted)]
    domains = {k: _domain(k, [r.value for r in rows if r.kpi == k]) for k in used_kpis}
    out = []
    for scope, value, label in wanted:
        cells: list[KpiCell | None] = []
        for k in used_kpis:
            r = index.get((k, scope, value))
            cells.append(KpiCell.of(r, *domains[k]) if r else None)
        out.append(ScoreRow(label, scope, cells))
    return used_kpis, out


def _dept_name(settings: Settings, dept: str) -> str:
    d = settings.departments.get(dept)
    return d.name if d else dept


def _value_label(settings: Settings, scope: str, value: str, lang: str) -> str:
    if scope == "topic":
        return _topic_names(settings, lang).get(value, value)
    if scope == "department":
        return _dept_name(settings, value)
    return label(value, lang)


def _topic_names(settings: Settings, lang: str) -> dict[str, str]:
    from cxloop.tasks.comments import load_taxonomy  # the configured topics, or the shipped default taxonomy

    return {t.id: (t.name_zh if lang == "zh" else t.name_en) for t in load_taxonomy(settings)}


# --------------------------------------------------------------------------- feedback-derived parts

_FEEDBACK_COLS = ("response_id", "department", "journey_stage", "touchpoint", "channel", "nps", "csat",
                  "ces", "cx_success", "cx_effort", "cx_emotion", "comment", "is_complaint",
                  "sentiment", "sentiment_score", "themes")


def load_feedback(engine: Engine, period: str) -> pd.DataFrame:
    """The period's clean (non-quarantined) responses from the month frame (`tasks.month`), with
    `id` and the columns the report needs."""
    from cxloop.tasks import month

    return month.month_rows(engine, period, ("id", *_FEEDBACK_COLS), clean=True)


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


def summarise_feedback(engine: Engine, settings: Settings, period: str,
                       journey_kpi: str = "nps") -> FeedbackSummary:
    """`FeedbackSummary` of a period, from its rows in the month frame; a month too large to keep
    is summarised part by part (`tasks.month.month_parts`) and the parts' summaries merged."""
    from cxloop.tasks import month

    parts = []
    for rows in month.month_parts(engine, period, ("id", *_FEEDBACK_COLS), clean=True):
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


Coded = tuple[NDArray[np.int64], int]  # a code per row, and how many codes there can be


def _value_codes(values: pd.Series) -> Coded:
    """Each value's code; a missing value gets the code after the others (pandas' own way,
    use_na_sentinel=False, first replaces the missing values of a whole text column). Text
    columns of the month frame were usually factorised by an earlier stage already."""
    if values.dtype == "str" or values.dtype == object:
        codes, uniques = factorize(values)
    else:
        codes, uniques = pd.factorize(values.to_numpy(), use_na_sentinel=True)
    return np.where(codes < 0, len(uniques), codes).astype(np.int64), len(uniques) + 1


def _combine(n: int, parts: Sequence[Coded]) -> Coded:
    """One code per row for its combination of the parts' codes, in the order of the parts' codes;
    at most about `n` codes (renumbered, order kept, when there could be more), so that a table
    per code is no bigger than the codes."""
    combined = np.zeros(n, dtype=np.int64)
    space = 1
    for codes, k in parts:
        if space * k >= 2**62:  # renumber the combinations so far before the codes overflow
            combined, space = _renumbered(combined)
        combined = combined * k + codes
        space *= k
    return _renumbered(combined) if space > n + 1024 else (combined, space)


def _renumbered(combined: NDArray[np.int64]) -> Coded:
    uniq, inverse = np.unique(combined, return_inverse=True)
    return inverse.astype(np.int64).ravel(), len(uniq)


def _first_rows(combined: NDArray[np.int64], space: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Per code (all `space` of them): the position of its first row (len(combined) when it has
    none) and its number of rows. A table per code, not a sort of a million codes."""
    first = np.full(space, len(combined), dtype=np.int64)
    np.minimum.at(first, combined, np.arange(len(combined), dtype=np.int64))
    return first, np.bincount(combined, minlength=space).astype(np.int64)


def _count_groups(frame: pd.DataFrame, coded: Sequence[Coded] | None = None) -> pd.DataFrame:
    """One row per distinct combination of the columns' values (missing is a value too) with the
    number of rows having it (`count`), in the order of the combined codes. `coded`: the columns'
    `_value_codes`, when already worked out."""
    parts = coded if coded is not None else [_value_codes(frame[c]) for c in frame.columns]
    first, counts = _first_rows(*_combine(len(frame), parts))
    present = counts > 0
    return frame.iloc[first[present]].reset_index(drop=True).assign(count=counts[present])


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


_JOURNEY_KPIS = ("nps", "csat", "ces", "ces_top", "cx_index")
_MIN_SPAN = {"nps": 20.0, "cx_index": 20.0, "csat": 10.0, "ces_top": 10.0, "ces": 0.5}


def _local_scores(kpi: str, df: pd.DataFrame) -> pd.Series:
    """Per-response scores whose mean is the KPI (used only when tasks.kpis is not available)."""
    if kpi == "nps":
        s = df["nps"].dropna().astype(float)
        return s.map(lambda v: 100.0 if v >= 9 else (-100.0 if v <= 6 else 0.0))
    if kpi == "csat":
        return df["csat"].dropna().astype(float).map(lambda v: 100.0 if v >= 4 else 0.0)
    if kpi == "ces":
        return df["ces"].dropna().astype(float)
    if kpi == "ces_top":
        return df["ces"].dropna().astype(float).map(lambda v: 100.0 if v >= 5 else 0.0)
    if kpi == "cx_index":
        parts = df[["cx_success", "cx_effort", "cx_emotion"]].dropna().astype(float)
        net = parts.map(lambda v: 100.0 if v >= 6 else (-100.0 if v <= 3 else 0.0))
        return net.mean(axis=1)
    raise ValueError(f"the journey map cannot show {kpi!r}; use nps, csat, ces, ces_top or cx_index")


def _score_one(settings: Settings, kpi: str, cols: Sequence[str], values: tuple[Any, ...]) -> float | None:
    """The score of one answer combination (tasks.kpis.response_scores when present), None if the
    combination is not scored (unanswered or out of range)."""
    frame = pd.DataFrame([values], columns=list(cols))
    kpis = _sibling("kpis")
    if kpis is not None and hasattr(kpis, "response_scores"):
        arr = pd.Series(kpis.response_scores(kpi, frame, settings=settings), dtype=float).dropna()
    else:
        arr = _local_scores(kpi, frame)
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
    if kpi not in _JOURNEY_KPIS:
        raise ValueError(f"the journey map cannot show {kpi!r}; use one of {', '.join(_JOURNEY_KPIS)}")
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


def _ordered(values: Iterable[Any], vocabulary: Sequence[str]) -> list[str]:
    vals = {str(v) for v in values}
    return [v for v in vocabulary if v in vals] + sorted(vals - set(vocabulary))


def _voices(page: FeedbackSummary, settings: Settings, lang: str, top: int = 6,
            per_theme: int = 2) -> tuple[list[Voice], int]:
    """Most frequent complaint themes, each with its most negative comments as examples."""
    neg = page.negatives
    total = int(neg["count"].sum())
    names = _topic_names(settings, lang)
    counts: Counter[str] = Counter()
    # Themes counted in the order they first occur (within a row too: not a set, whose order
    # changes with PYTHONHASHSEED), so that equal counts always rank the same.
    for themes, weight in neg.sort_values("first")[["themes", "count"]].itertuples(index=False, name=None):
        for theme in split_themes(themes if isinstance(themes, str) else None):
            counts[theme] += int(weight)
    comments = page.comments["comment"].to_numpy()
    text_codes = factorize(page.comments["comment"])[0]  # once for every page
    mask = page.comment_mask
    seen: set[str] = set()
    voices = []

    def pick(positions: NDArray[np.int64]) -> list[str]:
        if mask is not None:
            positions = positions[mask[positions]]
        # Only the first row of each distinct comment can add a text: a repeat of a comment
        # adds nothing a first one did not (thousands of rows repeat a few dozen comments).
        positions = positions[np.sort(np.unique(text_codes[positions], return_index=True)[1])]
        out = []
        for pos in positions.tolist():
            raw = str(comments[pos])
            text = page._texts.get(raw)
            if text is None:
                # Mask before shortening, so a cut can never leave half a phone number unmasked.
                text = page._texts[raw] = mask_pii(" ".join(raw.split()))
            if len(text) < 6 or text in seen:
                continue
            seen.add(text)
            out.append(text if len(text) <= 280 else text[:279] + "…")
            if len(out) >= per_theme:
                break
        return out

    for theme, count in counts.most_common(top):
        voices.append(Voice(names.get(theme, theme), count, count / max(total, 1),
                            pick(page.by_theme.get(theme, np.zeros(0, dtype=np.int64)))))
    if not voices and total:
        everything = np.arange(len(comments), dtype=np.int64)
        voices.append(Voice(translate("Unclassified complaints", lang), total, 1.0,
                            pick(everything)[:4] if per_theme < 4 else pick(everything)))
    return voices, total


# --------------------------------------------------------------------------- actions and quality


def _actions(session: Session, settings: Settings, period: str, department: str | None,
             lang: str) -> tuple[dict[str, int], list[ActionRow]]:
    stmt = select(Action).where(col(Action.opened_period) <= period)
    if department is not None:
        stmt = stmt.where(col(Action.department) == department)
    actions = list(session.scalars(stmt))
    ids = [a.id for a in actions]
    events = list(session.scalars(select(ActionEvent).where(
        col(ActionEvent.action_id).in_(ids), col(ActionEvent.period) == period))) if ids else []
    measurements = list(session.scalars(select(Measurement).where(
        col(Measurement.action_id).in_(ids), col(Measurement.period) <= period))) if ids else []
    latest: dict[int, Measurement] = {}
    for m in sorted(measurements, key=lambda m: m.period):
        latest[m.action_id] = m
    escalated = {e.action_id for e in events if e.to_status == "escalated"}
    verified = {e.action_id for e in events if e.to_status == "verified"}
    verified |= {a.id or 0 for a in actions if a.status == "verified" and a.closed_period == period}
    end = period_end_date(period)
    rows, counts = [], Counter[str]()
    for a in sorted(actions, key=lambda a: (a.status not in OPEN_STATUSES, a.due or date.max, a.id or 0)):
        is_open = a.status in OPEN_STATUSES
        opened = a.opened_period == period
        overdue = _is_overdue(a, end)
        counts["opened"] += opened
        counts["open"] += is_open
        counts["overdue"] += overdue
        counts["verified"] += a.id in verified
        counts["escalated"] += a.id in escalated
        if not (is_open or opened or a.id in verified or a.closed_period == period):
            continue
        last = latest.get(a.id or 0)
        eff, lo, hi = (None, None, None)
        if last is not None:
            eff, lo, hi = ((last.effect, last.effect_ci_low, last.effect_ci_high) if last.effect is not None
                           else (last.change, last.change_ci_low, last.change_ci_high))
        dept = _dept_name(settings, a.department)
        head = a.head or (settings.departments[a.department].head if a.department in settings.departments
                          else "")
        rows.append(ActionRow(
            id=a.id or 0, kpi=a.kpi, scope=f"{scope_label(a.scope, lang)}: "
            f"{_value_label(settings, a.scope, a.scope_value, lang)}",
            department=dept, owner=head or dept, status=a.status, severity=a.severity,
            opened_period=a.opened_period, due=a.due, overdue=overdue,
            baseline=fmt(a.kpi, a.baseline_value),
            effect_text=(f"{eff:+.{kpi_digits(a.kpi, eff)}f}" if eff is not None else "–"),
            effect_ci=(f"{lo:+.{kpi_digits(a.kpi, lo)}f} … {hi:+.{kpi_digits(a.kpi, hi)}f}"
                       if lo is not None and hi is not None else ""),
            verdict=last.verdict if last else "", measured_period=last.period if last else "",
            context=_context(settings, a, period, lang)))
    keys = ("opened", "open", "overdue", "verified", "escalated")
    return {k: int(counts[k]) for k in keys}, rows


def _context(settings: Settings, action: Action, period: str, lang: str) -> list[str]:
    """The broader results this action's scope explains in `period` (tasks.kpis.decisions), in words."""
    entry = next((e for e in action.evidence or [] if e.get("period") == period), None) or {}
    return [f"{scope_label(c['scope'], lang)}: "
            f"{_value_label(settings, c['scope'], c['scope_value'], lang)} {fmt(c['kpi'], c.get('value'))}"
            for c in entry.get("context") or []]


def _is_overdue(action: Action, on: date) -> bool:
    """One definition with `cxloop actions` and the digests (tasks.actions.is_overdue): open, not
    reported done, and due before the end of the cycle."""
    actions = _sibling("actions")
    if actions is not None and hasattr(actions, "is_overdue"):
        return bool(actions.is_overdue(action, on))
    return (action.status in OPEN_STATUSES and action.status != "done" and action.due is not None
            and action.due < on)


def _quality(session: Session, period: str, cycle: Cycle | None, out_dir: Path | None) -> Quality:
    imports = list(session.scalars(select(ImportRecord).where(col(ImportRecord.period) == period)))
    quarantined = len(list(session.scalars(select(col(QuarantinedRow.id)).where(
        col(QuarantinedRow.period) == period, col(QuarantinedRow.readmitted_at).is_(None)))))
    checks = list(session.scalars(select(QualityCheck).where(col(QualityCheck.period) == period)))
    failed: list[dict[str, Any]] = [
        {"expectation": c.expectation, "column": c.column or "", "severity": c.severity, "level": c.level,
         "unexpected": c.unexpected_count}
        for c in sorted(checks, key=lambda c: (c.severity != "critical", -c.unexpected_count))
        if not c.success]
    link = None
    if cycle and cycle.validation_report_path:
        vpath = Path(cycle.validation_report_path)
        link = vpath.name if out_dir is not None and vpath.parent.resolve() == out_dir.resolve() \
            else (vpath.resolve().as_uri() if vpath.is_absolute() else str(vpath))
    return Quality(
        files=len(imports), rows_read=sum(i.rows_read for i in imports),
        loaded=sum(i.loaded for i in imports), duplicates=sum(i.duplicates for i in imports),
        updated=sum(i.updated for i in imports), rejected=sum(i.rejected for i in imports),
        quarantined=quarantined, gate=(cycle.gate or "") if cycle else "",
        cycle_status=cycle.status if cycle else "",
        risk_accepted_by=cycle.risk_accepted_by if cycle else None,
        failed_checks=failed[:8], validation_link=link,
        import_errors=[f"{i.file}: {i.error}" for i in imports if i.error])


# --------------------------------------------------------------------------- entry points


def report_dir(settings: Settings, period: str) -> Path:
    return settings.resolve("reports") / parse_period(period)


def report_filename(department: str | None) -> str:
    return "report.html" if department is None else f"report-{department}.html"


def build_report(settings: Settings, engine: Engine, period: str, department: str | None = None,
                 lang: str | None = None, journey_kpi: str = "nps", out_dir: Path | None = None,
                 feedback: pd.DataFrame | FeedbackSummary | None = None) -> ReportData:
    """Everything the template shows, as plain data (tests and other outputs can use it too)."""
    period = parse_period(period)
    if department is not None and department not in settings.departments:
        known = ", ".join(settings.departments) or "none configured"
        raise ValueError(f"unknown department {department!r}; known: {known}")
    lang = lang or (settings.department_language(department) if department else settings.project.language)
    out_dir = out_dir if out_dir is not None else report_dir(settings, period)
    with Session(engine) as session:
        cycle = session.scalars(select(Cycle).where(col(Cycle.period) == period)).first()
        scope, value = ("department", department) if department else ("overall", "all")
        if department is None:
            overall = {r.scope_value for r in _kpi_rows(session, [period], HEADLINE_KPIS, "overall")}
            value = "all" if "all" in overall or not overall else sorted(overall)[0]
        headlines = _headlines(session, settings, period, scope, value, lang)
        score_kpis, score_rows = _scorecard(session, settings, period, department, lang)
        provisional = bool(cycle and cycle.gate == "held") or bool(session.scalars(
            select(col(KpiResult.id)).where(col(KpiResult.period) == period,
                                            col(KpiResult.provisional).is_(True))).first())
        counts, actions = _actions(session, settings, period, department, lang)
        quality = _quality(session, period, cycle, out_dir)
    if isinstance(feedback, FeedbackSummary) and feedback.kpi == journey_kpi:
        company = feedback
    elif isinstance(feedback, pd.DataFrame):
        company = summarise_frame(feedback, settings, journey_kpi)
    else:
        company = summarise_feedback(engine, settings, period, journey_kpi)
    page = _department_summary(company, settings, department) if department else company
    chart, pains, rows_label, cols_label = _journey(page, company, settings, journey_kpi, lang)
    voices, complaints = _voices(page, settings, lang)
    voices_chart = charts.bar_chart(
        [(v.theme, float(v.count), f"{v.count} · {v.share:.0%}") for v in voices],
        title=translate("Top complaint themes", lang)) if voices else None
    dept_name = _dept_name(settings, department) if department else None
    title = translate("Customer experience report", lang)
    return ReportData(
        period=period, lang=lang, title=title, company=settings.project.name, department=department,
        department_name=dept_name, provisional=provisional, headlines=headlines, score_kpis=score_kpis,
        score_rows=score_rows, journey_kpi=journey_kpi, journey_rows_label=rows_label,
        journey_cols_label=cols_label, journey_chart=chart, pain_points=pains, action_counts=counts,
        actions=actions, voices=voices, voices_chart=voices_chart, complaints=complaints,
        responses=int(page.groups["count"].sum()), quality=quality,
        kpi_labels={k: kpi_label(k, lang) for k in KPIS})


def render_report(settings: Settings, engine: Engine, period: str, department: str | None = None,
                  lang: str | None = None, journey_kpi: str = "nps", out_dir: Path | None = None,
                  feedback: pd.DataFrame | FeedbackSummary | None = None) -> str:
    """The report as one self-contained HTML page (`feedback`: the period's rows or their
    `FeedbackSummary`, if already loaded)."""
    data = build_report(settings, engine, period, department, lang, journey_kpi, out_dir, feedback)
    # Data-derived labels are translated here, not with `_()` in the template: jinja2's new-style
    # gettext %-formats every string, and labels such as "CSAT (% 4–5)" hold a percent sign.
    statuses = {k: kpi_status_label(k, data.lang) for k in KPI_STATUS_LABELS}
    return render("report.html", data.lang, r=data, status_labels=statuses,
                  tr=lambda text: label(str(text), data.lang))


def write_reports(settings: Settings, engine: Engine, period: str, out_dir: Path | None = None,
                  lang: str | None = None, journey_kpi: str = "nps") -> list[Path]:
    """Company report plus one per department, under reports/<period>/ (or out_dir).

    Department pages use the department's own language unless `lang` forces one for all."""
    period = parse_period(period)
    target = Path(out_dir) if out_dir is not None else report_dir(settings, period)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    feedback = summarise_feedback(engine, settings, period, journey_kpi)  # once for all pages
    for dept in [None, *settings.departments]:
        path = target / report_filename(dept)
        html = render_report(settings, engine, period, dept, lang, journey_kpi, out_dir=target,
                             feedback=feedback)
        tmp = path.with_suffix(".html.tmp")
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def write_pdf(html_path: Path, timeout: float = 120) -> Path:
    """Print a report page to PDF with headless Chromium (the page's print CSS applies).

    Chromium is already needed for the browser test and is a Debian package; no PDF library is
    added for this one copy."""
    browser = find_chromium()
    if browser is None:
        raise RuntimeError("--pdf needs Chromium (apt-get install chromium)")
    pdf = html_path.with_suffix(".pdf")
    with tempfile.TemporaryDirectory(prefix="cxloop-chromium-") as profile:
        proc = subprocess.run(
            [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--no-pdf-header-footer",
             f"--print-to-pdf={pdf}", html_path.resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0 or not pdf.exists():
        raise RuntimeError(f"{html_path}: Chromium could not print a PDF: {proc.stderr.strip()[-400:]}")
    return pdf
