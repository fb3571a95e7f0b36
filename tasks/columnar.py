"""The columnar copy of a period's feedback rows: one DuckDB file per period, read instead of the
relational database by the stages of a month too big to keep in memory.

Why: a 10M-row month read back from SQLite costs ~125 s, and validate, comments, KPIs, actions and
the report each read it; the same columns from a DuckDB file come at ~1 s per million rows. The
relational database stays the system of record: the copy holds nothing it does not, and
`cxloop rebuild --period P` writes it again from there.

A copy is used only while it is known to equal the rows. Its stamp (`period_stamp`: the period's
row count and largest id, its imports, its quarantine entries and its comment-analysis marker) is
stored in `columnar_copy` when the copy is written; a copy whose stamp differs from the rows' stamp
now, whose row is gone or whose file is missing is stale and is not read. Writers keep it in step
(`patch`, an UPDATE of the same rows, then a new stamp) or mark it stale (`mark_stale`), which
`tasks.month.Month.patch` does for every change of rows it is told of.

Why DuckDB and not Parquet through pyarrow: a patch is an UPDATE of a few columns instead of a
rewrite of the file, and installing pyarrow switches pandas' `str` columns to Arrow storage for
the whole program, which changes what every stage measured.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, delete, insert, select, text

from cxloop.models import ColumnarCopy, utcnow
from cxloop.periods import parse_period

CC = ColumnarCopy.__table__  # type: ignore[attr-defined]
TABLE = "rows"


def period_stamp(conn: Connection, period: str) -> str:
    """What changes whenever the period's rows do: their count and largest id (inserts, deletes),
    the period's imports that loaded or updated rows (re-imports), its quarantine entries (every
    change of a quarantine flag, readmissions) and its comment-analysis marker. Read from indexes
    and small tables (the count: one scan of the period index, ~0.15 s per million rows)."""
    p = {"p": parse_period(period)}
    parts = [
        list(conn.execute(text("SELECT count(*), max(id) FROM feedback WHERE period = :p"), p).one()),
        list(conn.execute(text("SELECT count(*), max(id), sum(loaded), sum(updated) FROM import_record"
                               " WHERE period = :p AND (loaded > 0 OR updated > 0)"), p).one()),
        list(conn.execute(text("SELECT count(*), max(id), count(readmitted_at), max(readmitted_at)"
                               " FROM quarantined_row WHERE period = :p"), p).one()),
        [r[0] for r in conn.execute(text("SELECT fingerprint FROM comment_analysis WHERE period = :p"), p)],
    ]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def mark_stale(conn: Connection, period: str) -> None:
    """Forget the period's copy: its rows changed in a way the copy was not told of."""
    conn.execute(delete(CC).where(CC.c.period == parse_period(period)))


def _stamp(conn: Connection, period: str, rows: int, max_id: int) -> None:
    mark_stale(conn, period)
    conn.execute(insert(CC).values(period=parse_period(period), stamp=period_stamp(conn, period),
                                   rows=rows, max_id=max_id, written_at=utcnow()))


class Copies:
    """The folder of the columnar copies, one `<period>.duckdb` file each (on storage every Dask
    worker sees, in a cluster)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, period: str) -> Path:
        return self.root / f"{parse_period(period)}.duckdb"

    def fresh(self, engine: Engine, period: str) -> bool:
        """Whether the period's copy exists and equals its rows (its stamp is the rows' stamp now)."""
        if not self.path(period).is_file():
            return False
        with engine.connect() as conn:
            stored = conn.execute(select(CC.c.stamp).where(CC.c.period == parse_period(period))).scalar()
            return stored is not None and stored == period_stamp(conn, period)

    def write(self, engine: Engine, period: str, parts: Iterable[pd.DataFrame]) -> int:
        """Write the copy from `parts` (typed frames of every `tasks.month.COLUMNS` column, each
        ordered by id) and stamp it; returns the row count. The file is written beside and renamed
        into place, so a reader never meets half a copy.

        The copy's rows are in id order, so that a range of rows (`part`, a partition on a Dask
        worker) is a range of the month as every stage orders it: validate's partitions list
        their failing rows in the month's order (`tasks.validate.partitions`). Parts read from the
        database come in its physical order, which on PostgreSQL is not the ids' once rows were
        updated (`tasks.month._read` has no ORDER BY); a copy whose parts came out of order is
        written again sorted, once, by DuckDB."""
        import duckdb

        target = self.path(period)
        target.parent.mkdir(parents=True, exist_ok=True)
        with engine.begin() as conn:
            mark_stale(conn, period)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        rows, max_id, in_order = 0, 0, True
        types = _types()
        con = duckdb.connect(str(tmp))
        try:
            con.execute(f"CREATE TABLE {TABLE} ({', '.join(f'{_q(c)} {t}' for c, t in types.items())})")
            columns = ", ".join(f"CAST({_q(c)} AS {t})" for c, t in types.items())
            for part in parts:
                con.register("part", part)
                con.execute(f"INSERT INTO {TABLE} SELECT {columns} FROM part")
                con.unregister("part")
                rows += len(part)
                if len(part):
                    ids = part["id"].to_numpy()
                    in_order = in_order and int(ids[0]) > max_id
                    max_id = max(max_id, int(ids[-1]))
            if not in_order:  # into a file of its own: a dropped table's space stays in the file
                ordered = tmp.with_name(f"{tmp.name}.by-id")
                ordered.unlink(missing_ok=True)
                con.execute(f"ATTACH '{ordered}' AS by_id")
                con.execute(f"CREATE TABLE by_id.{TABLE} AS SELECT * FROM {TABLE} ORDER BY id")
                con.execute("DETACH by_id")
            con.execute("CHECKPOINT")
        finally:
            con.close()
        if not in_order:
            os.replace(ordered, tmp)
        os.replace(tmp, target)
        with engine.begin() as conn:
            _stamp(conn, period, rows, max_id)
        return rows

    def parts(self, period: str, columns: Sequence[str], clean: bool, rows: int | None,
              having: str | None = None) -> Iterator[pd.DataFrame]:
        """The copy's rows with `columns` (+ `id`), `rows` at a time (None: all in one frame),
        typed as `tasks.month` types them, each ordered by id. A copy without rows is one empty part.
        `having`: only the rows whose `having` column has a value."""
        with _Reader(self.path(period), columns) as reader:
            total = reader.count()
            step = rows or max(total, 1)
            for start in range(0, max(total, 1), step):
                yield reader.rows(clean, start, start + step, having)

    def count(self, period: str) -> int:
        """Rows in the copy (quarantined ones too)."""
        with _Reader(self.path(period), []) as reader:
            return reader.count()

    def part(self, period: str, columns: Sequence[str], clean: bool, start: int, stop: int
             ) -> pd.DataFrame:
        """The copy's rows `start` to `stop` (in the copy's order; a partition of the work on another
        process or machine), with `columns`, typed, ordered by id."""
        with _Reader(self.path(period), columns, (start, stop)) as reader:
            return reader.rows(clean, start, stop)

    def patch(self, engine: Engine, period: str, ids: Sequence[int] | np.ndarray,
              values: Mapping[str, Any]) -> None:
        """Rows `ids` now hold `values` (a scalar or one value per id) in the database: the same in
        the copy, then a new stamp (the caller holds the period, so nobody wrote in between)."""
        import duckdb

        frame = pd.DataFrame({"id": np.asarray(ids, dtype="int64")})
        for column, value in values.items():
            frame[column] = (pd.Series([value] * len(frame), dtype=object)
                             if isinstance(value, str | int | float | bool) or value is None
                             else pd.Series(list(value), dtype=object))
        sets = ", ".join(f"{_q(c)} = p.{_q(c)}" for c in values)
        con = duckdb.connect(str(self.path(period)))
        try:
            con.register("p", frame)
            con.execute(f"UPDATE {TABLE} SET {sets} FROM p WHERE {TABLE}.id = p.id")
            found = con.execute(f"SELECT count(*), coalesce(max(id), 0) FROM {TABLE}").fetchone()
            rows, max_id = found if found else (0, 0)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        with engine.begin() as conn:
            _stamp(conn, period, int(rows), int(max_id))

    def write_new(self, engine: Engine, period: str, ids: np.ndarray,
                  loaded: Sequence[pd.DataFrame | Spill]) -> int:
        """Write the copy of a month collect has just inserted (`tasks.month.Month.seed`): `loaded`,
        its rows in insertion order (frames and spilled rows, without ids), numbered `ids` (the
        period's ids in order, which the caller checked belong to them). Nothing is read back from
        the database. Returns the row count."""
        import duckdb

        target = self.path(period)
        target.parent.mkdir(parents=True, exist_ok=True)
        with engine.begin() as conn:
            mark_stale(conn, period)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        types = _types()
        columns = ", ".join(f"CAST({_q(c)} AS {t})" for c, t in types.items())
        con = duckdb.connect(str(tmp))
        start = 0
        try:
            con.execute(f"CREATE TABLE {TABLE} ({', '.join(f'{_q(c)} {t}' for c, t in types.items())})")
            for item in loaded:
                numbers = pd.DataFrame({"id": np.asarray(ids[start:start + len(item)], dtype="int64")})
                start += len(item)
                if isinstance(item, Spill):
                    item.close()
                    con.execute(f"ATTACH '{item.path}' AS spill (READ_ONLY)")
                    con.register("numbers", numbers)
                    rest = ", ".join(f"s.{_q(c)}" for c in types if c != "id")
                    con.execute(f"INSERT INTO {TABLE} SELECT numbers.id, {rest}"
                                f" FROM spill.{TABLE} s POSITIONAL JOIN numbers")
                    con.unregister("numbers")
                    con.execute("DETACH spill")
                    item.discard()
                else:
                    con.register("part", _month_frame(item, numbers["id"].to_numpy()))
                    con.execute(f"INSERT INTO {TABLE} SELECT {columns} FROM part")
                    con.unregister("part")
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, target)
        with engine.begin() as conn:
            _stamp(conn, period, start, int(ids[-1]) if len(ids) else 0)
        return start

    def rebuild(self, engine: Engine, period: str) -> int:
        """Write the period's copy again from the database, part by part (`cxloop rebuild`)."""
        from cxloop.tasks.month import COLUMNS, PART_ROWS, _read

        return self.write(engine, period, _read(engine, period, list(COLUMNS), False, PART_ROWS))


class Spill:
    """The rows one big import inserts past what collect hands over in memory (a month of more
    than `tasks.month.KEEP_ROWS` rows), appended in insertion order to a DuckDB file in the copies'
    folder, as month rows without ids yet: `Copies.write_new` numbers them into the copy, so a big
    new month is never read back from the database. Removed once used, or when dropped unused (a
    collect outside a cycle run, an import rolled back).

    Appends are written on a thread of their own, in order: the main process of a big load is
    SQLite's one writer, and typing and writing the rows cost it ~20% of a 10M-row collect. DuckDB
    and SQLite both let other threads run while they work. At most `_AHEAD` frames wait, so memory
    stays bounded; the thread's failure is raised by the next call (collect's last is `flush`)."""

    _AHEAD = 2

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".spill-", suffix=".duckdb", dir=folder)
        os.close(fd)
        self.path = Path(name)
        self.path.unlink()  # DuckDB makes the file itself
        self.rows = 0
        self._con: Any = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="cxloop-spill")
        self._pending: deque[Future[None]] = deque()
        self._gone = weakref.finalize(self, _remove, self.path)

    def __len__(self) -> int:
        return self.rows

    def append(self, frame: pd.DataFrame) -> None:
        """Add inserted rows (canonical fields and `source`, as collect hands them over)."""
        if len(self._pending) >= self._AHEAD:
            self.flush()
        self._pending.append(self._writer.submit(self._write, frame))
        self.rows += len(frame)

    def _write(self, frame: pd.DataFrame) -> None:
        import duckdb

        types = _types()
        if self._con is None:
            self._con = duckdb.connect(str(self.path))
            self._con.execute(f"CREATE TABLE {TABLE} ("
                              f"{', '.join(f'{_q(c)} {t}' for c, t in types.items())})")
        self._con.register("part", _month_frame(frame, np.zeros(len(frame), dtype="int64")))
        self._con.execute(f"INSERT INTO {TABLE} SELECT "
                          f"{', '.join(f'CAST({_q(c)} AS {t})' for c, t in types.items())} FROM part")
        self._con.unregister("part")

    def flush(self) -> None:
        """Wait for every append (none is then running on the thread); raise the first failure.
        Collect calls it before its import commits: rows the copy would lack fail the import."""
        pending = list(self._pending)
        self._pending.clear()
        wait(pending)
        for done in pending:
            done.result()

    def keys(self, positions: Sequence[int]) -> list[tuple[Any, Any]]:
        """(source, response_id) of the rows at `positions` (insertion order)."""
        import duckdb

        self.flush()
        con = self._con or duckdb.connect(str(self.path), read_only=True)
        found = {int(r): (s, k) for r, s, k in con.execute(
            f"SELECT rowid, source, response_id FROM {TABLE} WHERE rowid IN "
            f"({', '.join(str(int(p)) for p in positions)})").fetchall()}
        if con is not self._con:
            con.close()
        return [found.get(int(p), (None, None)) for p in positions]

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._con is not None:
                self._con.execute("CHECKPOINT")
                self._con.close()
                self._con = None

    def discard(self) -> None:
        """Remove the file (done with, or not wanted)."""
        for pending in self._pending:
            pending.cancel()
        with contextlib.suppress(Exception):  # unwanted rows: a failure to write them changes nothing
            self.close()
        self._writer.shutdown()
        self._gone()


def _remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)


_FETCH_VECTORS = 64  # DuckDB vectors (2,048 rows each) per fetched batch of a whole month: ~130k rows
_DISTINCT = frozenset({"response_id", "comment", "customer_id"})  # a value a row: never coded
# More distinct values than this (DuckDB's estimate over the copy), and a column is read as plain
# text: each part read rebuilds the column's categories, which cost more than they save past a few
# tens of thousands (measured: 500k distinct values, 10 parts of 200k rows 7.6 s against 0.36 s).
_CODED_VALUES = 20_000
_STR = pd.StringDtype(storage="python", na_value=np.nan)  # the month frame's text type


class _Reader:
    """Reads ranges of one copy, its repeated texts coded by DuckDB.

    Why: DuckDB makes a Python object per text value it returns, and the stages then factorise
    each text column again (`tasks.codes`): for a 10M-row month read in parts that cost the KPI
    stage ~12 s of its ~28. Here each text column whose values repeat (channel, stage, department,
    themes, ...: text columns but `_DISTINCT`, with at most `_CODED_VALUES` values) is cast to an
    ENUM of the copy's values, which DuckDB returns as codes. The column is then one object per
    distinct value, shared by its rows, and its factorisation is handed to `tasks.codes` as it is
    read. The file is attached only while a range is read: a later write to the copy in this
    process (`Copies.patch`) would otherwise meet it held by a reader left unfinished.

    `within`: the one range of rows this reader will read (a partition on a Dask worker), whose
    values alone make the ENUMs: a hundred partitions do not each scan the whole month for them."""

    def __init__(self, path: Path, columns: Sequence[str], within: tuple[int, int] | None = None) -> None:
        import duckdb

        from cxloop.tasks.month import TEXT_COLUMNS

        self.path = path
        self.wanted = list(dict.fromkeys(["id", *columns]))
        self.columns = list(columns)
        self.coded: list[str] = []
        self.con = duckdb.connect()
        try:
            with self._attached():
                candidates = [c for c in self.wanted if c in TEXT_COLUMNS and c not in _DISTINCT]
                scope = _range(*within) if within else "TRUE"
                if candidates:
                    counts = ", ".join(f"approx_count_distinct({_q(c)})" for c in candidates)
                    found = self.con.execute(f"SELECT {counts} FROM copy.{TABLE} WHERE {scope}").fetchone()
                    for c, k in zip(candidates, found or (), strict=True):
                        if k <= _CODED_VALUES:
                            self.con.execute(f"CREATE TYPE {_q('enum ' + c)} AS ENUM (SELECT DISTINCT {_q(c)}"
                                             f" FROM copy.{TABLE} WHERE {scope} AND {_q(c)} IS NOT NULL)")
                            self.coded.append(c)
        except BaseException:
            self.con.close()
            raise
        self.select = ", ".join(f"CAST({_q(c)} AS {_q('enum ' + c)}) AS {_q(c)}" if c in self.coded
                                else _q(c) for c in self.wanted)

    @contextlib.contextmanager
    def _attached(self) -> Iterator[None]:
        self.con.execute(f"ATTACH '{_sql_text(str(self.path))}' AS copy (READ_ONLY)")
        try:
            yield
        finally:
            self.con.execute("DETACH copy")

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *_: object) -> None:
        self.con.close()

    def count(self) -> int:
        with self._attached():
            found = self.con.execute(f"SELECT count(*) FROM copy.{TABLE}").fetchone()
        return int(found[0]) if found else 0

    def rows(self, clean: bool, start: int, stop: int, having: str | None = None) -> pd.DataFrame:
        """Rows `start` to `stop` of the copy's order (`clean`: those not quarantined; `having`:
        those whose `having` column has a value), typed as `tasks.month` types them. Fetched ~130k
        rows at a time into the frame's own arrays, so that DuckDB's batches and the frame are
        never both held whole (a whole 10M-row month read at once peaked ~0.8 GiB higher in
        validate)."""
        from cxloop.tasks import codes
        from cxloop.tasks.month import typed

        where = (_range(start, stop) + (" AND NOT quarantined" if clean else "")
                 + (f" AND {_q(having)} IS NOT NULL" if having else ""))
        with self._attached():
            found = self.con.execute(f"SELECT count(*) FROM copy.{TABLE} WHERE {where}").fetchone()
            n = int(found[0]) if found else 0
            self.con.execute(f"SELECT {self.select} FROM copy.{TABLE} WHERE {where}")
            if not n:  # typed as DuckDB gives the columns' types
                return typed(self.con.df(), self.wanted)[self.columns]
            raw, labels, out = self._fill(n)
        out = out[self.columns]
        for c in self.coded:
            if c in self.columns:
                codes.remember(out[c], *_first_seen(raw[c], labels[c]))
        return out

    def _fill(self, n: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], pd.DataFrame]:
        """The executed query's `n` rows, batch by batch into whole-month arrays: (codes and labels
        of the coded columns, the typed frame)."""
        from cxloop.tasks.month import typed

        arrays: dict[str, np.ndarray] = {}
        labels: dict[str, np.ndarray] = {}
        raw: dict[str, np.ndarray] = {}

        def put(into: dict[str, np.ndarray], name: str, values: np.ndarray) -> None:
            if name not in into:
                into[name] = np.empty(n, dtype=values.dtype)
            into[name][at:at + len(values)] = values

        # A coded column is kept as its codes until the end: made text once, not per batch and
        # again for the frame (each a pass over every value to check it is text).
        others = [c for c in self.wanted if c not in self.coded]
        at = 0
        while len(batch := self.con.fetch_df_chunk(_FETCH_VECTORS)):
            for c in self.coded:
                if c not in labels:  # the ENUM's values: the same in every batch
                    labels[c] = np.asarray(batch[c].array.categories, dtype=object)
                put(raw, c, np.asarray(batch[c].array.codes))
            part = typed(batch[others], others)
            for c in others:
                put(arrays, c, _plain(part[c]))
            at += len(batch)
        ids = arrays["id"]
        if len(ids) > 1 and not (ids[1:] > ids[:-1]).all():  # a copy written out of id order
            order = np.argsort(ids, kind="stable")
            arrays = {c: v[order] for c, v in arrays.items()}
            raw = {c: v[order] for c, v in raw.items()}
        columns = {c: _typed_array(v) for c, v in arrays.items()}
        columns.update({c: _text(labels[c], raw[c]) for c in self.coded})
        return raw, labels, pd.DataFrame({c: columns[c] for c in self.wanted}, copy=False)


def _plain(column: pd.Series) -> np.ndarray:
    """A typed month column's values as one numpy array (datetimes as naive UTC)."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return column.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    return np.asarray(column.array)


def _typed_array(values: np.ndarray) -> Any:
    """`_plain` back: the month frame's column."""
    if values.dtype.kind == "M":
        return pd.Series(values).dt.tz_localize("UTC")
    if values.dtype == object:
        return pd.arrays.StringArray(values, dtype=_STR)
    return values


def _text(labels: np.ndarray, raw: np.ndarray) -> pd.Series:
    """A coded column as the month frame's text column: each distinct value one object, shared
    by its rows (-1: missing)."""
    values = np.append(labels, np.nan).take(raw)  # -1: the appended NaN
    return pd.Series(pd.arrays.StringArray(values, dtype=_STR), copy=False)


def _first_seen(raw: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The factorisation `pd.factorize` gives a coded column: codes in order of first appearance,
    -1 for missing, and the values in that order."""
    seen, first = pd.factorize(raw)  # distinct codes in order of first appearance
    missing = np.flatnonzero(first < 0)
    if len(missing):
        k = int(missing[0])
        seen = np.where(seen == k, -1, seen - (seen > k))
        first = np.delete(first, k)
    return seen, labels.take(first)


def _range(start: int, stop: int) -> str:
    return f"rowid >= {int(start)} AND rowid < {int(stop)}"


def _sql_text(value: str) -> str:
    return value.replace("'", "''")


def _month_frame(frame: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
    """Inserted rows typed as the month's frame: numbered `ids`, not quarantined."""
    from cxloop.tasks.month import typed

    return typed(frame.assign(id=ids, quarantined=False).reset_index(drop=True))


def _q(name: str) -> str:
    return f'"{name}"'


def _types() -> dict[str, str]:
    """The copy's column types, after the month frame's (`tasks.month`)."""
    from cxloop.tasks.month import COLUMNS, DATETIME_COLUMNS, NUMBER_COLUMNS

    def kind(c: str) -> str:
        if c == "id":
            return "BIGINT"
        if c == "quarantined":
            return "BOOLEAN"
        if c in DATETIME_COLUMNS:
            return "TIMESTAMPTZ"
        return "DOUBLE" if c in NUMBER_COLUMNS else "VARCHAR"

    return {c: kind(c) for c in COLUMNS}
