"""Running expectations through Great Expectations: one in-memory batch per set of columns, BASIC
first and COMPLETE only where rows fail, and the failing rows read from its results.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import uuid
from typing import Any

import pandas as pd

from cxloop.tasks.codes import factorize
from cxloop.tasks.validate.keys import RowKeys
from cxloop.tasks.validate.suites import KEY_COLUMNS, Expectation, SuiteError


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
    from great_expectations.data_context.types.base import ProgressBarsConfig  # GX on use, after _gx()

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
    from great_expectations.expectations.expectation_configuration import (  # GX on use, after _gx()
        ExpectationConfiguration,
    )

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


def named_columns(exp: Expectation) -> set[str] | None:
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


def columns_used(expectations: list[Expectation], df: pd.DataFrame, key: str) -> list[str]:
    """Only the columns the expectations name, and the key column (in the frame's order)."""
    words: set[str] = {key}
    for exp in expectations:
        named = named_columns(exp)
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
        named = named_columns(exp)
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
