"""The partitioned work of a big month on a Dask cluster (`[engine] dask_address`).

KPI histograms: each partition is a range of rows of the period's columnar copy
(`tasks.columnar`), which every worker reads from shared storage itself: only the partition's
small result (a KPI histogram) crosses the network, and histograms merge exactly, so the result
equals the local run's.
Row checks of validate: the row expectations that test each row on its own run on the same
partitions of the copy (`tasks.validate.partitions`); each task returns its failing rows with
reasons and its counts, which merge exactly into the whole month's.
Comment analysis: the distinct comments go in parts to the workers (the model is sent once to
each), which score and tag them as this process would; the results come back in order.
dask.distributed is imported only here, and only when a cluster is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxloop.config import Settings, TopicConfig
from cxloop.tasks.columnar import Copies
from cxloop.tasks.kpis.histograms import histograms, merge_histograms
from cxloop.tasks.kpis.store import response_frame
from cxloop.tasks.validate.suites import Expectation


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


def _partition_row_checks(root: str, period: str, read: list[str], start: int, stop: int,
                          exps: list[Expectation]) -> list[dict[str, Any]]:
    """On a worker: the outcomes of `exps` on rows `start` to `stop` of the copy (all of them,
    quarantined ones too: validate checks every row of the month again)."""
    from cxloop.tasks.validate.partitions import partition_outcomes

    return partition_outcomes(Copies(Path(root)).part(period, read, False, start, stop), start, exps)


def submit_row_checks(client: object, copies: Copies, period: str, exps: Sequence[Expectation],
                      rows: int) -> list[Any]:
    """One Dask task per `rows` rows of the period's (fresh) copy, checking `exps` (partitionable
    row expectations): the futures, in the month's order, to gather with `gather`. Submitted before
    the caller's own work (the whole-month checks), which runs meanwhile."""
    from cxloop.tasks.validate.partitions import columns_read

    total = copies.count(period)
    read = columns_read(exps)
    return [client.submit(_partition_row_checks, str(copies.root), period, read,  # type: ignore[attr-defined]
                          start, start + rows, list(exps), pure=False)
            for start in range(0, max(total, 1), rows)]


def gather(client: object, futures: list[Any]) -> list[Any]:
    """The results of `futures`, in their order (raises what a task raised)."""
    return list(client.gather(futures))  # type: ignore[attr-defined]


def _analyse_part(model: Any, topics: list[TopicConfig], words: dict[str, tuple[int, int]],
                  pairs: list[tuple[str, str | None]]) -> tuple[list[str], np.ndarray, list[list[str]]]:
    """On a worker: `tasks.comments.analyse_part` of (text, declared language) pairs."""
    from cxloop.tasks.comments import _tagger_of, analyse_part
    from cxloop.tasks.segmentation import teach

    teach(words)  # the client's dictionary words (`tasks.segmentation.taught`)
    return analyse_part(pairs, model, _tagger_of(topics))  # the tagger: once per worker and taxonomy


def analyse_comments(address: str, parts: Sequence[list[tuple[str, str | None]]], model: Any,
                     topics: list[TopicConfig], words: dict[str, tuple[int, int]]
                     ) -> list[tuple[list[str], np.ndarray, list[list[str]]]]:
    """Each part's languages, scores and themes, analysed on the cluster at `address`, in the
    parts' order."""
    client: Any = connect(address)
    try:
        [shared] = client.scatter([model], broadcast=True)
        futures = [client.submit(_analyse_part, shared, list(topics), words, part, pure=False)
                   for part in parts]
        return list(client.gather(futures))
    finally:
        client.close()


def connect(address: str) -> object:
    """A client of the Dask scheduler at `address` (`[engine] dask_address`, `--dask`)."""
    from distributed import Client

    return Client(address)
