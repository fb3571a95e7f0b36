"""The `row_key` of each row of a row frame, made text only for the rows asked for (failing ones)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


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
