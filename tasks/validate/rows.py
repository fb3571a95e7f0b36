"""Row checks: the frame row expectations see, the keys that name each row, and which rows fail."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd

from cxloop.models import (
    CANONICAL_FIELDS,
    SCORE_FIELDS,
)
from cxloop.tasks.codes import factorize
from cxloop.tasks.validate.gx import columns_used, named_columns, run_expectations
from cxloop.tasks.validate.keys import RowKeys
from cxloop.tasks.validate.messages import check_result, describe, json_safe
from cxloop.tasks.validate.results import CheckResult
from cxloop.tasks.validate.suites import ROW_FRAME, Expectation

DATETIME_FIELDS = tuple(k for k, v in CANONICAL_FIELDS.items() if v == "datetime")


# Expectations whose outcome on a column depends only on which values are equal (or missing), and
# table expectations that read only the table's shape: `row_key` may go to them as numbers.
_BY_EQUALITY = frozenset({"expect_column_values_to_be_unique", "expect_column_values_to_not_be_null",
                          "expect_column_values_to_be_null"})
_SHAPE_ONLY = frozenset({"expect_table_row_count_to_be_between", "expect_table_row_count_to_equal",
                         "expect_table_columns_to_match_set", "expect_table_columns_to_match_ordered_list",
                         "expect_table_column_count_to_equal", "expect_table_column_count_to_be_between"})


def keys_by_equality(exps: list[Expectation]) -> bool:
    """Do the row expectations only compare `row_key`s (the shipped uniqueness check)? Then the
    keys go to GX as numbers, and their text is made only for failing rows (`RowKeys`)."""
    for exp in exps:
        named = named_columns(exp)
        if named is None:
            if exp.type not in _SHAPE_ONLY or "row_condition" in exp.kwargs:
                return False
        elif "row_key" in named and (exp.type not in _BY_EQUALITY or "row_condition" in exp.kwargs):
            return False
    return True


def needed_columns(exps: list[Expectation]) -> list[str] | None:
    """Canonical columns the suites read (None = all, for table-level expectations)."""
    probe = pd.DataFrame(columns=[*CANONICAL_FIELDS, "row_key", "source"])
    used: set[str] = {"response_id", "channel", *SCORE_FIELDS}  # row keys and batch frames
    for frame in {e.frame for e in exps}:
        cols = columns_used([e for e in exps if e.frame == frame], probe, "row_key")
        if len(cols) == len(probe.columns) and frame == ROW_FRAME:
            return None
        used.update(cols)
    return [c for c in CANONICAL_FIELDS if c in used]


def row_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Typed frame for the row suite: UTC datetimes, float scores, `row_key` = "source|response_id"."""
    return keyed_row_frame(rows, numbers=False)[0]


def keyed_row_frame(rows: pd.DataFrame, numbers: bool, every_field: bool = True, stored: bool = False
               ) -> tuple[pd.DataFrame, RowKeys]:
    """`row_frame` and its keys; `numbers`: `row_key` holds `RowKeys.numbers` instead of text,
    for row expectations that only compare keys for equality (`keys_by_equality`); `stored`: the
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
    return checks_and_reasons(run_expectations(expectations, df, ROW_FRAME, keys))


def checks_and_reasons(outcomes: list[tuple[Expectation, dict[str, Any]]]) -> tuple[
        list[CheckResult], dict[str, list[dict[str, Any]]]]:
    """The checks and every reason per row_key from the row expectations' outcomes
    (`run_expectations`' result, or one merged from partitions by `tasks.validate.partitions`), in
    the expectations' order: a row's reasons are listed in that order."""
    checks: list[CheckResult] = []
    reasons: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for exp, outcome in outcomes:
        checks.append(check_result(exp, outcome, "row_key"))
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
