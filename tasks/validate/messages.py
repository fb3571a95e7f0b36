"""Values and messages: JSON-safe observed values and the one-line description of each check."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

import pandas as pd

from cxloop.models import (
    SCORE_FIELDS,
)
from cxloop.tasks.validate.results import CheckResult
from cxloop.tasks.validate.suites import Expectation

SAMPLE_SIZE = 20


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


def check_result(exp: Expectation, outcome: dict[str, Any], key_col: str) -> CheckResult:
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
