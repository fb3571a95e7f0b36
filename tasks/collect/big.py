"""A big CSV export collected in chunks: the main process's side, which stores each chunk a worker
(`tasks.collect.chunked`) prepared, inside the import's one transaction.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, Table, insert, select, update

from cxloop.config import Settings, SourceConfig
from cxloop.models import (
    ImportRecord,
    QuarantinedRow,
    utcnow,
)
from cxloop.tasks import month
from cxloop.tasks.cases.contacts import store_contacts
from cxloop.tasks.collect import chunked, reuse
from cxloop.tasks.collect.bulk import _bulk_insert, _existing, _page_cache, _source_rows
from cxloop.tasks.collect.chunked import GiveWay, Piece
from cxloop.tasks.collect.ratings import store_file_ratings
from cxloop.tasks.collect.store import _FB, _quarantine, _record_failure, _update_changed
from cxloop.tasks.collect.summary import COUNT_NAMES, ImportSummary
from cxloop.tasks.collect.values import _ANALYSIS, _db_value, _row_columns
from cxloop.tasks.columnar import Spill
from cxloop.tasks.comments import InsertAnalysis
from cxloop.tasks.mapping import Rejection, merge_warnings
from cxloop.tasks.readers import SourceError


class _SeenIds:
    """The 64-bit hashes of the response ids inserted so far, in a few sorted arrays merged like a
    binary counter (8 bytes per id), cheap to add to and to search; in front of them a filter of
    one flag per hash bucket (4-8 buckets per id, a byte each: ten million ids, 80 MB + 64 MB).

    Both keep a big month cheap (10M ids on their own: 6.4 s before, 1.6-1.9 s after; in a 10M
    collect's profile they had cost 10 s): a merge sorts two sorted runs with numpy's stable sort,
    which is timsort for these integers and merges them in one pass; and at most a quarter of the
    buckets are set, so most ids of a new month are known to be new without a binary search.
    """

    def __init__(self) -> None:
        self._levels: list[np.ndarray] = []
        self._count = 0
        self._flags = np.zeros(1 << 16, dtype=bool)  # bucket (hash's low bits) -> a hash was added

    def add(self, hashes: np.ndarray) -> None:
        if not len(hashes):
            return
        self._count += len(hashes)
        if self._count * 4 > len(self._flags):  # grown past a quarter full: a larger filter
            size = len(self._flags)
            while self._count * 4 > size:
                size <<= 1
            self._flags = np.zeros(size, dtype=bool)
            for level in self._levels:
                self._flags[level & (size - 1)] = True
        self._flags[hashes & (len(self._flags) - 1)] = True
        level = np.sort(hashes)
        while self._levels and len(self._levels[-1]) <= len(level):
            level = np.sort(np.concatenate([self._levels.pop(), level]), kind="stable")
        self._levels.append(level)

    def may_hold(self, hashes: np.ndarray) -> np.ndarray:
        """Per hash: True if seen (or a 2**-64 coincidence: the caller confirms a hit)."""
        found = np.zeros(len(hashes), dtype=bool)
        maybe = np.flatnonzero(self._flags[hashes & (len(self._flags) - 1)])
        if not len(maybe):
            return found
        order = np.argsort(hashes[maybe])
        at = maybe[order]
        needles = hashes[at]  # sorted: the searches walk each level once
        for level in self._levels:
            pos = np.minimum(np.searchsorted(level, needles), len(level) - 1)
            found[at[level[pos] == needles]] = True
        return found


class _ChunkedImport:
    """What `_store` does for a whole file, done chunk by chunk in one transaction (a file read
    by `tasks.collect.chunked`). Counts, quarantine and stored rows come out as for the whole file:

    - a response id repeated in a later chunk: the later copy wins, the earlier counts as
      repeated. A row this import inserted is rewritten in place (so the rows' order differs from
      a whole-file load, and `inserted` is left None: the month is read back); a stored row is
      judged by its final copy. One case cannot be undone in place - an earlier copy changed a
      stored row and a later one restores it - and gives way (`chunked.GiveWay`): the file is
      then read whole;
    - the quarantine is written at the end, from every chunk's rejections."""

    def __init__(self, conn: Connection, source: str, period: str, import_id: int, now: datetime,
                 analysis: InsertAnalysis | None = None, spill: Path | None = None) -> None:
        self.conn, self.source, self.period, self.import_id, self.now = conn, source, period, import_id, now
        self.analysis = analysis  # repeated comments get their analysis as they are inserted
        dialect = conn.dialect.name
        self.constants = {k: _db_value(v, dialect) for k, v in {
            "source": source, "period": period, "import_id": import_id, "quarantined": False,
            "loaded_at": now}.items()}
        # The source's stored rows: id -> (row id, content hash), and once the file has a copy of
        # it, whether that changed the row and the copy's hash: (row id, hash, changed, copy hash).
        self.stored: dict[str, tuple[Any, ...]] = {r: (i, h) for r, i, h in _source_rows(conn, _FB, source)}
        self.seen = _SeenIds()
        self.frames: list[pd.DataFrame] = []
        self.rewritten = False
        self.hand_over = True  # keep the inserted rows for `month.seed`
        self.spill_dir = spill  # where rows past `month.KEEP_ROWS` are handed over (None: not at all)
        self.spill: Spill | None = None
        self.rejected: list[Rejection] = []
        self.fixed: set[str] = set()
        self.periods: dict[str, int] = {}
        self.warnings: dict[str, Any] = {}
        self.conflicting: set[str] = set()  # ids repeated across chunks with other content
        self.counts = dict.fromkeys(("rows_read", "loaded", "updated", "same", "repeated",
                                     "out_of_period", "undated"), 0)

    def add(self, piece: Piece) -> None:
        """Store one chunk."""
        c = self.counts
        c["rows_read"] += piece.rows_read
        c["out_of_period"] += piece.out_of_period
        c["repeated"] += piece.repeated
        c["undated"] += piece.undated
        for name, k in piece.periods.items():
            self.periods[name] = self.periods.get(name, 0) + k
        merge_warnings(self.warnings, piece.warnings)
        self.rejected.extend(piece.rejected)
        self.fixed |= piece.fixed
        records = store_contacts(self.conn, self.source, piece.records)  # contact details: own table
        if not len(records):
            return
        keys = records["response_id"].tolist()
        hashes = _id_hashes(keys)
        earlier = self._inserted_before(keys, hashes)
        new: list[int] = list(range(len(keys)))  # the usual case, a new month: every row is new
        changed: list[tuple[int, int]] = []
        rewrite: list[tuple[int, int]] = []
        if self.stored or earlier:
            new, changed, rewrite = self._sort(keys, records["content_hash"].tolist(), earlier)
        self._insert(records, piece.times, new, piece.analysis, piece.analyse_here)
        self.seen.add(hashes[new])
        _update_changed(self.conn, records, changed, {
            "period": self.period, "import_id": self.import_id, "updated_at": self.now,
            "sentiment": None, "sentiment_score": None, "themes": None})
        _update_changed(self.conn, records, rewrite, dict.fromkeys(_ANALYSIS))  # the comment may differ
        store_file_ratings(self.conn, self.source, self.period, keys, piece.ratings)  # a later copy's win

    def _sort(self, keys: list[str], hashes: list[str], earlier: dict[str, tuple[int, str]]
              ) -> tuple[list[int], list[tuple[int, int]], list[tuple[int, int]]]:
        """-> positions of new rows, (position, id) of stored rows to update, and of rows an
        earlier chunk inserted to rewrite."""
        new: list[int] = []
        changed: list[tuple[int, int]] = []
        rewrite: list[tuple[int, int]] = []
        stored = self.stored
        same = 0
        for pos, (rid, h) in enumerate(zip(keys, hashes, strict=True)):
            hit = stored.get(rid)
            if hit is not None:
                if len(hit) == 2 and hit[1] == h:  # a first copy, unchanged: a re-collect's usual row
                    same += 1
                    stored[rid] = (hit[0], h, False, h)
                elif self._changes(rid, h, hit):
                    changed.append((pos, hit[0]))
            elif rid in earlier:
                self.counts["repeated"] += 1
                if earlier[rid][1] != h:
                    rewrite.append((pos, earlier[rid][0]))
                    self._conflict(rid)
                self.rewritten = True
            else:
                new.append(pos)
        self.counts["same"] += same
        return new, changed, rewrite

    def _conflict(self, rid: str) -> None:
        """An id an earlier chunk held with other content (`mapping.conflicting_ids` across chunks)."""
        if rid not in self.conflicting:
            self.conflicting.add(rid)
            merge_warnings(self.warnings, {"conflicting_ids": {"count": 1, "first": [rid]}})

    def _changes(self, rid: str, new_hash: str, hit: tuple[Any, ...]) -> bool:
        """Count one copy of a stored row; whether the row must be written."""
        c = self.counts
        before = hit[2] if len(hit) > 2 else None  # whether an earlier copy changed it
        if before is not None:
            c["repeated"] += 1
            if hit[3] != new_hash:  # the file's previous copy of it said something else
                self._conflict(rid)
        if new_hash == hit[1]:
            if before:

                raise GiveWay
            if before is None:
                c["same"] += 1
            self.stored[rid] = (hit[0], hit[1], False, new_hash)
            return False
        if before is None:
            c["updated"] += 1
        elif not before:
            c["same"] -= 1
            c["updated"] += 1
        self.stored[rid] = (hit[0], hit[1], True, new_hash)
        return True

    def _inserted_before(self, keys: list[str], hashes: np.ndarray) -> dict[str, tuple[int, str]]:
        """(id, content_hash) of the rows among `keys` that an earlier chunk inserted."""
        maybe = np.flatnonzero(self.seen.may_hold(hashes))
        if not len(maybe):
            return {}
        candidates = [keys[i] for i in maybe.tolist() if keys[i] not in self.stored]
        return _existing(self.conn, _FB, self.source, candidates)

    def _insert(self, records: pd.DataFrame, times: dict[str, np.ndarray], new: list[int],
                analysed: dict[str, np.ndarray] | None, every: bool = False) -> None:
        """Insert rows `new` of `records`; `analysed`: the reading process's analysis of the
        records' comments (`chunked.Piece.analysis`), else the repeated ones are analysed here,
        or (`every`: `chunked.Piece.analyse_here`) all of them."""
        if not new:
            return
        if len(new) < len(records):
            records = records.iloc[new]
            times = {name: text[new] for name, text in times.items()}
            analysed = {name: values[new] for name, values in analysed.items()} if analysed else None
        if analysed is not None and self.analysis is not None:
            self.analysis.written = True
        elif self.analysis is not None and every:
            analysed = self.analysis.every_comment(records, f"{self.source}: comments of {len(records)} rows")
        elif self.analysis is not None:
            analysed = self.analysis.columns(records)
        if analysed:  # as object columns: pandas would make text ones `str`, with NaN for None
            records = records.assign(**{k: pd.Series(v, index=records.index, dtype=v.dtype)
                                        for k, v in analysed.items()})
        names, columns, _ = _row_columns(records, {}, self.conn.dialect.name, times)
        _bulk_insert(self.conn, _FB.name, names, columns, self.constants)
        self.counts["loaded"] += len(new)
        if self.counts["loaded"] > month.KEEP_ROWS and self.hand_over:  # a month too big to keep
            self._spill()
        if self.hand_over:
            frame = records.drop(columns="content_hash").assign(source=self.source)
            if self.spill is not None:
                self.spill.append(frame)
            else:
                self.frames.append(frame)

    def _spill(self) -> None:
        """Hand the inserted rows over on disk from now on (for the month's columnar copy), or not
        at all without a place for them."""
        if self.spill is None and self.spill_dir is not None:
            self.spill = Spill(self.spill_dir)
            for frame in self.frames:
                self.spill.append(frame)
        elif self.spill is None:
            self.hand_over = False
        self.frames = []

    def finish(self, imp: ImportSummary, file: str, fingerprint: str) -> None:
        """Quarantine, counts and the import record."""
        qt: Table = QuarantinedRow.__table__  # type: ignore[attr-defined]
        it: Table = ImportRecord.__table__  # type: ignore[attr-defined]
        if self.spill is not None:
            self.spill.flush()  # inside the transaction: a spill that failed fails the import
        if self.analysis:
            self.analysis.finish(self.conn, self.period)
        _quarantine(self.conn, qt, self.source, self.period, self.rejected, lambda: self.fixed, file,
                    self.now)
        c = self.counts
        imp.rows_read, imp.loaded, imp.updated = c["rows_read"], c["loaded"], c["updated"]
        imp.duplicates, imp.rejected = c["same"] + c["repeated"], len(self.rejected)
        imp.out_of_period = c["out_of_period"]
        if self.spill is not None and self.hand_over and not self.rewritten:
            imp.inserted = self.spill
        elif self.frames and self.hand_over and not self.rewritten:
            imp.inserted = pd.concat(self.frames, ignore_index=True)
        periods = {"config": fingerprint, "rows": dict(sorted(self.periods.items())),
                   "undated": c["undated"], "reused": None}
        imp.warnings = self.warnings
        self.conn.execute(update(it).where(it.c.id == self.import_id).values(
            rows_read=imp.rows_read, loaded=imp.loaded, updated=imp.updated, duplicates=imp.duplicates,
            rejected=imp.rejected, out_of_period=imp.out_of_period, periods=periods,
            warnings=self.warnings or None))


def _id_hashes(keys: list[str]) -> np.ndarray:
    """Python's own hash of each id: 64 bits, ten times faster than pandas' (this process only)."""
    return np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys))


def _open_quarantine(engine: Engine, source: str, period: str) -> frozenset[str]:
    """Row keys of the source's collect-stage quarantine entries that a parse could readmit."""
    qt: Table = QuarantinedRow.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return frozenset(conn.execute(select(qt.c.row_key).where(
            qt.c.period == period, qt.c.source == source, qt.c.stage == "collect",
            qt.c.readmitted_at.is_(None))).scalars())


def _is_big(source: SourceConfig, path: Path) -> bool:

    return chunked.wanted(source, path)


def _collect_big(settings: Settings, engine: Engine, source: SourceConfig, path: Path, label: str,
                 fingerprint: str, period: str, started: datetime) -> ImportSummary | None:
    """One big CSV file, read and prepared in chunks by a worker process (`tasks.collect.chunked`) while
    this process stores each chunk: the two overlap, and memory stays bounded. The same import
    as `collect_source` makes of the whole file; None when the file must be read whole after all
    (the transaction is then rolled back)."""

    imp = ImportSummary(source.name, label, collect_started=started)
    with engine.connect() as conn:
        analysis = InsertAnalysis.start(conn, settings, period)
    try:
        feed = chunked.Feed(settings, source, path, label, period, engine.dialect.name,
                            _open_quarantine(engine, source.name, period),
                            analysis if analysis is not None and analysis.in_reader() else None)
    except OSError:  # no second process here (the fork server cannot start): read it whole
        return None
    with feed:
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        data = functools.cache(path.read_bytes)  # read only if `_reuse` must search the file
        if reuse._reuse(engine, source, label, data, digest, fingerprint, period, imp):
            return imp
        data.cache_clear()
        it: Table = ImportRecord.__table__  # type: ignore[attr-defined]
        now = utcnow()
        try:
            with engine.begin() as conn:
                import_id = int(conn.execute(insert(it).values(
                    source=source.name, file=label, content_hash=digest, period=period, started_at=now,
                    collect_started=started,
                    **dict.fromkeys(COUNT_NAMES, 0), error=None, periods=None,
                )).inserted_primary_key[0])  # type: ignore[index]
                store = _ChunkedImport(conn, source.name, period, import_id, now, analysis,
                                       settings.resolve(settings.engine.columnar_dir))
                with _page_cache(conn):
                    for piece in feed:
                        store.add(piece)
                store.finish(imp, label, fingerprint)
                imp.import_id = import_id
        except chunked.GiveWay:
            return None
        except SourceError as exc:
            imp = ImportSummary(source.name, label, error=str(exc), collect_started=started,
                                encoding=feed.encoding if feed.read else None)
            _record_failure(engine, period, imp, digest)
            return imp
        imp.encoding = feed.encoding
    return imp
