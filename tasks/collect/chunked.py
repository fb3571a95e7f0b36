"""Big CSV exports read in chunks by a second process while the main process stores them.

Why: reading + mapping a million rows and SQLite's inserts are both pure CPU and each takes
several seconds; threads cannot overlap them (the driver holds the GIL while binding), a second
process can. The worker reads the file in chunks of `CHUNK_ROWS`, runs `mapping.prepare` on each
and formats its datetimes for the driver; the main process keeps the one transaction of the
import (`collect.big._ChunkedImport`) and inserts each chunk while the worker prepares the next. At
most `QUEUE_CHUNKS` chunks wait between them (each in a file, its name on a queue), so memory
stays bounded whatever the file's size.

The worker is a `Process` of the standard library's fork server (`tasks.workers`), which has
`tasks.collect` loaded already (a plain `fork` is unsafe: the parent has threads).

Whatever the chunked path would do differently from reading the whole file at once (an encoding
that needs a guess, a byte that does not decode) makes it give way: the caller then reads the
file the ordinary way, which reports the same thing it always did.
"""

from __future__ import annotations

import codecs
import mmap
import multiprocessing as mp
import os
import pickle
import queue
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cxloop.config import Settings, SourceConfig
from cxloop.models import CANONICAL_FIELDS
from cxloop.tasks import readers, workers
from cxloop.tasks.collect.values import db_times
from cxloop.tasks.mapping import prepare
from cxloop.tasks.readers import RawTable, SourceError

if TYPE_CHECKING:
    from cxloop.tasks.comments import InsertAnalysis

BIG_FILE_BYTES = 16 << 20  # CSV files above this are read in chunks (about 150k rows)
CHUNK_ROWS = 100_000  # rows per chunk: the worker's lead over the first insert, and the memory
FIRST_CHUNK_ROWS = 10_000  # the first chunk is small: the main process waits for it doing nothing
QUEUE_CHUNKS = 4  # chunks prepared ahead of the main process at most (~25 MB each)
_ENCODINGS = frozenset({"utf-8", "utf-8-sig", "gb18030", "gbk", "gb2312"})  # "\n" is one byte
_POLL = 1.0  # seconds between liveness checks of the other process
MAIN_WAITED = 0.05  # seconds the main process waited since the previous chunk: it analyses the next
# The databases on which every chunk's comments are analysed during collect (by the reader, or by
# the main process when it waited: `MAIN_WAITED`), not only with time to spare: what is analysed
# is written once, with its rows, instead of again by the stage (an UPDATE per row). At 1M rows
# on 2 cores, SQLite: collect + comments 17.5-20.6 s against 21.1-22.9 s with the spare-time rule
# (the reader alone analysing). PostgreSQL, whose server process takes a core as well, kept the
# spare-time rule until the main process shared the analysis; since then the two are about even
# there (7 Dec 2026, whole cycle 26.4-32.0 s, median 30.4, against 30.3-31.5 s) and every chunk's
# costs less memory (peak with workers 1.71 GiB against 2.03-2.07: the stage starts no worker
# processes). Measured on 2 cores only: with more, the stage's worker processes share the
# analysis among more cores than these two processes, so the spare-time rule stays there.
EVERY_CHUNK = frozenset({"sqlite", "postgresql"})
EVERY_CHUNK_CORES = 2  # at most


def _every_chunk(dialect: str) -> bool:
    return dialect in EVERY_CHUNK and workers.cores() <= EVERY_CHUNK_CORES


class GiveWay(Exception):
    """The file needs the whole-file path (an encoding to guess, a byte that does not decode)."""


@dataclass
class Piece:
    """One prepared chunk as it crosses to the main process (`mapping.Prepared` without what only
    a whole file needs). The rows go as the typed frame: datetimes and numbers as arrays, each text
    object once - cheaper to pickle and load than driver values, which the main process makes
    only for the rows it inserts."""

    records: pd.DataFrame  # accepted rows of the period, one per response_id, + content_hash
    rejected: list[Any]  # mapping.Rejection
    rows_read: int
    out_of_period: int
    repeated: int
    periods: dict[str, int]
    undated: int
    fixed: set[str] = field(default_factory=set)  # open quarantine keys whose rows parse now
    times: dict[str, np.ndarray] = field(default_factory=dict)  # datetimes as `collect.db_times`
    warnings: dict[str, Any] = field(default_factory=dict)  # mapping.Prepared.warnings
    ratings: Any = None  # mapping.Prepared.ratings
    analysis: dict[str, np.ndarray] | None = None  # comments.InsertAnalysis.columns of `records`
    analyse_here: bool = False  # the main process was waiting: it analyses every comment of `records`


def wanted(source: SourceConfig, path: Path) -> bool:
    """Whether a file is read in chunks: a big CSV export."""
    return source.kind == "csv" and path.stat().st_size > BIG_FILE_BYTES


# ------------------------------------------------------------------------------- the worker side
def _encoding(path: Path, setting: str) -> str:
    """The encoding the whole-file reader would decide on, where that needs no guess."""
    with path.open("rb") as f:
        bom = f.read(3) == codecs.BOM_UTF8
    if setting.lower() == "auto":
        if bom:
            return "utf-8-sig"
        # The whole-file reader takes UTF-8 if all of it decodes, else GB18030 if that decodes
        # (a bad byte met while parsing gives way: the reader then guesses).
        stop = _utf8_stop(path)
        if stop is None:
            return "utf-8"
        if _mixed(path, stop):
            raise GiveWay  # UTF-8 with a foreign line: the whole-file reader names it
        return "gb18030"
    encoding = setting
    if setting.lower().replace("_", "-") in ("utf-8", "utf8") and bom:
        encoding = "utf-8-sig"
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise GiveWay from None
    if name not in _ENCODINGS:
        raise GiveWay
    return encoding


def _utf8_stop(path: Path) -> int | None:
    """The offset of the file's first byte that is not UTF-8 (about: a character split across
    blocks counts from the block), None when all of it decodes."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    done = 0
    try:
        with path.open("rb") as f:
            while block := f.read(4 << 20):
                decoder.decode(block)
                done += len(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        return done + exc.start
    return None


def _mixed(path: Path, stop: int) -> bool:
    """`readers.looks_mixed` over the mapped file, without reading it into memory."""
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return readers.looks_mixed(data, stop)


def _header(path: Path, encoding: str, label: str) -> str:
    """Line 1, read at most just past the header bounds (`readers.header_line` checks them)."""

    with path.open("rb") as f:
        line = f.readline(4 * readers.MAX_HEADER_CHARS + 4)  # a character is at most 4 bytes
    return readers.header_line(line.decode(encoding, errors="replace"), label)


def _holds_nul(path: Path) -> bool:
    """Does the file hold a NUL byte? A memchr over the mapped file (GB/s), so the chunks' cells
    are searched for NUL characters only when one can be there."""

    with path.open("rb") as fh:
        if path.stat().st_size == 0:
            return False
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(b"\x00") >= 0


def _chunks(path: Path, encoding: str, label: str, rows: int, first: int) -> Iterator[pd.DataFrame]:
    """The file's records as `readers.read_csv` reads them: `first` rows, then a quarter more each
    time up to `rows`. The main process stores a row ~1.3 times slower than this one prepares it:
    while chunks grow slower than that, it waits only for the first. (A jump from 10k to 100k rows
    left it idle ~0.9 s per file; doubling, ~0.4 s.)"""

    header = _header(path, encoding, label)
    if not header.strip():
        raise GiveWay  # a blank first line: the whole-file reader decides what that is
    sep = readers._sniff_delimiter(header)
    try:
        reader = pd.read_csv(path, dtype=object, keep_default_na=False, na_filter=False, sep=sep,
                             skipinitialspace=False, encoding=encoding, chunksize=rows)
        with reader:
            size = first
            while True:
                try:
                    frame = reader.get_chunk(size)
                except StopIteration:
                    return
                size = min(rows, size + max(1, size // 4))
                frame.columns = [str(c).strip() for c in frame.columns]
                yield frame
    except pd.errors.ParserError as exc:
        raise readers.parser_error(exc, label) from None


def _piece(prep: Any, dialect: str, open_keys: frozenset[str]) -> Piece:
    """A prepared chunk as it goes to the main process, its rows in the order of their keys: the
    database's unique index on (source, response_id) is then written page after page instead of
    at random. Ids that are not numbered in file order (a UUID's random digits) made SQLite's
    inserts about twice as slow (measured: 1M such rows 9.5 s in file order, 3.8 s in key order).
    Python orders text by code point, as SQLite's BINARY collation orders its UTF-8 bytes."""
    fixed = set(open_keys & prep.fixed_keys) if open_keys else set()
    records, ratings = prep.records, prep.ratings
    if len(records) > 1:
        order = np.argsort(records["response_id"].to_numpy(dtype=object), kind="stable")
        if (order[1:] < order[:-1]).any():  # not in key order already (ids numbered in file order)
            records = records.iloc[order]
            ratings = ratings.take(order) if ratings is not None else None
    times = {n: db_times(records[n], dialect) for n, kind in CANONICAL_FIELDS.items()
             if kind == "datetime" and n in records}
    return Piece(records, prep.rejected, prep.rows_read, prep.out_of_period, prep.repeated,
                 prep.periods, prep.undated, fixed, times, prep.warnings, ratings)


def _send(q: Any, message: tuple[Any, ...], folder: Path) -> None:
    """Put `message` on the queue; end this process if the main process has gone."""
    parent = mp.parent_process()
    while True:
        try:
            q.put(message, timeout=_POLL)
            return
        except queue.Full:
            if parent is not None and not parent.is_alive():
                shutil.rmtree(folder, ignore_errors=True)
                os._exit(1)


def _send_piece(q: Any, piece: Piece, folder: Path, number: int) -> None:
    """A piece goes through a file, its name through the queue: a pipe moves 25 MB in 64 KB
    steps, each a switch between the two processes."""
    path = folder / f"{number}.pickle"
    with path.open("wb") as f:
        pickle.dump(piece, f, protocol=pickle.HIGHEST_PROTOCOL)
    _send(q, ("chunk", str(path)), folder)


def _spare_time(q: Any) -> bool:
    """Whether the main process has a chunk waiting already: it is busy inserting, and this
    process has time to analyse the next chunk's comments (`comments.InsertAnalysis`). When it
    waits for this process instead, the comments are left to the stage."""
    try:
        return bool(q.qsize() >= 1)
    except NotImplementedError:  # macOS: no queue size; the analysis then never waits on it
        return False


def _produce(settings: Settings, source: SourceConfig, path: Path, label: str, period: str,
             dialect: str, open_keys: frozenset[str], rows: int, first: int, folder: Path, q: Any,
             analysis: InsertAnalysis | None = None, spare_only: bool = True, waited: Any = None,
             idle: float = 0.0) -> None:
    """The worker: ("encoding", name), ("chunk", Piece)..., then ("done",), ("give way",) or
    ("error", message, whether the file was read: the failure was in mapping it). `analysis`:
    analyse every chunk's comments, or (`spare_only`) a chunk's when the main process has one
    waiting (`EVERY_CHUNK`); an analysis that fails is left to the stage, the load goes on.

    `waited`: the seconds the main process has waited for chunks so far, each wait added when it
    ends. Where every chunk is analysed (not `spare_only`), a chunk goes without its analysis,
    marked `analyse_here`, when the main process's waits that ended since this process's previous
    chunk (in effect, the wait for that chunk) add up to more than `idle` (`MAIN_WAITED`): this
    process is then the slower one, and the main process analyses the chunk before its inserts, on
    the core it would otherwise leave idle. So the analysis falls to whichever process has time.
    (Not whether it waits at the very moment a chunk is ready: the two fall into step, each chunk
    ready just before the main process waits for it.)"""

    mapping = False
    try:
        encoding = _encoding(path, source.encoding)
        _send(q, ("encoding", encoding), folder)
        read = 0
        seen = 0.0  # `waited` at the previous chunk
        nul = _holds_nul(path)
        for number, frame in enumerate(_chunks(path, encoding, label, rows, first)):
            raw = RawTable(frame, np.arange(read + 2, read + len(frame) + 2), "", encoding, nul)
            read += len(frame)
            mapping = True
            piece = _piece(prepare(settings, source, raw, period, label), dialect, open_keys)
            mapping = False
            now = waited.value if waited is not None else 0.0
            main_waited, seen = now - seen, now
            if analysis is not None and not spare_only and main_waited > idle:
                piece.analyse_here = True
            elif analysis is not None and (not spare_only or (number and _spare_time(q))):
                piece.analysis = analysis.every_comment(
                    piece.records, f"{label}: comments of rows {read - len(frame) + 2}-{read + 1}")
            _send_piece(q, piece, folder, number)
        _send(q, ("done",) if read else ("give way",), folder)
    except (GiveWay, UnicodeError):
        _send(q, ("give way",), folder)
    except SourceError as exc:
        _send(q, ("error", str(exc), mapping), folder)
    except Exception as exc:  # as `collect_source` words an unforeseen failure of the reader
        _send(q, ("error", f"{label}: cannot be read ({type(exc).__name__}: {exc})", mapping), folder)
    q.close()
    q.join_thread()


# --------------------------------------------------------------------------------- the main side
class Feed:
    """The worker of one file, seen from the main process: iterate for its pieces. Use as a
    context manager: leaving it (normally or by an error) ends the worker."""

    def __init__(self, settings: Settings, source: SourceConfig, path: Path, label: str, period: str,
                 dialect: str, open_keys: frozenset[str], analysis: InsertAnalysis | None = None) -> None:
        ctx = workers.context()
        self.label = label
        self.encoding: str | None = None
        self.read = False  # whether a failure came after the file was read (while mapping it)
        self._queue = ctx.Queue(QUEUE_CHUNKS)
        self._waited = ctx.Value("d", 0.0, lock=False)  # seconds this process waited for chunks
        self._folder = Path(tempfile.mkdtemp(prefix="cxloop-chunks-"))
        self._proc = ctx.Process(target=_produce, name="cxloop-collect-reader", daemon=True,
                                 args=(settings, source, path, label, period, dialect, open_keys,
                                       CHUNK_ROWS, min(CHUNK_ROWS, FIRST_CHUNK_ROWS), self._folder,
                                       self._queue, analysis, not _every_chunk(dialect), self._waited,
                                       MAIN_WAITED))
        self._proc.start()

    def __enter__(self) -> Feed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join()
        self._queue.close()
        self._queue.cancel_join_thread()
        shutil.rmtree(self._folder, ignore_errors=True)

    def _get(self) -> tuple[Any, ...]:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            pass
        started = time.perf_counter()
        try:
            return self._wait()
        finally:
            self._waited.value += time.perf_counter() - started

    def _wait(self) -> tuple[Any, ...]:
        while True:
            try:
                return self._queue.get(timeout=_POLL)
            except queue.Empty:
                if not self._proc.is_alive():
                    try:  # it may have put its last message just before it ended
                        return self._queue.get(timeout=_POLL)
                    except queue.Empty:
                        raise SourceError(f"{self.label}: cannot be read (the reading process ended "
                                          f"with exit code {self._proc.exitcode})") from None

    def __iter__(self) -> Iterator[Piece]:
        """The pieces in file order. Raises SourceError as reading the whole file would, or
        GiveWay."""

        while True:
            message = self._get()
            kind = message[0]
            if kind == "encoding":
                self.encoding = message[1]
            elif kind == "chunk":
                path = Path(message[1])
                data = path.read_bytes()
                path.unlink()
                yield pickle.loads(data)
            elif kind == "done":
                return
            elif kind == "error":
                self.read = message[2]
                raise SourceError(message[1])
            else:
                raise GiveWay
