"""The data-quality gate: Great Expectations suites over a period's feedback, before any KPI is published.

Two levels of suites, both plain GX 1.x JSON files in `expectations/` (and in the folder
`expectations/` next to the config file, if it exists; a file there with the same name replaces the
shipped one):

- row suites (`meta.level = "row"`) run on one row per Feedback response. A row failing a
  `critical` expectation is quarantined (kept in `quarantined_row` with every reason, flagged in
  `feedback.quarantined`, never counted in a KPI); a `warning` expectation is only reported.
- batch suites (`meta.level = "batch"`) run on small metrics tables ("frames") built here: `batch`
  (one row), `sources` (one row per source), `channels` (channels present in every recent period)
  and `score_columns` (one row per score column). A failed `critical` batch check holds the cycle.

Values that depend on the config or the period are written as placeholders (`"${vocabulary.channel}"`,
`"${period.start}"`, ...) and filled in at run time; an empty vocabulary list drops the expectation.
Every run validates ALL rows of the period again (clean and quarantined), so fixed rows come back.
"""

from __future__ import annotations

import copy
import gc
import json
import logging
import math
import os
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, bindparam, delete, func, insert, select, update

from cxloop.config import Settings
from cxloop.db import session_scope
from cxloop.models import (
    CANONICAL_FIELDS,
    SCORE_FIELDS,
    Feedback,
    ImportRecord,
    QualityCheck,
    QuarantinedRow,
    utcnow,
)
from cxloop.paths import EXPECTATIONS, shipped
from cxloop.periods import period_bounds, shift_period
from cxloop.tasks import month
from cxloop.tasks.codes import factorize

STAGE = "validate"
LEVELS = ("row", "batch")
SEVERITIES = ("critical", "warning")
ROW_FRAME = "rows"
BATCH_FRAMES = ("batch", "sources", "channels", "score_columns")
KEY_COLUMNS = {"rows": "row_key", "batch": "subject", "sources": "subject", "channels": "subject",
               "score_columns": "subject"}
SAMPLE_SIZE = 20
DATETIME_FIELDS = tuple(k for k, v in CANONICAL_FIELDS.items() if v == "datetime")
_PLACEHOLDER = re.compile(r"^\$\{([A-Za-z0-9_.]+)\}$")
_CHUNK = 900
# Core column handles: typed SQL expressions (SQLModel attributes read as plain values to mypy).
FB = Feedback.__table__.c  # type: ignore[attr-defined]
QR = QuarantinedRow.__table__.c  # type: ignore[attr-defined]
QC = QualityCheck.__table__.c  # type: ignore[attr-defined]
IR = ImportRecord.__table__.c  # type: ignore[attr-defined]
FT = Feedback.__table__  # type: ignore[attr-defined]
QT = QuarantinedRow.__table__  # type: ignore[attr-defined]
_BULK = 5_000  # rows per executemany of quarantine inserts/updates


class SuiteError(ValueError):
    """A suite file that cannot be used; the message names the file and the expectation."""


# --------------------------------------------------------------------------------------------------
# Results


@dataclass
class CheckResult:
    """One expectation's outcome, as stored in `quality_check` and shown in the report."""

    suite: str
    expectation: str
    type: str
    column: str | None
    level: str
    frame: str
    severity: str
    success: bool
    element_count: int = 0
    unexpected_count: int = 0
    observed: dict[str, Any] = field(default_factory=dict)
    sample: list[Any] = field(default_factory=list)
    message: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def gating(self) -> bool:
        """Does this failure hold the cycle? Critical batch checks, and broken (erroring) suites."""
        return (not self.success and self.severity == "critical"
                and (self.level == "batch" or "error" in self.observed))


@dataclass
class GateResult:
    period: str
    status: str  # passed | held
    checks: list[CheckResult]
    failed_critical: list[str]
    rows: int
    quarantined: int  # rows quarantined by this stage
    collect_quarantined: int
    quarantine_share: float
    report_path: Path | None
    readmitted: int = 0
    read: int = 0
    duplicates: int = 0

    @property
    def warnings(self) -> list[str]:
        return [c.expectation for c in self.checks if not c.success and c.severity == "warning"]

    def counts(self) -> dict[str, int | float | str]:
        """Figures for the cycle's stage record; read = loaded + quarantined + duplicates."""
        return {
            "status": self.status,
            "rows": self.rows,
            "read": self.read,
            "loaded": self.rows - self.quarantined,
            "quarantined": self.quarantined + self.collect_quarantined,
            "quarantined_validate": self.quarantined,
            "quarantined_collect": self.collect_quarantined,
            "duplicates": self.duplicates,
            "quarantine_share": round(self.quarantine_share, 6),
            "readmitted": self.readmitted,
            "checks": len(self.checks),
            "failed": sum(not c.success for c in self.checks),
            "failed_critical": len(self.failed_critical),
            "warnings": len(self.warnings),
        }


# --------------------------------------------------------------------------------------------------
# Suites


@dataclass
class Expectation:
    """One expectation of a suite file, with placeholders filled and severity resolved."""

    suite: str
    path: Path
    level: str
    frame: str
    name: str
    type: str
    kwargs: dict[str, Any]
    meta: dict[str, Any]
    severity: str
    description: str | None = None

    @property
    def column(self) -> str | None:
        col = self.kwargs.get("column", self.kwargs.get("column_A"))
        return str(col) if col is not None else None


@dataclass
class Suite:
    name: str
    path: Path
    level: str
    data: dict[str, Any]


def suite_dirs(settings: Settings) -> list[Path]:
    """Where suites come from: the shipped folder, then the config's `expectations/` if it exists."""
    dirs = [shipped("expectations")]
    user = settings.resolve("expectations")
    if user.is_dir() and user.resolve() != EXPECTATIONS.resolve():
        dirs.append(user)
    return dirs


def load_suites(settings: Settings) -> list[Suite]:
    """Every `*.json` suite; a user file named like a shipped one replaces it."""
    by_file: dict[str, Path] = {}
    for folder in suite_dirs(settings):
        for path in sorted(folder.glob("*.json")):
            by_file[path.name] = path
    suites = []
    for path in by_file.values():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SuiteError(f"{path}: not a readable JSON suite: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("expectations"), list):
            raise SuiteError(f"{path}: a suite needs a top-level object with an `expectations` list")
        level = (data.get("meta") or {}).get("level", "row")
        if level not in LEVELS:
            raise SuiteError(f"{path}: meta.level must be one of {LEVELS}, not {level!r}")
        suites.append(Suite(str(data.get("name") or path.stem), path, level, data))
    return suites


def placeholder_values(settings: Settings, period: str, now: datetime) -> dict[str, Any]:
    """What `${name}` placeholders in suite files stand for in this run."""
    start, end = period_bounds(period, settings.tz)
    q = settings.quality
    return {
        "vocabulary.channel": list(settings.vocabulary.channel),
        "vocabulary.journey_stage": list(settings.vocabulary.journey_stage),
        "vocabulary.touchpoint": list(settings.vocabulary.touchpoint),
        "period.start": start.isoformat(),
        "period.end": end.isoformat(),
        "now": now.isoformat(),
        "quality.max_quarantine_share": q.max_quarantine_share,
        "quality.volume_band.min": q.volume_band[0],
        "quality.volume_band.max": q.volume_band[1],
        "quality.null_rate_jump": q.null_rate_jump,
        "sources": [s.name for s in settings.sources],
    }


class _Skip(Exception):
    """An expectation whose placeholder resolved to an empty list: nothing to check."""


def _fill(value: Any, params: dict[str, Any], where: str) -> Any:
    if isinstance(value, str):
        m = _PLACEHOLDER.match(value)
        if not m:
            return value
        if m.group(1) not in params:
            raise SuiteError(f"{where}: unknown placeholder {value}; known: "
                             + ", ".join("${" + k + "}" for k in params))
        filled = params[m.group(1)]
        if isinstance(filled, list) and not filled:
            raise _Skip
        return filled
    if isinstance(value, dict):
        return {k: _fill(v, params, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, params, where) for v in value]
    return value


def expectations_of(suite: Suite, settings: Settings, params: dict[str, Any]) -> list[Expectation]:
    """The suite's expectations ready to run: placeholders filled, severity and frame resolved."""
    out = []
    default_frame = (suite.data.get("meta") or {}).get("frame") or (
        ROW_FRAME if suite.level == "row" else "sources")
    for i, raw in enumerate(suite.data["expectations"]):
        where = f"{suite.path}: expectation #{i + 1}"
        if not isinstance(raw, dict) or "type" not in raw:
            raise SuiteError(f"{where}: needs a `type` (e.g. expect_column_values_to_not_be_null)")
        meta = dict(raw.get("meta") or {})
        kwargs = dict(raw.get("kwargs") or {})
        name = str(meta.get("id") or f"{raw['type']}({kwargs.get('column', kwargs.get('column_A', ''))})")
        where = f"{suite.path}: expectation {name!r}"
        try:
            kwargs = _fill(kwargs, params, where)
        except _Skip:
            continue
        frame = str(meta.get("frame") or default_frame)
        allowed = (ROW_FRAME,) if suite.level == "row" else BATCH_FRAMES
        if frame not in allowed:
            raise SuiteError(f"{where}: meta.frame {frame!r} not available for a {suite.level} suite; "
                             f"use one of {allowed}")
        overrides = settings.quality.severity
        severity = str(overrides.get(name) or overrides.get(raw["type"]) or meta.get("severity")
                       or raw.get("severity") or "critical")
        if severity == "info":
            severity = "warning"
        if severity not in SEVERITIES:
            raise SuiteError(f"{where}: severity must be one of {SEVERITIES}, not {severity!r}")
        out.append(Expectation(suite.name, suite.path, suite.level, frame, name, str(raw["type"]),
                               kwargs, meta, severity, raw.get("description")))
    return out


# --------------------------------------------------------------------------------------------------
# Great Expectations


def _gx() -> Any:
    """Import GX lazily (about 5 s): analytics off before the import, as GX reads it at import."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.execution_engine import pandas_execution_engine as pee

    # GX fingerprints every in-memory batch below this size by hashing all of its values (about 1 s
    # per million rows); the fingerprint is batch metadata only, unused here, so skip it.
    if hasattr(pee, "HASH_THRESHOLD"):
        pee.HASH_THRESHOLD = 0
    return gx


def _context() -> Any:
    """A fresh ephemeral context (about 10 ms): nothing leaks between runs or threads."""
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX logs "Created temporary directory ... for ephemeral docs site" at INFO for every context,
    # from a module logger it sets to INFO itself (so the package logger's level is not enough).
    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    # An ephemeral context still writes its whole configuration out as YAML after every change
    # (a data source, an asset, a batch definition: about 15 ms each, three per validated frame),
    # into a store nothing reads.
    ctx._save_project_config = lambda: None
    return ctx


def build_gx(expectations: list[Expectation]) -> list[Any]:
    """GX expectation objects; a bad one raises SuiteError naming its file (GX itself only logs)."""
    _gx()
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    out = []
    for i, exp in enumerate(expectations):
        try:
            out.append(ExpectationConfiguration(
                type=exp.type, kwargs=exp.kwargs, meta={**exp.meta, "cx_index": i},
                description=exp.description).to_domain_obj())
        except Exception as exc:  # GX raises several unrelated types (not found, pydantic, value)
            detail = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise SuiteError(f"{exp.path}: expectation {exp.name!r} ({exp.type}) is not valid: "
                             f"{detail}") from None
    return out


def _named_columns(exp: Expectation) -> set[str] | None:
    """The columns an expectation reads (None: it may read any, e.g. table-level expectations)."""
    if exp.type.startswith("expect_table"):  # table-level: row count, column set, ...
        return None
    words: set[str] = set()
    for name, value in exp.kwargs.items():
        if name.startswith("column") and isinstance(value, str):
            words.add(value)
        elif name == "column_list" and isinstance(value, list):
            words.update(map(str, value))
        elif name == "row_condition":
            if not isinstance(value, str):  # a GX condition object: do not guess its columns
                return None
            words.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", value))
    return words


def _columns_used(expectations: list[Expectation], df: pd.DataFrame, key: str) -> list[str]:
    """Only the columns the expectations name, and the key column (in the frame's order)."""
    words: set[str] = {key}
    for exp in expectations:
        named = _named_columns(exp)
        if named is None:
            return list(df.columns)
        words.update(named)
    return [c for c in df.columns if c in words]


def _batches(expectations: list[Expectation], df: pd.DataFrame) -> list[tuple[list[str], list[int]]]:
    """Which expectations GX validates together, on which columns of the frame.

    GX copies the whole batch frame, filtered, for most metrics of an expectation on a column with
    empty values, a `row_condition` or a pair of columns: about six times per expectation. So each
    set of columns gets a batch of its own, shared by the expectations reading exactly those
    columns (GX computes a metric they share once). One validation costs about 15 ms.
    """
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, exp in enumerate(expectations):
        named = _named_columns(exp)
        cols = tuple(df.columns) if named is None else tuple(c for c in df.columns if c in named)
        groups.setdefault(cols, []).append(i)
    return [(list(cols), members) for cols, members in groups.items()]


# Expectations that test each value on its own, for which GX gives the same result on a
# categorical column as on its text; the set tests are what vocabularies (few values) are checked by.
_SET_TESTS = frozenset({"expect_column_values_to_be_in_set", "expect_column_values_to_not_be_in_set"})
_BY_VALUE = _SET_TESTS | {"expect_column_values_to_not_be_null", "expect_column_values_to_be_null"}


def _batch_frame(df: pd.DataFrame, cols: list[str], expectations: list[Expectation]) -> pd.DataFrame:
    """The columns GX validates together. A column selection shares the frame's arrays
    (copy-on-write): nothing is copied. A text column checked against a set of values, and
    otherwise only value by value, goes as a categorical, from the codes the later stages share
    (`tasks.codes`): GX's null and set tests then compare small integers instead of a million
    strings (0.6 s of 0.8 s for channel, journey stage and touchpoint at 1M rows)."""
    batch = df[cols]
    if (any(e.type in _SET_TESTS for e in expectations)
            and all(e.type in _BY_VALUE and "row_condition" not in e.kwargs for e in expectations)):
        for col in cols:
            if batch[col].dtype == "str":
                codes, uniques = factorize(batch[col])
                batch = batch.assign(**{col: pd.Categorical.from_codes(codes, categories=uniques)})
    return batch


def _failing(df: pd.DataFrame, key: str, exp: Expectation, index_list: Any,
             keys: RowKeys | None = None) -> list[dict[str, Any]]:
    """Failing rows as [{key, column, column_B}], from GX's list of failing row positions (`keys`:
    the text of a `row_key` column that holds numbers)."""
    positions = [int(i) for i in index_list or [] if not isinstance(i, dict)]
    if not positions:
        return []
    cols = [key] + [c for c in (exp.column, exp.kwargs.get("column_B")) if c and c in df.columns and c != key]
    rows = df[cols].iloc[positions]
    if keys is not None:
        rows = rows.assign(**{key: keys.text(positions)})
    return list(rows.to_dict("records"))


# BASIC counts the failing rows; COMPLETE also lists them, which costs GX further passes over the
# batch. Every expectation runs with BASIC first, and only those that found failing rows (or raised,
# or are no row-by-row check and so have no count) run again with COMPLETE: a passing check with no
# failing row has no rows to list, and its counts are the same in both formats.
_BASIC = {"result_format": "BASIC", "partial_unexpected_count": 0}
_COMPLETE = {"result_format": "COMPLETE", "return_unexpected_index_query": False,
             "partial_unexpected_count": 0}


def _errors(r: Any) -> str | None:
    """What GX raised while validating one expectation, if anything."""
    info = r.exception_info or {}
    errors = [v.get("exception_message") for v in info.values() if isinstance(v, dict)
              and v.get("raised_exception")] if "raised_exception" not in info else (
        [info.get("exception_message")] if info.get("raised_exception") else [])
    return "; ".join(sorted({str(e) for e in errors})) if errors else None


def _clean_pass(r: Any) -> bool:
    """A BASIC result that COMPLETE could not add to: passed, no failing row, no error."""
    return bool(r.success) and _errors(r) is None and (r.result or {}).get("unexpected_count") == 0


def _forget(batch: Any) -> None:
    """Drop what GX's execution engine keeps of a validated batch until the context goes: its data
    and every metric computed on it (row masks: ~40 MB per batch of a 10M-row month)."""
    engine = batch.data.execution_engine
    engine._metric_cache.clear()
    engine.batch_manager._batch_data_cache.pop(batch.id, None)


def run_expectations(expectations: list[Expectation], df: pd.DataFrame, frame: str,
                     keys: RowKeys | None = None) -> list[tuple[Expectation, dict[str, Any]]]:
    """Validate one frame with GX; return each expectation with its result dict.

    The result dict has `success`, `result` (GX's COMPLETE result, or BASIC for a check that passed
    with no failing row, with `unexpected_index_list` naming rows by the frame's key column, as
    text from `keys` if given) and `error` (a message when GX raised).
    """
    if not expectations:
        return []
    gx = _gx()
    ctx = _context()
    df = df.reset_index(drop=True)
    gx_exps = build_gx(expectations)
    batch_def = (ctx.data_sources.add_pandas("cxloop").add_dataframe_asset(frame)
                 .add_batch_definition_whole_dataframe("whole"))

    def validate(batch: Any, members: list[int], result_format: dict[str, Any]) -> list[Any]:
        # copies: an expectation object belongs to one suite, and a rerun makes a second suite
        suite = ctx.suites.add(gx.ExpectationSuite(name=f"{frame}-{uuid.uuid4().hex[:8]}",
                                                   expectations=[copy.copy(gx_exps[i]) for i in members]))
        # Batch.validate, not ValidationDefinition.run: the latter also serialises every result into
        # the context's results store.
        return list(batch.validate(suite, result_format=result_format).results)

    key = KEY_COLUMNS[frame]
    out: list[tuple[Expectation, dict[str, Any]]] = []
    for cols, members in _batches(expectations, df):
        batch = batch_def.get_batch(batch_parameters={
            "dataframe": _batch_frame(df, cols, [expectations[i] for i in members])})
        results = validate(batch, members, _BASIC)
        again = [int(r.expectation_config.meta["cx_index"]) for r in results if not _clean_pass(r)]
        if again:
            # No `unexpected_index_column_names`: GX then returns the failing rows' index labels
            # (positions here) straight from pandas, and `_failing` turns them into keys and values in
            # one vectorised step. Asking GX for the key column makes it look each failing row up one
            # by one (about 0.2 ms a row: 4 s for 20,000 failing rows of a 1M-row month).
            results = [r for r in results if _clean_pass(r)] + validate(batch, again, _COMPLETE)
        for r in results:
            exp = expectations[int(r.expectation_config.meta["cx_index"])]
            result = dict(r.result or {})
            result["unexpected_index_list"] = _failing(df, key, exp, result.get("unexpected_index_list"),
                                                       keys)
            out.append((exp, {"success": bool(r.success), "result": result, "error": _errors(r)}))
        _forget(batch)
    out.sort(key=lambda pair: expectations.index(pair[0]))
    gx.data_context.set_context(None)  # GX keeps the last context, holding this frame's batches
    return out


# --------------------------------------------------------------------------------------------------
# Values and messages


_AS_IS = (str, int, bool, type(None))


def json_safe(value: Any) -> Any:
    """A value as JSON can hold it: timestamps as ISO text, numpy scalars as Python, NaN as None."""
    if type(value) in _AS_IS:  # most values, and the quickest answer (quarantine holds 400k at 1M)
        return value
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return int(value) if value.is_integer() else value
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, bool | int | str):
        return value
    return str(value)


def _fmt(value: Any) -> str:
    return "(missing)" if value is None else repr(value) if isinstance(value, str) else str(value)


def describe(exp: Expectation, value: Any, other: Any = None) -> str:
    """A sentence a data owner understands, for one failing value."""
    if exp.description:
        try:
            return exp.description.format(column=exp.column, value=_fmt(value), **{
                k: v for k, v in exp.kwargs.items() if k != "column"})
        except (KeyError, IndexError, ValueError):
            return exp.description
    k, col, v = exp.kwargs, exp.column, _fmt(value)
    match exp.type:
        case "expect_column_values_to_not_be_null":
            return f"{col} is missing"
        case "expect_column_values_to_be_between":
            lo, hi = k.get("min_value"), k.get("max_value")
            if lo is not None and hi is not None:
                end = " (end excluded)" if k.get("strict_max") else ""
                return f"{col} = {v} is outside {lo} .. {hi}{end}"
            if hi is not None:
                return f"{col} = {v} is above {hi}"
            return f"{col} = {v} is below {lo}"
        case "expect_column_values_to_be_in_set":
            if col in SCORE_FIELDS:
                return f"{col} = {v} is not a whole number of the scale"
            shown = k.get("value_set", [])
            listed = ", ".join(map(str, shown[:12])) + (", ..." if len(shown) > 12 else "")
            return f"{col} = {v} is not one of the allowed values ({listed})"
        case "expect_column_values_to_be_unique":
            return f"{col} = {v} occurs more than once"
        case "expect_column_pair_values_a_to_be_greater_than_b":
            rel = "before" if k.get("or_equal") else "not after"
            return f"{col} = {v} is {rel} {k.get('column_B')} = {_fmt(other)}"
        case _:
            return f"{col} = {v} fails {exp.type}"


def _check(exp: Expectation, outcome: dict[str, Any], key_col: str) -> CheckResult:
    res = outcome["result"]
    observed: dict[str, Any] = {}
    if outcome["error"]:
        observed["error"] = outcome["error"]
    for key in ("observed_value", "unexpected_percent", "missing_count"):
        if res.get(key) is not None:
            observed[key] = json_safe(res[key])
    sample = []
    other_col = exp.kwargs.get("column_B")
    for item in (res.get("unexpected_index_list") or [])[:SAMPLE_SIZE]:
        if isinstance(item, dict):
            entry = {"key": json_safe(item.get(key_col)), "value": json_safe(item.get(exp.column))}
            if other_col:
                entry["other"] = json_safe(item.get(other_col))
            sample.append(entry)
    message = (f"error: {outcome['error']}" if outcome["error"] else
               "" if outcome["success"] else
               describe(exp, sample[0]["value"], sample[0].get("other")) if sample else f"{exp.type} failed")
    return CheckResult(
        suite=exp.suite, expectation=exp.name, type=exp.type, column=exp.column, level=exp.level,
        frame=exp.frame, severity=exp.severity, success=outcome["success"] and not outcome["error"],
        element_count=int(res.get("element_count") or 0),
        unexpected_count=int(res.get("unexpected_count") or 0),
        observed=observed, sample=sample, message=message, kwargs=json_safe(exp.kwargs))


# --------------------------------------------------------------------------------------------------
# Row checks


def row_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Typed frame for the row suite: UTC datetimes, float scores, `row_key` = "source|response_id"."""
    return _row_frame(rows, numbers=False)[0]


@dataclass(frozen=True)
class RowKeys:
    """The `row_key` ("source|response_id", "source|#<index>" without a response id, missing
    without a source) of each row of a row frame, as text only for the rows asked for: a month's
    keys as text cost ~1 GiB per 10M rows, and only failing rows' keys are needed."""

    prefixes: np.ndarray  # "source|" of each source code (the last one: none)
    sources: np.ndarray  # each row's source code, -1 without a source
    ids: np.ndarray  # each row's text after "source|"

    def text(self, positions: Any) -> np.ndarray:
        """The keys of the rows at `positions` (NaN without a source)."""
        pos = np.asarray(positions, dtype=np.intp)
        src = self.sources[pos]
        out = self.prefixes[src] + self.ids[pos]
        out[src < 0] = np.nan
        return out

    def among(self, keys: set[str]) -> np.ndarray:
        """Which rows have one of `keys`: the rows whose text after some "|" of a key is theirs
        (few), then their whole keys compared."""
        out = np.zeros(len(self.ids), dtype=bool)
        if not keys:  # no pass over the rows' ids
            return out
        tails = {k[i + 1:] for k in keys for i, ch in enumerate(k) if ch == "|"}
        candidates = np.flatnonzero(pd.Series(self.ids, dtype=object, copy=False).isin(tails).to_numpy())
        out[candidates[[k in keys for k in self.text(candidates).tolist()]]] = True
        return out

    def numbers(self, distinct: bool = False) -> np.ndarray:
        """A number per distinct key (NaN without a source): equal keys, equal numbers. A row
        whose key occurs once gets its position; rows whose keys occur again (few) a number after
        the last position, one per key. Without a "|" in a source name, a key occurs again only
        where its text after "source|" does: no text is made for the others, and a boolean per
        row costs less than a code per row (a month of 10M distinct keys). `distinct`: the keys
        are known to differ (stored rows: the database keeps (source, response_id) unique), so
        the pass that finds repeated ones (~0.3 s per million) is skipped."""
        n = len(self.ids)
        if distinct:
            out = np.arange(n, dtype="float64")
            out[self.sources < 0] = np.nan
            return out
        if any("|" in p[:-1] for p in self.prefixes[:-1].tolist()):  # (source, id) pairs are ambiguous
            again = pd.Series(self.text(np.arange(n)), dtype=object, copy=False).duplicated(keep=False)
        else:
            again = pd.Series(self.ids, dtype=object, copy=False).duplicated(keep=False)
        twins = np.flatnonzero(again.to_numpy())
        del again
        out = np.arange(n, dtype="float64")
        out[twins] = n + pd.factorize(self.text(twins))[0]
        out[self.sources < 0] = np.nan
        return out


def _row_frame(rows: pd.DataFrame, numbers: bool, every_field: bool = True, stored: bool = False
               ) -> tuple[pd.DataFrame, RowKeys]:
    """`row_frame` and its keys; `numbers`: `row_key` holds `RowKeys.numbers` instead of text,
    for row expectations that only compare keys for equality (`_keys_by_equality`); `stored`: the
    rows are the database's (their keys differ: `RowKeys.numbers(distinct=True)`); not
    `every_field`: a canonical field missing from `rows` stays missing (none of the expectations
    reads it: an empty column costs 80 MB per 10M rows)."""
    df = rows.copy(deep=False)  # copy-on-write: the columns set below never change `rows`
    for col in CANONICAL_FIELDS:
        if col not in df.columns and (every_field or col in ("response_id", *SCORE_FIELDS)):
            df[col] = None
    # Columns the month frame already types are left as they are: a converted copy of each costs
    # 80 MB per 10M rows.
    for col in (c for c in DATETIME_FIELDS if c in df.columns):
        if not isinstance(df[col].dtype, pd.DatetimeTZDtype) or str(df[col].dt.tz) != "UTC":
            df[col] = pd.to_datetime(df[col], utc=True, errors="coerce", format="ISO8601")
    for col in SCORE_FIELDS:
        if df[col].dtype != "float64":
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    if "source" not in df.columns:
        df["source"] = ""
    rid = df["response_id"]
    missing = rid.isna().to_numpy()
    ids = rid.astype(str).to_numpy(dtype=object, copy=bool(missing.any()))  # the text after "source|"
    if missing.any():
        ids[missing] = "#" + df.index[missing].astype(str).to_numpy(dtype=object)
    # Each row's "source|" from the few distinct sources: pandas' `+` on text makes a pass per
    # operand (0.5 s vs 0.1 s at 1M).
    src_codes, sources = factorize(df["source"].astype(str))
    prefixes = np.array([f"{s}|" for s in sources.tolist()] + ["nan|"], dtype=object)
    keys = RowKeys(prefixes, src_codes, ids)
    if numbers:
        df["row_key"] = keys.numbers(distinct=stored)
    else:
        df["row_key"] = pd.Series(keys.text(np.arange(len(df))), index=df.index, dtype="str")
    return df.reset_index(drop=True), keys


def check_rows(expectations: list[Expectation], df: pd.DataFrame, keys: RowKeys | None = None) -> tuple[
        list[CheckResult], dict[str, list[dict[str, Any]]]]:
    """Run the row expectations on a `row_frame` (`keys`: the text of its `row_key` if that holds
    numbers); return the checks and every reason per row_key.

    Only `critical` row expectations produce reasons (= quarantine); `warning` ones are reported.
    """
    checks: list[CheckResult] = []
    reasons: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for exp, outcome in run_expectations(expectations, df, ROW_FRAME, keys):
        checks.append(_check(exp, outcome, "row_key"))
        if outcome["success"] or outcome["error"] or exp.severity != "critical":
            continue
        column, other_col = exp.column, exp.kwargs.get("column_B")
        for item in outcome["result"].get("unexpected_index_list") or []:
            if not isinstance(item, dict):
                continue
            value = json_safe(item.get(column))
            other = json_safe(item.get(other_col)) if other_col else None
            reason = {"expectation": exp.name, "column": column, "value": value,
                      "message": describe(exp, value, other)}
            if other_col:
                reason["other"] = {other_col: other}
            key = str(item.get("row_key"))
            if reason not in reasons[key]:
                reasons[key].append(reason)
    return checks, dict(reasons)


# --------------------------------------------------------------------------------------------------
# Batch checks


def batch_frames(settings: Settings, engine: Engine, period: str, df: pd.DataFrame,
                 quarantined: int, collect_quarantined: int,
                 collect_by_source: dict[str, int]) -> dict[str, pd.DataFrame]:
    """The metrics tables the batch suites run on (see the module docstring)."""
    q = settings.quality
    history = [shift_period(period, -k) for k in range(1, q.volume_history + 1)]
    with engine.connect() as conn:
        vol_rows = conn.execute(
            select(FB.period, FB.source, func.count())
            .where(FB.period.in_(history)).group_by(FB.period, FB.source)).all()
        null_rows = conn.execute(
            select(FB.period, func.count(), *[func.count(getattr(FB, c)) for c in SCORE_FIELDS])
            .where(FB.period.in_(history)).group_by(FB.period)).all()
        chan_rows = conn.execute(
            select(FB.period, FB.channel).where(FB.period.in_(history))
            .group_by(FB.period, FB.channel)).all()

    total = len(df) + collect_quarantined
    share = (quarantined + collect_quarantined) / total if total else 0.0
    batch = pd.DataFrame([{"subject": "all", "rows": len(df),
                           "quarantined": quarantined + collect_quarantined, "quarantine_share": share}])

    now_by_source = _value_counts(df["source"])
    hist_by_source: dict[str, list[int]] = defaultdict(list)
    for _p, src, n in vol_rows:
        hist_by_source[src].append(int(n))
    configured = [s.name for s in settings.sources]
    names = configured + sorted(set(now_by_source) - set(configured))
    src_records = []
    for name in names:
        n = int(now_by_source.get(name, 0)) + int(collect_by_source.get(name, 0))
        hist = hist_by_source.get(name, [])
        med = float(median(hist)) if hist else None
        src_records.append({
            "subject": name, "rows": n, "history_periods": len(hist), "history_median": med,
            # no ratio without history, or when nothing came (source_delivered reports that)
            "volume_ratio": (n / med) if med and n else float("nan"),
            "delivered": bool(n > 0) or name not in configured,
        })
    sources = pd.DataFrame(src_records, columns=["subject", "rows", "history_periods", "history_median",
                                                 "volume_ratio", "delivered"])
    sources["volume_ratio"] = sources["volume_ratio"].astype("float64")

    hist_periods = sorted({p for p, _s, _n in vol_rows})
    per_period: dict[str, set[str]] = defaultdict(set)
    for p, ch, in chan_rows:
        if ch is not None:
            per_period[p].add(ch)
    steady: set[str] = (set.intersection(*(per_period[p] for p in hist_periods))
                        if len(hist_periods) >= 2 else set())
    now_channels = _value_counts(df["channel"])
    channels = pd.DataFrame(
        [{"subject": ch, "rows": int(now_channels.get(ch, 0)), "history_periods": len(hist_periods),
          "present": bool(now_channels.get(ch, 0))} for ch in sorted(steady)],
        columns=["subject", "rows", "history_periods", "present"])

    hist_n = sum(int(r[1]) for r in null_rows)
    score_records = []
    for i, col in enumerate(SCORE_FIELDS):
        rate = float(df[col].isna().mean()) if len(df) else float("nan")
        hist_rate = (1 - sum(int(r[2 + i]) for r in null_rows) / hist_n) if hist_n else float("nan")
        score_records.append({"subject": col, "null_rate": rate, "history_null_rate": hist_rate,
                              "null_rate_jump": rate - hist_rate})
    score_columns = pd.DataFrame(score_records)
    return {"batch": batch, "sources": sources, "channels": channels, "score_columns": score_columns}


def _value_counts(values: pd.Series) -> dict[Any, int]:
    """Rows per present value (missing ones not counted), from the codes the stages share."""
    codes, uniques = factorize(values)
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    return dict(zip(uniques.tolist(), counts.tolist(), strict=True))


def check_batch(expectations: list[Expectation], frames: dict[str, pd.DataFrame]) -> list[CheckResult]:
    checks = []
    for frame in BATCH_FRAMES:
        exps = [e for e in expectations if e.frame == frame]
        for exp, outcome in run_expectations(exps, frames[frame], frame):
            check = _check(exp, outcome, "subject")
            check.observed.setdefault("table", json_safe(frames[frame].to_dict("records")))
            if not check.success and check.sample:
                check.message = "; ".join(f"{s['key']}: {describe(exp, s['value'])}" for s in check.sample)
            checks.append(check)
    return checks


# --------------------------------------------------------------------------------------------------
# The stage


def load_period_rows(month_rows: month.Month, columns: list[str] | None = None) -> pd.DataFrame:
    """Feedback rows of the period, clean and quarantined: id, source, quarantined and `columns`
    (default: every canonical field), typed as `tasks.month` types them (text columns of pandas'
    `str` type, datetimes in UTC, scores float).

    The rows come from the `Month` handed over: inside a cycle run the month is read once and
    shared by the stages; on its own, this reads the period from the database.
    """
    wanted = [c for c in CANONICAL_FIELDS if columns is None or c in columns]
    return month_rows.rows(["id", "source", "quarantined", *wanted])


def _raw_values(engine: Engine, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Every canonical value of the given rows, JSON-safe: what quarantine keeps of a row."""
    out: dict[int, dict[str, Any]] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            for row in conn.execute(select(FB.id, *[FB[c] for c in CANONICAL_FIELDS])
                                    .where(FB.id.in_(chunk))).mappings():
                out[int(row["id"])] = {c: json_safe(row[c]) for c in CANONICAL_FIELDS}
    return out


# Expectations whose outcome on a column depends only on which values are equal (or missing), and
# table expectations that read only the table's shape: `row_key` may go to them as numbers.
_BY_EQUALITY = frozenset({"expect_column_values_to_be_unique", "expect_column_values_to_not_be_null",
                          "expect_column_values_to_be_null"})
_SHAPE_ONLY = frozenset({"expect_table_row_count_to_be_between", "expect_table_row_count_to_equal",
                         "expect_table_columns_to_match_set", "expect_table_columns_to_match_ordered_list",
                         "expect_table_column_count_to_equal", "expect_table_column_count_to_be_between"})


def _keys_by_equality(exps: list[Expectation]) -> bool:
    """Do the row expectations only compare `row_key`s (the shipped uniqueness check)? Then the
    keys go to GX as numbers, and their text is made only for failing rows (`RowKeys`)."""
    for exp in exps:
        named = _named_columns(exp)
        if named is None:
            if exp.type not in _SHAPE_ONLY or "row_condition" in exp.kwargs:
                return False
        elif "row_key" in named and (exp.type not in _BY_EQUALITY or "row_condition" in exp.kwargs):
            return False
    return True


def _needed_columns(exps: list[Expectation]) -> list[str] | None:
    """Canonical columns the suites read (None = all, for table-level expectations)."""
    probe = pd.DataFrame(columns=[*CANONICAL_FIELDS, "row_key", "source"])
    used: set[str] = {"response_id", "channel", *SCORE_FIELDS}  # row keys and batch frames
    for frame in {e.frame for e in exps}:
        cols = _columns_used([e for e in exps if e.frame == frame], probe, "row_key")
        if len(cols) == len(probe.columns) and frame == ROW_FRAME:
            return None
        used.update(cols)
    return [c for c in CANONICAL_FIELDS if c in used]


def validate_period(settings: Settings, engine: Engine, period: str, now: datetime | None = None,
                    lang: str | None = None, *, month_rows: month.Month | None = None) -> GateResult:
    """Validate all rows of a period, update quarantine and checks, write the report, decide the gate.
    `month_rows`: the month the cycle shares among its stages (None: read from the database)."""
    month_rows = month_rows or month.Month(engine, period)
    now = now or utcnow()
    params = placeholder_values(settings, period, now)
    exps = [e for s in load_suites(settings) for e in expectations_of(s, settings, params)]
    build_gx(exps)  # a broken suite file fails here, before anything is written
    row_exps = [e for e in exps if e.level == "row"]
    batch_exps = [e for e in exps if e.level == "batch"]

    needed = _needed_columns(row_exps)
    raw_df = load_period_rows(month_rows, needed)
    df, row_keys = _row_frame(raw_df, numbers=_keys_by_equality(row_exps), every_field=needed is None,
                              stored=True)
    del raw_df
    row_checks, reasons = check_rows(row_exps, df, row_keys)
    if len(df) > month.KEEP_ROWS:  # GX's batch objects hold the columns in reference cycles: free
        gc.collect()  # a large month's now, not at Python's next full collection (~1 s at 10M rows)
    bad_keys = set(reasons)
    is_bad = pd.Series(row_keys.among(bad_keys), index=df.index)

    bad_rows = df.loc[is_bad, ["id", "source", "response_id"]]
    bad_rows = bad_rows.assign(row_key=row_keys.text(np.flatnonzero(is_bad.to_numpy())))
    bad = bad_rows.to_dict("records")
    raws = _raw_values(engine, [int(r["id"]) for r in bad])
    readmitted = 0
    # Core statements, not ORM objects: building a SQLModel instance per quarantined row costs
    # about 0.4 ms (8 s for the 20,000 bad rows of a 1M-row month).
    with engine.begin() as conn:
        was_q = df["quarantined"].fillna(False).astype(bool)
        to_set = [int(i) for i in df.loc[is_bad & ~was_q, "id"]]
        to_clear = [int(i) for i in df.loc[~is_bad & was_q, "id"]]
        for ids, flag in ((to_set, True), (to_clear, False)):
            for start in range(0, len(ids), _CHUNK):
                conn.execute(update(FT).where(FB.id.in_(ids[start:start + _CHUNK]))
                             .values(quarantined=flag))
        existing = {(r.source, r.row_key): r for r in conn.execute(
            select(QR.id, QR.source, QR.row_key, QR.stage, QR.raw, QR.reasons, QR.readmitted_at)
            .where(QR.period == period))}
        # "source|response_id" of the period's rows that have a quarantine entry (a set of all 1M
        # keys costs more than looking the entries' keys up)
        entry_keys = {f"{s}|{k}" for s, k in existing}
        present = set(row_keys.text(np.flatnonzero(row_keys.among(entry_keys))).tolist())
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        created = utcnow()
        for rec in bad:
            key = (str(rec["source"]), str(rec["response_id"]))
            row_reasons = reasons[rec["row_key"]]
            raw = raws[int(rec["id"])]
            q = existing.get(key)
            if q is None:
                inserts.append({"period": period, "source": key[0], "row_key": key[1], "response_id": key[1],
                                "file": None, "line": None, "stage": STAGE, "raw": raw,
                                "reasons": row_reasons, "created_at": created, "readmitted_at": None})
            elif (q.stage != STAGE or q.readmitted_at is not None or q.reasons != row_reasons
                  or q.raw != raw):
                updates.append({"b_id": q.id, "stage": STAGE, "raw": raw, "reasons": row_reasons,
                                "readmitted_at": None, "response_id": key[1]})
        for start in range(0, len(inserts), _BULK):
            conn.execute(insert(QT), inserts[start:start + _BULK])
        if updates:
            stmt = update(QT).where(QR.id == bindparam("b_id")).values(
                {k: bindparam(k) for k in updates[0] if k != "b_id"})
            for start in range(0, len(updates), _BULK):
                conn.execute(stmt, updates[start:start + _BULK])
        bad_pairs = {(str(r["source"]), str(r["response_id"])) for r in bad}
        readmit_ids = [q.id for key, q in existing.items()
                       if q.stage == STAGE and q.readmitted_at is None and key not in bad_pairs
                       and f"{key[0]}|{key[1]}" in present]
        for start in range(0, len(readmit_ids), _CHUNK):
            conn.execute(update(QT).where(QR.id.in_(readmit_ids[start:start + _CHUNK]))
                         .values(readmitted_at=now))
        readmitted = len(readmit_ids)
        collect_rows = [q for q in existing.values() if q.stage == "collect" and q.readmitted_at is None
                        and f"{q.source}|{q.row_key}" not in present]
        imports = conn.execute(
            select(func.coalesce(func.sum(IR.rows_read), 0),
                   func.coalesce(func.sum(IR.duplicates), 0), func.count())
            .where(IR.period == period)).one()
    # The flags are committed: the month frame kept for the cycle's later stages follows them.
    month_rows.patch(to_set, {"quarantined": True})
    month_rows.patch(to_clear, {"quarantined": False})

    collect_by_source: dict[str, int] = defaultdict(int)
    for q in collect_rows:
        collect_by_source[q.source] += 1
    quarantined = int(is_bad.sum())
    frames = batch_frames(settings, engine, period, df, quarantined, len(collect_rows), collect_by_source)
    batch_checks = check_batch(batch_exps, frames)
    checks = row_checks + batch_checks
    failed_critical = [c.expectation for c in checks if c.gating]
    total = len(df) + len(collect_rows)
    duplicates = int(imports[1])
    result = GateResult(
        period=period, status="held" if failed_critical else "passed", checks=checks,
        failed_critical=failed_critical, rows=len(df), quarantined=quarantined,
        collect_quarantined=len(collect_rows),
        quarantine_share=(quarantined + len(collect_rows)) / total if total else 0.0,
        report_path=None, readmitted=readmitted, duplicates=duplicates,
        read=int(imports[0]) if imports[2] else total + duplicates)

    with session_scope(engine) as session:
        session.execute(delete(QualityCheck).where(QC.period == period))
        session.add_all([QualityCheck(
            period=period, suite=c.suite, expectation=c.expectation, column=c.column, level=c.level,
            severity=c.severity, success=c.success, unexpected_count=c.unexpected_count,
            observed={**c.observed, "type": c.type, "frame": c.frame, "element_count": c.element_count,
                      "message": c.message, "gating": c.gating},
            sample=c.sample) for c in checks])

    result.report_path = write_report(settings, result, bad_rows, reasons,
                                      lang or settings.project.language, now)
    return result


def readmit(settings: Settings, engine: Engine, period: str, now: datetime | None = None) -> dict[str, Any]:
    """Re-run the checks after the source was fixed; report how many quarantined rows came back."""
    with engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(QuarantinedRow).where(
            QR.period == period, QR.stage == STAGE,
            QR.readmitted_at.is_(None))).scalar_one()
    gate = validate_period(settings, engine, period, now=now)
    return {"period": period, "quarantined_before": int(before), "readmitted": gate.readmitted,
            "still_quarantined": gate.quarantined, "newly_quarantined": max(
                0, gate.quarantined - (int(before) - gate.readmitted)),
            "collect_quarantined": gate.collect_quarantined, "status": gate.status,
            "report": str(gate.report_path) if gate.report_path else None}


# --------------------------------------------------------------------------------------------------
# Report


def write_report(settings: Settings, gate: GateResult, bad: pd.DataFrame,
                 reasons: dict[str, list[dict[str, Any]]], lang: str, now: datetime) -> Path:
    """`reports/<period>/validation.html`: each expectation, its result, counts and failing samples."""
    from cxloop.tasks.rendering import render

    samples = []
    for rec in bad.head(50).to_dict("records"):
        samples.append({"source": rec["source"], "response_id": rec["response_id"],
                        "reasons": reasons.get(rec["row_key"], [])})
    suites: dict[tuple[str, str], list[CheckResult]] = defaultdict(list)
    for c in gate.checks:
        suites[(c.suite, c.level)].append(c)
    html = render("validation.html", lang, gate=gate, counts=gate.counts(), now=now,
                  suites=[{"name": n, "level": lv, "checks": cs} for (n, lv), cs in suites.items()],
                  samples=samples, project=settings.project.name)
    out = settings.resolve("reports") / gate.period / "validation.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
