"""The period's feedback rows as one typed frame, read from the database once per cycle run.

Validate, comments, KPIs, actions and the report all work on every row of the month. Read from
SQLite, a million rows cost seconds each time, so the cycle flow hands every stage one `Month`
that keeps the rows: the first stage that asks reads them and the later ones share that frame. The
stages that change rows (validate: `quarantined`; comments: `sentiment`, `sentiment_score`,
`themes`) write the database and then `patch` the kept frame, so it always equals the stored rows.
Outside a cycle run (a CLI command on its own) nothing is kept: each call reads the database.

A month too big to keep is read from its columnar copy (`tasks.columnar`) when the run was given
one (`copies`): written from the database at the first read if missing or stale, then read by
every later stage at a fraction of the database's cost, and kept in step by `patch`. Every other
`patch` or `forget` marks the period's copy stale, so a copy never says what the rows do not.

The frame's types are the same whichever database it came from: `id` int64, `quarantined` bool,
datetimes `datetime64[us, UTC]` (NaT when empty), scores, `is_complaint` (1/0) and
`sentiment_score` float64 (NaN when empty), text columns of pandas' `str` type (NaN when empty).
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterator, Mapping, Sequence
from contextlib import suppress
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, String, func, select, type_coerce

from cxloop.models import CANONICAL_FIELDS, Feedback
from cxloop.periods import parse_period
from cxloop.tasks import columnar
from cxloop.tasks.columnar import Spill

FB = Feedback.__table__  # type: ignore[attr-defined]
DATETIME_COLUMNS = tuple(c for c, kind in CANONICAL_FIELDS.items() if kind == "datetime")
NUMBER_COLUMNS = (*(c for c, kind in CANONICAL_FIELDS.items() if kind in ("int", "bool")), "sentiment_score")
COLUMNS = ("id", "source", "quarantined", *CANONICAL_FIELDS, "sentiment", "sentiment_score", "themes")
TEXT_COLUMNS = tuple(c for c in COLUMNS if c not in ("id", "quarantined", *DATETIME_COLUMNS, *NUMBER_COLUMNS))


# A month of more rows is not kept: every call reads just the columns it asks for. The frame collect
# hands over costs ~0.65 GiB per million rows (a text object per value); kept up to 2M rows, it
# leaves room under ~3.5 GiB for the stage's own work.
KEEP_ROWS = 2_000_000


class Month:
    """The period's rows for the stages of one cycle run, handed to each stage (in the flow's
    `CycleContext`) rather than found in a module-wide cache.

    Kept (`keep=True`, the cycle flow, which holds the period lock so nobody else changes the
    rows): the first stage that asks reads the rows and later ones share that frame; stages that
    change rows write the database and then `patch` this frame, so it always equals the stored
    rows. Not kept (the default: a CLI command or a test on its own): every call reads the database."""

    def __init__(self, engine: Engine, period: str, *, keep: bool = False,
                 copies: columnar.Copies | None = None, keep_rows: int | None = None) -> None:
        self.engine, self.period, self.keep, self.copies = engine, parse_period(period), keep, copies
        self.keep_rows = keep_rows  # kept in memory up to this many rows (None: `KEEP_ROWS`)
        self._frame: pd.DataFrame | None = None
        self._positions: pd.Index | None = None  # id -> row position, built when first patched
        self._large: bool | None = None  # more than KEEP_ROWS rows (None: not counted yet)
        self._copy: bool | None = None  # the columnar copy equals the rows (None: not checked yet)

    def forget(self) -> None:
        """The rows changed in ways `patch` does not describe: read them again when asked (and the
        columnar copy is stale)."""
        self._reset()
        with self.engine.begin() as conn:
            columnar.mark_stale(conn, self.period)

    def _reset(self) -> None:
        self._frame, self._positions, self._large, self._copy = None, None, None, None

    def _copy_ready(self, build: bool = True) -> bool:
        """Whether the rows can be read from the columnar copy: it is fresh, or (`build`) this run,
        which holds the period, has just written it from the database. Checked once per run."""
        if self.copies is None:
            return False
        if self._copy is None:
            self._copy = self.copies.fresh(self.engine, self.period)
        if not self._copy and build and self.keep:
            self.copies.rebuild(self.engine, self.period)
            self._copy = True
        return self._copy

    def columnar(self) -> bool:
        """Whether the rows are read from a fresh columnar copy (written now if this run may):
        the partitioned work can then go to Dask workers, which read the copy themselves."""
        return self._kept_frame() is None and self._copy_ready()

    def release(self) -> None:
        """After a stage of a month too big to keep: free its leftovers now. Its frames sit in
        reference cycles (GX batches, pandas' caches) until Python's next full collection, and
        glibc keeps the heap pages they freed; the next stage would start its own peak on top of both."""
        if not (self.keep and self._large):
            return
        gc.collect()
        with suppress(AttributeError, OSError):  # glibc only: elsewhere there is nothing to call
            ctypes.CDLL(None).malloc_trim(0)

    def seed(self, loaded: Sequence[pd.DataFrame | Spill]) -> bool:
        """Keep the rows collect has just inserted as the month, instead of reading them back,
        when they are all of it: a new month is collected once and then read by every later stage.
        A month too big to keep (more than `keep_rows`) goes into its columnar copy instead, when
        the run has one: written from these rows, so it too is never read back from the database.

        `loaded`: the inserted rows (canonical fields and `source`) in the order they were inserted
        (frames, and the rows a big import spilled to disk). The database numbers rows in insertion
        order (SQLite's rowid, PostgreSQL's sequence), so the period's ids in order belong to them
        one by one; this holds only if the period has no other row, which is checked (count, and
        the keys of the first, middle and last row). New rows are not quarantined and not analysed
        yet. Returns whether the month is now kept in memory."""
        if not self.keep:
            return False
        self._reset()  # the copy's stamp tells whether collect changed the rows
        n = sum(len(f) for f in loaded)
        if not n:
            return False
        large = n > self._keep_rows() or any(isinstance(f, Spill) for f in loaded)
        if large and self.copies is None:
            self._large = True
            return False
        with self.engine.connect() as conn:
            ids = _ids(conn, self.period)
            if len(ids) != n:
                return False
            probe = sorted({0, n // 2, n - 1})
            probe_ids = [int(ids[p]) for p in probe]
            stored = {int(i): (s, r) for i, s, r in conn.execute(
                select(FB.c.id, FB.c.source, FB.c.response_id).where(FB.c.id.in_(probe_ids)))}
        if any(stored.get(int(ids[p])) != key for p, key in zip(probe, _keys_at(loaded, probe), strict=True)):
            return False
        if large:
            assert self.copies is not None
            self.copies.write_new(self.engine, self.period, ids, loaded)
            self._large, self._copy = True, True
            return False
        frames = [f for f in loaded if isinstance(f, pd.DataFrame)]
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        frame = frame.assign(id=ids, quarantined=False)
        self._frame = typed(frame.reset_index(drop=True))
        return True

    def _keep_rows(self) -> int:
        return KEEP_ROWS if self.keep_rows is None else self.keep_rows

    def rows(self, columns: Sequence[str] | None = None, *, clean: bool = False,
             having: str | None = None) -> pd.DataFrame:
        """The period's rows (`clean`: only those not quarantined), ordered by id, with `columns`
        (default all of `COLUMNS`). A new frame each call: changing it changes nothing kept.

        `having`: rows whose `having` column is missing may be left out, for a stage that skips
        them anyway. A month read from its copy or the database leaves them out (the comments
        stage of a 10M-row month read 10M rows for its 2M comments: 9.1 s); a kept month comes
        whole, its columns' arrays shared with the other stages and so their factorisations
        (`tasks.codes`)."""
        frame = self._kept_frame()
        if frame is None and self._copy_ready():
            assert self.copies is not None
            (frame,) = self.copies.parts(self.period, list(columns or COLUMNS), clean, None, having)
            return frame
        if frame is None:  # nothing shared: read only what is asked for
            return read_month(self.engine, self.period, columns, clean=clean, having=having)
        keep = ~frame["quarantined"].to_numpy(dtype=bool) if clean else None
        frame = frame[list(columns)] if columns is not None else frame  # columns first: fewer to copy
        if keep is not None and not keep.all():
            frame = frame[keep]
        return frame.reset_index(drop=True)

    def parts(self, columns: Sequence[str] | None = None, *, clean: bool = False,
              rows: int | None = None) -> Iterator[pd.DataFrame]:
        """The rows `rows` gives, for a stage that can work on them part by part (counting): a
        month that is not kept comes `rows` (default `PART_ROWS`) at a time, so such a stage holds
        one part of a month too large to keep instead of all of it. A kept month comes whole, as
        one part. Parts come in no particular order, each ordered by id; a month without rows is
        one empty part."""
        if self._kept_frame() is not None:
            yield self.rows(columns, clean=clean)
        elif self._copy_ready():
            assert self.copies is not None
            yield from self.copies.parts(self.period, list(columns or COLUMNS), clean, rows or PART_ROWS)
        else:
            yield from _read(self.engine, self.period, columns, clean, rows or PART_ROWS)

    def patch(self, ids: Sequence[int] | np.ndarray, values: Mapping[str, Any]) -> None:
        """Tell the kept frame and the columnar copy that rows `ids` now hold `values` (a scalar
        or one value per id), after they were written to the database. A copy this run reads is
        kept in step; any other copy of the period is marked stale."""
        if not len(ids):
            return
        if self._patch_frame(ids, values):
            if self.keep and self._copy and self.copies is not None:
                self.copies.patch(self.engine, self.period, ids, values)
            else:
                with self.engine.begin() as conn:
                    columnar.mark_stale(conn, self.period)
                self._copy = None if self.keep else False

    def _patch_frame(self, ids: Sequence[int] | np.ndarray, values: Mapping[str, Any]) -> bool:
        """Patch the kept frame, if any; False when it cannot say what changed (then forgotten)."""
        frame = self._frame
        if frame is None:
            return True
        if self._positions is None:
            self._positions = pd.Index(frame["id"].to_numpy())
        pos = self._positions.get_indexer(np.asarray(ids, dtype="int64"))
        if (pos < 0).any():  # a row of another period: the kept frame cannot say what changed
            self.forget()
            return False
        for column, value in values.items():
            if isinstance(value, str | int | float | bool) or value is None:
                value = [value] * len(pos)
            if frame[column].dtype == "str":
                arr = frame[column].to_numpy(dtype=object, copy=True)
                arr[pos] = np.asarray(list(value), dtype=object)
                frame[column] = pd.Series(arr, index=frame.index, dtype=object).astype("str")
            else:
                arr = frame[column].to_numpy(copy=True)
                arr[pos] = np.asarray(list(value), dtype=arr.dtype)
                frame[column] = arr
        return True

    def _kept_frame(self) -> pd.DataFrame | None:
        """The shared month, read at the first call; None when not kept and for a month of more
        than `KEEP_ROWS` rows."""
        if not self.keep or self._frame is not None:
            return self._frame
        if self._large is None:
            with self.engine.connect() as conn:
                self._large = conn.execute(select(func.count()).where(
                    FB.c.period == self.period)).scalar_one() > self._keep_rows()
        if not self._large:
            if self._copy_ready(build=False):  # a month kept in memory needs no copy, but reads one
                assert self.copies is not None
                (self._frame,) = self.copies.parts(self.period, COLUMNS, False, None)
            else:
                self._frame = read_month(self.engine, self.period)
        return self._frame


def _keys_at(loaded: Sequence[pd.DataFrame | Spill], positions: Sequence[int]
             ) -> list[tuple[Any, Any]]:
    """(source, response_id) of the inserted rows at `positions` (insertion order, ascending)."""
    keys: list[tuple[Any, Any]] = []
    start = 0
    for item in loaded:
        here = [p - start for p in positions if start <= p < start + len(item)]
        if here and isinstance(item, Spill):
            keys.extend(item.keys(here))
        elif here and isinstance(item, pd.DataFrame):
            src, rid = item["source"].to_numpy(dtype=object), item["response_id"].to_numpy(dtype=object)
            keys.extend((src[p], rid[p]) for p in here)
        start += len(item)
    return keys


def of(engine: Engine, period: str, shared: Month | None) -> Month:
    """The rows of `period`: the shared month when it is that period's, else read from the database
    (a stage that also reads earlier months, such as re-measure)."""
    if shared is not None and shared.period == parse_period(period):
        return shared
    return Month(engine, period)


def _ids(conn: Connection, period: str) -> np.ndarray:
    """The period's row ids in order. Rows inserted in one go are numbered without gaps, which the
    period index tells at once; otherwise they are fetched through the DB-API cursor (SQLAlchemy's
    result rows cost a second per million here)."""
    where = FB.c.period == parse_period(period)
    n = conn.execute(select(func.count()).where(where)).scalar_one()
    if not n:
        return np.zeros(0, dtype="int64")
    # The first and last id by one index seek per flag: min/max over the whole period read every
    # index entry (~0.2 s per million rows on SQLite).
    ends = conn.execute(select(*(
        select(agg(FB.c.id)).where(where, FB.c.quarantined == flag).scalar_subquery()
        for agg in (func.min, func.max) for flag in (False, True)))).one()
    first = min(v for v in ends[:2] if v is not None)
    last = max(v for v in ends[2:] if v is not None)
    if last - first + 1 == n:
        return np.arange(first, last + 1, dtype="int64")
    stmt = select(FB.c.id).where(where).order_by(FB.c.id)
    cur = conn.connection.cursor()
    try:
        cur.execute(str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})))
        return np.fromiter((r[0] for r in cur.fetchall()), dtype="int64")
    finally:
        cur.close()


def read_month(engine: Engine, period: str, columns: Sequence[str] | None = None, *,
               clean: bool = False, having: str | None = None) -> pd.DataFrame:
    """The period's rows straight from the DB-API cursor, typed (see the module docstring).

    SQLAlchemy's per-value processing costs about as much as the query itself on a million rows;
    datetimes arrive as text from SQLite and are parsed by pandas in one vectorised step. Rows are
    fetched a batch at a time into typed columns: the driver's tuples of a whole month (one Python
    object per value) took ~1.5 GiB per million rows of every column, the typed columns ~0.25.
    `having`: only the rows whose `having` column has a value."""
    (frame,) = _read(engine, period, columns, clean, None, having)
    return frame


# Rows per part of a month read part by part (`month_parts`).
PART_ROWS = 1_000_000


def _read(engine: Engine, period: str, columns: Sequence[str] | None, clean: bool,
          part: int | None, having: str | None = None) -> Iterator[pd.DataFrame]:
    """The period's rows of one query in frames of `part` rows (None: one frame of all);
    `having`: only those whose `having` column has a value."""
    wanted = list(COLUMNS) if columns is None else list(dict.fromkeys(["id", *columns]))
    cols = [type_coerce(FB.c[c], String).label(c) if c in DATETIME_COLUMNS else FB.c[c] for c in wanted]
    where = [FB.c.period == parse_period(period)]
    if clean:
        where.append(FB.c.quarantined.is_(False))
    if having is not None:
        where.append(FB.c[having].is_not(None))
    # No ORDER BY: the period index yields rows by (quarantined, id), and sorting them here is
    # cheaper than SQLite's sort of a million wide rows.
    sql, count = (_literal(engine, stmt.where(*where))
                  for stmt in (select(*cols), select(func.count()).select_from(FB)))
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        try:
            cur.execute(count)
            left = int(cur.fetchone()[0])  # type: ignore[index]
        finally:
            cur.close()
        size = left if part is None else min(part, left)
        columns_of = _Columns(wanted, size)
        # PostgreSQL: a server-side cursor, or the driver holds every row of the result at once.
        cur = (raw.driver_connection.cursor(name="cxloop_month")  # type: ignore[union-attr]
               if engine.dialect.name == "postgresql" else raw.cursor())
        try:
            cur.execute(sql)
            while rows := cur.fetchmany(_room(columns_of.filled, part)):
                if part is not None and columns_of.filled >= part:  # full, and more rows came
                    yield columns_of.frame(columns)
                    columns_of = _Columns(wanted, min(part, max(left, len(rows))))
                columns_of.add(rows)
                left -= len(rows)
                del rows
        finally:
            cur.close()
    finally:
        raw.close()
    yield columns_of.frame(columns)


_BATCH = 50_000  # rows fetched and typed at a time


def _room(filled: int, part: int | None) -> int:
    """Rows to fetch next: a batch, no more than the part has room for (a full part: the next
    part's first batch)."""
    if part is None:
        return _BATCH
    return min(_BATCH, part - filled) or min(_BATCH, part)


def _literal(engine: Engine, stmt: Any) -> str:
    """The statement as SQL text; its only bound value is the period, validated, so it is inlined."""
    return str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))


class _Columns:
    """The typed columns of `rows` rows (counted first), filled a batch at a time: no second copy of
    the month to join batches, and a batch's buffers are freed and reused by the next (batches
    kept until the end leave the heap fragmented)."""

    def __init__(self, wanted: list[str], rows: int) -> None:
        self.wanted, self.filled = wanted, 0
        self.dtypes = typed(pd.DataFrame({c: [] for c in wanted}), wanted).dtypes
        self.arrays = {c: np.empty(rows, dtype=_stored(self.dtypes[c])) for c in wanted}

    def add(self, rows: Sequence[Sequence[Any]]) -> None:
        start, end = self.filled, self.filled + len(rows)
        if end > len(self.arrays["id"]):  # rows added since they were counted
            more = max(end, len(self.arrays["id"]) * 5 // 4)
            self.arrays = {c: np.concatenate([a, np.empty(more - len(a), dtype=a.dtype)])
                           for c, a in self.arrays.items()}
        for c, values in zip(self.wanted, zip(*rows, strict=True), strict=True):
            self.arrays[c][start:end] = _column(c, values)
        self.filled = end

    def frame(self, columns: Sequence[str] | None) -> pd.DataFrame:
        """The rows ordered by id, with `columns` (default: all read), a column at a time."""
        ids = self.arrays["id"][:self.filled]
        order = None
        if len(ids) > 1 and not (ids[1:] > ids[:-1]).all():
            order = np.argsort(ids, kind="stable")
        out: dict[str, Any] = {}
        for c in (self.wanted if columns is None else list(columns)):
            values = self.arrays.pop(c) if c != "id" else self.arrays["id"]
            values = values[:self.filled] if order is None else values[order]
            out[c] = pd.Series(values, dtype=self.dtypes[c], copy=False)
        return pd.DataFrame(out, copy=False)


def _stored(dtype: Any) -> Any:
    """The NumPy type a column is filled as (datetimes: UTC datetime64[us])."""
    if isinstance(dtype, pd.DatetimeTZDtype):
        return np.dtype("datetime64[us]")
    return dtype if isinstance(dtype, np.dtype) else np.dtype(object)


def _column(name: str, values: Sequence[Any]) -> np.ndarray:
    """A batch of one column's driver values as the frame stores them (datetimes as UTC
    datetime64[us]); text values repeated in the batch become one object, so a column of few
    distinct values costs a pointer a row (the driver makes an object per value)."""
    if name == "id":
        return np.array(values, dtype="int64")
    if name in NUMBER_COLUMNS:
        try:  # None -> NaN; ints, booleans and Decimals -> float
            return np.array(values, dtype="float64")
        except (TypeError, ValueError):  # text in a number column: as `typed` reads it
            pass
    if name not in TEXT_COLUMNS:
        typed_values = typed(pd.DataFrame({name: np.array(values, dtype=object)}), [name])[name]
        if name in DATETIME_COLUMNS:
            return typed_values.to_numpy(dtype="datetime64[us]")
        return typed_values.to_numpy()
    if len(set(values[:1000])) > 500:  # mostly distinct (ids): nothing to share
        return np.array(values, dtype=object)
    one: dict[Any, Any] = {}
    return np.array(list(map(one.setdefault, values, values)), dtype=object)


def _empty(column: str, n: int) -> Any:
    """A column of `n` empty values, typed (a column no row of an export has: ~0.1 s per million
    rows if made from None values)."""
    if column == "quarantined":
        return np.zeros(n, dtype=bool)
    if column in DATETIME_COLUMNS:
        return pd.Series(np.full(n, np.datetime64("NaT", "us"))).dt.tz_localize("UTC")
    if column in NUMBER_COLUMNS:
        return np.full(n, np.nan)
    return pd.Series(index=pd.RangeIndex(n), dtype="str")


def _numbers(s: pd.Series) -> np.ndarray:
    """A number column as floats (NaN where empty)."""
    if s.dtype.kind in "iufb":
        return s.to_numpy(dtype="float64", na_value=np.nan)
    values = s.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(values, skipna=True) == "boolean":  # flags as collect hands them over
        present = ~pd.isna(values)
        out = np.full(len(values), np.nan)
        out[present] = values[present].astype(bool)
        return out  # (pd.to_numeric took 0.16 s per million rows, this 0.06)
    # text, a driver's Decimals
    return pd.to_numeric(s.astype(object), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def typed(df: pd.DataFrame, columns: Sequence[str] = COLUMNS) -> pd.DataFrame:
    """The frame's column types, whatever the driver returned."""
    n = len(df)
    out: dict[str, Any] = {}
    for c in columns:
        if c not in df.columns:
            out[c] = _empty(c, n)
            continue
        s = df[c].reset_index(drop=True)
        if c == "id":
            out[c] = s.to_numpy(dtype="int64")
        elif c == "quarantined":
            out[c] = (s.to_numpy() if s.dtype == bool else
                      s.astype(object).fillna(False).to_numpy(dtype=bool))
        elif c in DATETIME_COLUMNS:
            times = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
            out[c] = times.astype("datetime64[us, UTC]")
        elif c in NUMBER_COLUMNS:
            out[c] = _numbers(s)
        else:
            out[c] = s.astype("str")
    return pd.DataFrame(out)
