"""The partitioned work of a big month on a Dask cluster (`[engine] dask_address`).

Each partition is a range of rows of the period's columnar copy (`tasks.columnar`), which every
worker reads from shared storage itself: only the partition's small result (a KPI histogram)
crosses the network, and histograms merge exactly, so the result equals the local run's.
dask.distributed is imported only here, and only when a cluster is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cxloop.config import Settings
from cxloop.tasks.columnar import Copies
from cxloop.tasks.kpis.histograms import histograms, merge_histograms
from cxloop.tasks.kpis.store import response_frame


def _partition_histogram(root: str, period: str, read: list[str], cols: list[str], start: int, stop: int,
                         sqlite: bool, settings: Settings) -> pd.DataFrame:
    """On a worker: the KPI histogram of rows `start` to `stop` of the copy."""
    rows = Copies(Path(root)).part(period, read, True, start, stop)
    return histograms(response_frame(rows, cols, sqlite), settings)


def kpi_histograms(client: object, copies: Copies, period: str, read: Sequence[str], cols: Sequence[str],
                   sqlite: bool, settings: Settings, rows: int) -> pd.DataFrame:
    """The period's KPI histogram, one Dask task per `rows` rows of its (fresh) copy, merged here."""
    total = copies.count(period)
    futures = [client.submit(_partition_histogram, str(copies.root), period, list(read),  # type: ignore[attr-defined]
                             list(cols), start, start + rows, sqlite, settings, pure=False)
               for start in range(0, max(total, 1), rows)]
    return merge_histograms(client.gather(futures))  # type: ignore[attr-defined]


def connect(address: str) -> object:
    """A client of the Dask scheduler at `address` (`[engine] dask_address`, `--dask`)."""
    from distributed import Client

    return Client(address)
