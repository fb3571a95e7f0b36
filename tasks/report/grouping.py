"""Counting rows per combination of values fast: each column coded once, codes combined into one
group code per row, groups counted and their first rows found.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from cxloop.tasks.codes import factorize

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
