"""Histograms (the sufficient statistics of every KPI) per scope value, and their exact merge."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from cxloop.config import Settings
from cxloop.tasks.kpis.prepare import (
    _CX_CELL_MATRIX,
    _CX_QUESTIONS,
    _PACKS,
    Coded,
    _emitted,
    _family_codes,
    _scope_codes,
    scope_names,
)
from cxloop.tasks.kpis.specs import _HIST_COLUMNS, _kcfg
from cxloop.vocabulary import (
    OVERALL,
)


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
