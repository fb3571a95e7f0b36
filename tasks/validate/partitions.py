"""Row checks in partitions: the row expectations that test each row on its own run on ranges of
the month's rows (on a Dask cluster's workers, `tasks.dask_work`), and their outcomes merge into
exactly the whole month's.

Why exactly: for these expectations (`ROW_LOCAL`) whether a row fails depends on that row alone,
so the failing rows of the month are the partitions' failing rows, in the partitions' order (GX
lists them in row order), and the counts GX reports are sums. GX decides `success` and
`unexpected_percent` from those counts alone (`ColumnMapExpectation._validate`,
`ColumnPairMapExpectation._validate`, `MulticolumnMapExpectation._validate` and
`_format_map_output` in great_expectations.expectations.expectation); `merge_outcomes` repeats
those few lines on the summed counts, so the merged outcome is the one GX gives for the whole
month, float for float.

Every other row expectation is dataset-level and is never split: the uniqueness of keys across
the month (`expect_column_values_to_be_unique`, compound uniqueness: a duplicate key's twins may
sit in different partitions), table-level ones (row count, columns), column aggregates (mean,
distinct values) and the order-dependent ones (values increasing). The stage runs them on the
whole month's frame of the columns they read, which it holds anyway for the batch frames
(`tasks.validate.stage`), exactly as without a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from cxloop.models import CANONICAL_FIELDS
from cxloop.tasks.validate.gx import run_expectations
from cxloop.tasks.validate.rows import keyed_row_frame, keys_by_equality, needed_columns
from cxloop.tasks.validate.suites import ROW_FRAME, Expectation

# GX's row-by-row map expectations: the outcome of a row depends on that row's values only (with a
# `row_condition`, too: the condition reads the same row). Named one by one rather than found by
# GX's class: `expect_column_values_to_be_unique`, `..._to_be_increasing` and
# `expect_column_value_z_scores_to_be_less_than` are map expectations too, but read other rows.
ROW_LOCAL = frozenset({
    "expect_column_values_to_not_be_null", "expect_column_values_to_be_null",
    "expect_column_values_to_be_between", "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set", "expect_column_values_to_match_regex",
    "expect_column_values_to_not_match_regex", "expect_column_values_to_match_regex_list",
    "expect_column_values_to_not_match_regex_list", "expect_column_values_to_match_strftime_format",
    "expect_column_values_to_be_dateutil_parseable", "expect_column_values_to_be_json_parseable",
    "expect_column_values_to_match_json_schema", "expect_column_value_lengths_to_be_between",
    "expect_column_value_lengths_to_equal",
    "expect_column_pair_values_a_to_be_greater_than_b", "expect_column_pair_values_to_be_equal",
    "expect_column_pair_values_to_be_in_set", "expect_multicolumn_sum_to_equal",
    "expect_select_column_values_to_be_unique_within_record",
})

# What a partition's outcome keeps of GX's result: all that `merge_outcomes` and the checks read.
_KEPT = ("element_count", "unexpected_count", "missing_count", "unexpected_index_list")


def partitionable(exp: Expectation) -> bool:
    """Can the expectation run on partitions of the month's rows (see the module docstring)?"""
    return exp.level == "row" and exp.frame == ROW_FRAME and exp.type in ROW_LOCAL


def columns_read(exps: Sequence[Expectation]) -> list[str]:
    """The copy's columns a partition reads for `exps`: those they name, and the row keys'."""
    needed = needed_columns(list(exps))
    return ["source", *(CANONICAL_FIELDS if needed is None else needed)]


def partition_outcomes(rows: pd.DataFrame, start: int, exps: Sequence[Expectation]
                       ) -> list[dict[str, Any]]:
    """The outcome of each of `exps` (partitionable ones) on one partition: `rows`, the month's
    rows `start` onwards in the month's order (by id), with `columns_read(exps)`. The failing rows
    are named by their `row_key` text, as the whole month's run names them (a row without a
    response id by its position in the month, hence `start`)."""
    needed = needed_columns(list(exps))
    frame = rows.set_axis(pd.RangeIndex(start, start + len(rows)))
    df, keys = keyed_row_frame(frame, numbers=keys_by_equality(list(exps)), every_field=needed is None,
                          stored=True)
    out = []
    for _exp, outcome in run_expectations(list(exps), df, ROW_FRAME, keys):
        result = outcome["result"]
        out.append({"success": outcome["success"], "error": outcome["error"],
                    "result": {k: result[k] for k in _KEPT if k in result}})
    return out


def merge_outcomes(exps: Sequence[Expectation], parts: Sequence[Sequence[dict[str, Any]]]
                   ) -> list[tuple[Expectation, dict[str, Any]]]:
    """Each expectation's outcome on the whole month from its outcomes on the partitions (`parts`,
    in the month's order, each from `partition_outcomes`): what `run_expectations` gives for the
    whole month. An expectation GX raised on in any partition fails with every distinct message."""
    out = []
    for i, exp in enumerate(exps):
        got = [part[i] for part in parts]
        errors = sorted({e for o in got if o["error"] for e in str(o["error"]).split("; ")})
        results = [o["result"] for o in got]
        element = sum(int(r.get("element_count") or 0) for r in results)
        counted = [int(r["unexpected_count"]) for r in results if r.get("unexpected_count") is not None]
        unexpected = sum(counted) if counted else None
        missing = (sum(int(r["missing_count"]) for r in results)
                   if results and all(r.get("missing_count") is not None for r in results) else None)
        considered = element - (missing or 0)  # GX's nonnull (or filtered) row count
        result: dict[str, Any] = {"element_count": element, "unexpected_count": unexpected,
                                  "unexpected_percent": _percent(element, considered, unexpected, missing)}
        if missing is not None:
            result["missing_count"] = missing
        result["unexpected_index_list"] = [item for r in results
                                           for item in r.get("unexpected_index_list") or []]
        if errors:
            success = False
        elif unexpected is None or element == 0 or considered == 0:
            success = True  # vacuously, as GX says
        else:  # GX's _mostly_success
            mostly = float(exp.kwargs.get("mostly", 1.0))
            success = (float(considered) - float(unexpected)) / float(considered) >= mostly
        out.append((exp, {"success": success, "result": result,
                          "error": "; ".join(errors) if errors else None}))
    return out


def _percent(element: int, considered: int, unexpected: int | None, missing: int | None) -> float | None:
    """GX's `unexpected_percent` (`_format_map_output`): of the rows considered, in percent."""
    if unexpected is None or element <= 0:
        return None
    if missing is None:
        return unexpected / element * 100
    return unexpected / considered * 100 if considered > 0 else None


def in_order(exps: Sequence[Expectation], *outcomes: Sequence[tuple[Expectation, dict[str, Any]]]
             ) -> list[tuple[Expectation, dict[str, Any]]]:
    """The outcomes of the whole-month and the partitioned expectations in the suites' order
    (`exps`): the order of a row's reasons and of the checks."""
    pending = [pair for group in outcomes for pair in group]
    ordered = []
    for exp in exps:
        at = next(i for i, (e, _o) in enumerate(pending) if e is exp)
        ordered.append(pending.pop(at))
    return ordered
