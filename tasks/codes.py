"""The distinct values of a text column of the month frame and each row's code, worked out once.

Validate, KPIs and the report each group a million rows by the same few text columns (channel,
journey stage, touchpoint, department, themes); a factorisation costs about 40 ms per column and
million rows. The stages get their rows from the month frame kept for the cycle (`tasks.month`),
whose column selections share the columns' arrays, so a factorisation is remembered per array for
as long as that array lives. A patched column is a new array, and a frame built otherwise (a
subset, a CLI call, a test) simply misses: the result is always the one `pd.factorize` gives.
The arrays are never written in place (patches replace columns), which this relies on.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

Factorized = tuple[NDArray[np.signedinteger[Any]], NDArray[np.object_]]

_remembered: dict[int, tuple[weakref.ref[np.ndarray[Any, Any]], Factorized]] = {}


def factorize(values: pd.Series) -> Factorized:
    """`pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)`: codes in order of
    first appearance (-1: missing) and the distinct values, both read-only. Codes use the
    smallest integer type that holds them (a month of 10M rows keeps 10 MB per column)."""
    array = np.asarray(values.array)  # a text column's own array (not a copy)
    if array.dtype != object:  # not a text column: nothing to share
        return _factorize(values)
    key = id(array)
    hit = _remembered.get(key)
    if hit is not None and hit[0]() is array:
        return hit[1]
    result = _factorize(values)
    _keep(array, result)
    return result


def remember(values: pd.Series, codes: np.ndarray, uniques: np.ndarray) -> None:
    """Take `(codes, uniques)` - exactly what `factorize(values)` would give - as the factorisation
    of `values`' text array, for a reader that has it already (`tasks.columnar` reads repeated
    texts as codes)."""
    array = np.asarray(values.array)
    if len(codes) != len(array):
        raise ValueError(f"{len(codes)} codes for {len(array)} values")
    if array.dtype == object:
        _keep(array, _small(codes, uniques))


def _keep(array: np.ndarray[Any, Any], result: Factorized) -> None:
    key = id(array)

    def forget(ref: weakref.ref[np.ndarray[Any, Any]], key: int = key) -> None:
        if key in _remembered and _remembered[key][0] is ref:
            del _remembered[key]

    _remembered[key] = (weakref.ref(array, forget), result)


def _factorize(values: pd.Series) -> Factorized:
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    return _small(codes, uniques)


def _small(codes: np.ndarray, uniques: Any) -> Factorized:
    # room for one code more than there are values (callers give missing values that one)
    small = codes.astype(np.min_scalar_type(-(len(uniques) + 1)), copy=False)
    uniques = np.asarray(uniques, dtype=object)
    small.flags.writeable = False
    uniques.flags.writeable = False
    return small, uniques
