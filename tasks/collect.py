"""Collection: every configured source -> canonical feedback rows of one period, loaded once.

Why it is shaped this way:
- Each file's records are mapped to canonical typed rows by `tasks/mapping.py` (vectorised, no
  database); this module stores them with the driver's bulk paths (executemany on SQLite, COPY on
  PostgreSQL), never row-by-row ORM: a million responses load in seconds. A big CSV export is
  read and mapped in chunks by a second process while this one stores them (`tasks/chunked.py`).
- The key is (source, response_id) with a hash of the canonical content, so re-collecting a file,
  or an export that overlaps last month's, adds nothing twice; a changed response is updated.
- Exports overlap months, so rows of other months are counted as `out_of_period`, not as errors.
- Rows that cannot be mapped are kept in `QuarantinedRow` (stage "collect") with the file, row and
  reasons; once the export is fixed, the next collect loads the row and marks its quarantine
  entry readmitted.
- One transaction per source file: a file either loads completely with its import record or
  not at all, and a file that cannot be read records its error while the other files still load.
"""
from __future__ import annotations

import functools
import glob
import hashlib
import json
import sqlite3
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain, islice, repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, Table, and_, bindparam, func, insert, literal, select, update

from cxloop.config import Settings, SourceConfig
from cxloop.models import (
    CANONICAL_FIELDS,
    Feedback,
    ImportRecord,
    QuarantinedRow,
    utcnow,
)
from cxloop.periods import parse_period
from cxloop.tasks import month, readers
from cxloop.tasks.cases.contacts import store_contacts
from cxloop.tasks.mapping import Prepared, Rejection, merge_warnings, prepare
from cxloop.tasks.readers import RawTable, SourceError

if TYPE_CHECKING:
    from cxloop.tasks.chunked import Piece
    from cxloop.tasks.comments import InsertAnalysis

_FB: Table = Feedback.__table__  # type: ignore[attr-defined]
# A comment's analysis, which collect writes with new rows of repeated comments (`InsertAnalysis`).
_ANALYSIS = {"sentiment": "text", "sentiment_score": "float", "themes": "text"}
CHUNK = 20_000  # rows per executemany: bounded memory, few round trips
# Rows per INSERT on SQLite: Python's sqlite3 spends ~2.5 us per statement it runs (measured
# here: 1M rows of 20 values took 3.3 s one row per INSERT, 1.5 s fifty rows per INSERT).
_VALUES_ROWS = 50
_IN_CHUNK = 1_000  # keys per IN (...) lookup


# --------------------------------------------------------------------------------------- results
@dataclass
class ImportSummary:
    """What one source file contributed; mirrors its `ImportRecord`."""

    source: str
    file: str
    rows_read: int = 0
    loaded: int = 0
    updated: int = 0
    duplicates: int = 0
    rejected: int = 0
    out_of_period: int = 0
    error: str | None = None
    import_id: int | None = None
    encoding: str | None = None
    warnings: dict[str, Any] = field(default_factory=dict)  # ImportRecord.warnings
    # The rows inserted, in insertion order (canonical fields and source): what a new month is.
    inserted: pd.DataFrame | None = field(default=None, repr=False)

    def row(self) -> dict[str, Any]:
        return {"source": self.source, "file": self.file, "read": self.rows_read, "loaded": self.loaded,
                "updated": self.updated, "duplicates": self.duplicates, "rejected": self.rejected,
                "out_of_period": self.out_of_period, "error": self.error or ""}


WARNING_TEXTS = {
    "nul_removed": "{cells} NUL character(s) removed (first: {first})",
    "conflicting_ids": "{count} response_id(s) repeated with different content, the last row kept "
                       "(first: {first})",
}


def warning_text(name: str, warning: dict[str, Any]) -> str:
    """An import warning in words, e.g. "3 NUL character(s) removed (first: row 2 column 'comment')"."""
    values = {k: (", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in warning.items()}
    try:
        return WARNING_TEXTS[name].format(**values)
    except (KeyError, IndexError):
        return f"{name}: {values}"


COUNT_NAMES = ("rows_read", "loaded", "updated", "duplicates", "rejected", "out_of_period")


@dataclass
class CollectSummary:
    period: str
    imports: list[ImportSummary] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(int(getattr(i, name)) for i in self.imports)

    @property
    def errors(self) -> list[str]:
        """One line per file that could not be read; each message names the file."""
        return [f"source {i.source!r}: {i.error}" for i in self.imports if i.error]

    @property
    def warning_lines(self) -> list[str]:
        """One line per thing collect cleaned or noticed in a file that loaded (import warnings)."""
        return [f"source {i.source!r}: {i.file}: {warning_text(name, w)}"
                for i in self.imports for name, w in (i.warnings or {}).items()]

    @property
    def ok(self) -> bool:
        return not self.errors

    def inserted(self) -> list[pd.DataFrame]:
        """The rows this collect inserted, file by file in the order they were inserted."""
        return [i.inserted for i in self.imports if i.inserted is not None]

    def counts(self) -> dict[str, int | float | str]:
        out: dict[str, int | float | str] = {"files": len(self.imports)}
        out.update({name: self.total(name) for name in COUNT_NAMES})
        out["errors"] = len(self.errors)
        return out


# ------------------------------------------------------------------------------------ storage
def _null(dialect: str) -> Any:
    """The value a driver stores fastest as NULL. On SQLite a float NaN: SQLite stores a bound
    NaN as NULL, and Python's sqlite3 binds a float at once, while None goes through its adapter
    lookup (a key tuple, a dict lookup and two failed attribute lookups per value): measured
    here, 20 NULLs per row cost 9.1 s per million rows as None and 3.3 s as NaN."""
    return np.nan if dialect == "sqlite" else None


def _db_datetimes(s: pd.Series, dialect: str) -> list[Any]:
    """UTC timestamps in the form the driver stores fastest, without per-value Python objects:
    SQLAlchemy's own SQLite text format (so the ORM reads them back as aware UTC), and ISO 8601
    with offset for PostgreSQL's COPY. Formatted by numpy, whole column at once."""
    utc = _naive_utc(s)
    present = ~np.isnat(utc)
    values = np.full(len(utc), _null(dialect), dtype=object)
    values[present] = _time_texts(utc[present], dialect).astype(object)  # only the present: often a few
    return values.tolist()


def _naive_utc(s: pd.Series) -> np.ndarray:
    return s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")


def _time_texts(utc: np.ndarray, dialect: str) -> np.ndarray:
    text = np.datetime_as_string(utc, unit="us")
    if dialect == "sqlite":
        chars = text.view(np.uint32).reshape(len(text), -1)  # UCS-4: "YYYY-MM-DDThh..." -> " "
        if chars.shape[1] > 10:
            chars[:, 10] = ord(" ")
    else:
        text = np.strings.add(text, "+00:00")
    return text


def db_times(s: pd.Series, dialect: str) -> np.ndarray:
    """`_db_datetimes` as one fixed-width ASCII byte array (b"" where empty): made by the chunk
    worker (`tasks.chunked`), as cheap to pickle as the timestamps; formatting them took the main
    process about a second per million rows. Bytes, not numpy text: a quarter of the size (four
    bytes per character) to write, read and load (a 100k-row chunk: 31 -> 8 MB)."""
    utc = _naive_utc(s)
    present = ~np.isnat(utc)
    if not present.any():
        return np.full(len(utc), b"", dtype="S1")
    texts = _time_texts(utc[present], dialect)
    width = int(np.strings.str_len(texts).max())  # 26 characters (SQLite), 32; numpy makes 45+
    out = np.full(len(utc), b"", dtype=f"S{width}")
    out[present] = texts
    return out


def _text_values(text: np.ndarray, dialect: str) -> list[Any]:
    """The driver values of a `db_times` array."""
    present = text != b""
    if present.all():
        return list(_ascii_text(text).tolist())
    values = np.full(len(text), _null(dialect), dtype=object)
    values[present] = _ascii_text(text[present]).tolist()
    return list(values.tolist())


def _ascii_text(text: np.ndarray) -> np.ndarray:
    """An ASCII byte array as numpy text, each byte widened to a character (numpy's own decoding
    took 0.24 s per million datetimes, this 0.04)."""
    width = text.dtype.itemsize
    chars = np.ascontiguousarray(text).view(np.uint8).reshape(len(text), width).astype(np.uint32)
    return chars.view(f"U{width}").reshape(len(text))


_NOT_PLAIN = (float, type(pd.NA))  # the values `_db_column` turns into `_null` or must check


def _db_column(s: pd.Series, kind: str, dialect: str) -> list[Any]:
    """Plain values (`_null` for empty) as the DB driver takes them; on SQLite, booleans as 0/1
    (how SQLAlchemy stores them there; a bool takes the driver's slow adapter path, like None)."""
    null = _null(dialect)
    if kind == "datetime":
        return _db_datetimes(s, dialect)
    if kind == "int" or (kind == "bool" and dialect == "sqlite"):
        missing = s.isna().to_numpy(dtype=bool)
        if kind == "bool":
            s = s.where(~missing, False).astype(bool)
        ints = s.to_numpy(dtype=np.int64, na_value=0).astype(object)  # Python ints
        ints[missing] = null
        return ints.tolist()
    if kind == "float":
        floats = s.to_numpy(dtype=np.float64, na_value=np.nan)
        if null is not None:  # NaN already
            return floats.tolist()
        out = floats.astype(object)
        out[np.isnan(floats)] = null
        return out.tolist()
    values = s.tolist()
    if not any(issubclass(t, _NOT_PLAIN) for t in set(map(type, values))):
        return values
    return [null if v is None or v is pd.NA or (isinstance(v, float) and v != v) else v
            for v in values]


def _db_value(v: Any, dialect: str) -> Any:
    if isinstance(v, datetime):
        t = v.astimezone(UTC)
        return t.strftime("%Y-%m-%d %H:%M:%S.%f") if dialect == "sqlite" else t.isoformat()
    return v


def _row_columns(records: pd.DataFrame, extra: dict[str, Any], dialect: str,
                 times: dict[str, np.ndarray] | None = None
                 ) -> tuple[list[str], list[list[Any]], dict[str, Any]]:
    """Column names and values per column of the canonical fields and content_hash; and the
    values of `extra` (the same in every row), as the driver takes them.

    A column that is empty in every row is left out (`null_columns`): the database fills NULL
    itself, and binding a value costs the driver about as much as storing it, so a typical export
    (a third of the canonical fields) loads about twice as fast. `null_columns` names them, for an
    UPDATE, which must still set them. An `extra` value of None is left out the same way.
    `times`: the datetime columns as `db_times` made them already."""
    names: list[str] = []
    columns: list[list[Any]] = []
    for n, kind in (*CANONICAL_FIELDS.items(), *_ANALYSIS.items()):
        if n in records and _has_values(records[n]):
            names.append(n)
            columns.append(_text_values(times[n], dialect) if times and n in times
                           else _db_column(records[n], kind, dialect))
    names.append("content_hash")
    columns.append(records["content_hash"].tolist())
    constants = {k: _db_value(v, dialect) for k, v in extra.items() if v is not None}
    return names, columns, constants


def _has_values(s: pd.Series) -> bool:
    """Whether any value is present. Its first rows usually tell: testing every value of a text
    column for NaN took the main process of a big load ~0.6 s per million rows."""
    return bool(s.iloc[:64].notna().to_numpy(dtype=bool).any() or s.notna().to_numpy(dtype=bool).any())


def _null_columns(names: Iterable[str], extra: dict[str, Any]) -> list[str]:
    """The canonical and `extra` columns `_row_columns` left out because every value is NULL."""
    names = set(names)
    return [n for n in (*CANONICAL_FIELDS, *extra) if n not in names]


def _sql_literal(conn: Connection, value: Any) -> str | None:
    """`value` as SQL text in the connection's dialect (quotes escaped), or None if it is not a
    plain int or text."""
    if not isinstance(value, int | str) or (isinstance(value, str) and "\x00" in value):
        return None
    return str(literal(value).compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))


def _bulk_insert(conn: Connection, table: str, names: list[str], columns: list[list[Any]],
                 constants: dict[str, Any]) -> None:
    """Insert many rows through the driver: COPY on PostgreSQL, executemany elsewhere. SQLAlchemy's
    per-value bind processing is what makes big ORM/Core loads slow; values here are pre-converted.

    `constants` (one value for every row) are written into the INSERT as SQL literals: each
    parameter bound per row costs the driver time. COPY has no literals: there they are values."""
    n = len(columns[0])
    if conn.dialect.name == "postgresql":
        cols = ", ".join([*names, *constants])
        copied = zip(*columns, *(repeat(v, n) for v in constants.values()), strict=True)
        driver = conn.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            for row in copied:
                copy.write_row(row)
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    literals = {k: t for k, v in constants.items() if (t := _sql_literal(conn, v)) is not None}
    bound = {k: v for k, v in constants.items() if k not in literals}
    cols = ", ".join([*names, *bound, *literals])
    one = "(" + ", ".join([mark] * (len(names) + len(bound)) + list(literals.values())) + ")"
    sql = f"INSERT INTO {table} ({cols}) VALUES "
    rows = zip(*columns, *(repeat(v, n) for v in bound.values()), strict=True)
    if conn.dialect.name != "sqlite":
        for part in _chunks(list(rows)):
            conn.exec_driver_sql(sql + one, list(part))
        return
    # SQLite: executemany on the driver's cursor (inside the caller's transaction), fed row by
    # row (a list of a million tuples costs a second), several rows per INSERT.
    driver = conn.connection.driver_connection
    assert driver is not None
    width = len(names) + len(bound)
    per = max(1, min(_VALUES_ROWS, driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    many = n - n % per
    with _page_cache(conn) if n >= CHUNK else nullcontext():
        cur = driver.cursor()
        try:
            if many:
                flat = chain.from_iterable(islice(rows, many))
                cur.executemany(sql + ", ".join([one] * per), zip(*[flat] * (width * per), strict=True))
            cur.executemany(sql + one, rows)  # the rest, one by one
        finally:
            cur.close()


@contextmanager
def _page_cache(conn: Connection) -> Iterator[None]:
    """On SQLite, a page cache large enough that the growing indexes of a big load are not
    spilled and re-read while its transaction is open (KiB: at most 256 MB, taken only as
    needed); the connection's own setting is restored afterwards. Wrap a whole load in it: a
    cache shrunk between two inserts spills the first one's pages."""
    if conn.dialect.name != "sqlite":
        yield
        return
    driver = conn.connection.driver_connection
    assert driver is not None
    cache = driver.execute("PRAGMA cache_size").fetchone()[0]
    driver.execute(f"PRAGMA cache_size = {min(int(cache), -262144)}")
    try:
        yield
    finally:
        driver.execute(f"PRAGMA cache_size = {int(cache)}")


def _bulk_update(conn: Connection, table: str, names: list[str], rows: list[tuple[Any, ...]],
                 nulls: Sequence[str] = ()) -> None:
    """UPDATE ... WHERE id = ? for many rows; the last value of each tuple is the id; the columns
    `nulls` are set to NULL."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sets = ", ".join([f"{n} = {mark}" for n in names] + [f"{n} = NULL" for n in nulls])
    for part in _chunks(rows):
        conn.exec_driver_sql(f"UPDATE {table} SET {sets} WHERE id = {mark}", list(part))


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for k in range(0, len(items), size):
        yield items[k:k + size]


def _existing(conn: Connection, table: Table, source: str, keys: list[str]) -> dict[str, tuple[int, str]]:
    """(id, content_hash) of the stored rows among `keys`: an index lookup for small files,
    one scan of the source for big ones (cheaper than thousands of IN lists)."""
    q = select(table.c.response_id, table.c.id, table.c.content_hash).where(table.c.source == source)
    if len(keys) > 50_000:
        wanted = set(keys)
        return {r: (i, h) for r, i, h in _source_rows(conn, table, source) if r in wanted}
    found: dict[str, tuple[int, str]] = {}
    for part in _chunks(keys, _IN_CHUNK):
        for r, i, h in conn.execute(q.where(table.c.response_id.in_(list(part)))):
            found[r] = (i, h)
    return found


def _source_rows(conn: Connection, table: Table, source: str) -> Iterator[tuple[str, int, str]]:
    """(response_id, id, content_hash) of every stored row of `source`, streamed (ten million
    rows held as one list cost 0.6 GB more). Through the driver's cursor: SQLAlchemy's Row
    objects cost seconds per million rows."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    driver = conn.connection.driver_connection
    assert driver is not None
    cur = driver.cursor()
    try:
        cur.execute(f"SELECT response_id, id, content_hash FROM {table.name} WHERE source = {mark}",
                    (source,))
        while rows := cur.fetchmany(50_000):
            yield from rows
    finally:
        cur.close()


def _store(engine: Engine, source: SourceConfig, prep: Prepared, period: str, imp: ImportSummary,
           content_hash: str, periods: dict[str, Any] | None = None) -> None:
    """Upsert the accepted rows, quarantine the rejected ones and write the import record, in one
    transaction."""
    fb: Table = Feedback.__table__  # type: ignore[attr-defined]
    qt: Table = QuarantinedRow.__table__  # type: ignore[attr-defined]
    it: Table = ImportRecord.__table__  # type: ignore[attr-defined]
    now = utcnow()
    with engine.begin() as conn:
        import_id = conn.execute(insert(it).values(
            source=source.name, file=imp.file, content_hash=content_hash, period=period, started_at=now,
            **dict.fromkeys(COUNT_NAMES, 0), error=None, periods=periods, warnings=prep.warnings or None,
        )).inserted_primary_key[0]  # type: ignore[index]
        imp.import_id = int(import_id)
        imp.warnings = prep.warnings
        records = store_contacts(conn, source.name, prep.records)  # contact details: their own table
        new_idx: list[int] = []
        changed: list[tuple[int, int]] = []
        same = 0
        if len(records):
            keys = records["response_id"].tolist()
            stored = _existing(conn, fb, source.name, keys)
            if not stored:  # none of these ids stored yet: every row is new
                new_idx = list(range(len(keys)))
            else:
                for pos, (rid, h) in enumerate(zip(keys, records["content_hash"].tolist(), strict=True)):
                    hit = stored.get(rid)
                    if hit is None:
                        new_idx.append(pos)
                    elif hit[1] == h:
                        same += 1
                    else:
                        changed.append((pos, hit[0]))
        dialect = conn.dialect.name
        if new_idx:
            fresh = records if len(new_idx) == len(records) else records.iloc[new_idx]
            imp.inserted = fresh.drop(columns="content_hash").assign(source=source.name)
            names, columns, constants = _row_columns(fresh, {
                    "source": source.name, "period": period, "import_id": import_id, "quarantined": False,
                    "loaded_at": now, "updated_at": None, "sentiment": None, "sentiment_score": None,
                    "themes": None,
                }, dialect)
            _bulk_insert(conn, fb.name, names, columns, constants)
        _update_changed(conn, records, changed, {
            "period": period, "import_id": import_id, "updated_at": now,
            # The content changed: the comments stage must look at it again.
            "sentiment": None, "sentiment_score": None, "themes": None,
        })
        _quarantine(conn, qt, source.name, period, prep.rejected, lambda: prep.fixed_keys, imp.file, now)
        imp.rows_read, imp.loaded, imp.updated = prep.rows_read, len(new_idx), len(changed)
        imp.duplicates, imp.rejected = same + prep.repeated, len(prep.rejected)
        imp.out_of_period = prep.out_of_period
        conn.execute(update(it).where(it.c.id == import_id).values(
            rows_read=imp.rows_read, loaded=imp.loaded, updated=imp.updated, duplicates=imp.duplicates,
            rejected=imp.rejected, out_of_period=imp.out_of_period))


def _update_changed(conn: Connection, records: pd.DataFrame, changed: Sequence[tuple[int, int]],
                    extra: dict[str, Any]) -> None:
    """Overwrite stored rows with new content: `changed` = (position in `records`, row id)."""
    if not changed:
        return
    fb: Table = Feedback.__table__  # type: ignore[attr-defined]
    names, columns, constants = _row_columns(records.iloc[[p for p, _ in changed]], extra,
                                             conn.dialect.name)
    ids = [row_id for _, row_id in changed]
    _bulk_update(conn, fb.name, [*names, *constants],
                 list(zip(*columns, *(repeat(v, len(ids)) for v in constants.values()), ids,
                          strict=True)),
                 _null_columns([*names, *constants], extra))


def _quarantine(conn: Connection, qt: Table, source: str, period: str, rejected: Sequence[Rejection],
                fixed: Callable[[], Container[str]], file: str, now: datetime) -> None:
    """Keep every rejected row with its reasons; readmit earlier rejections that parse now
    (`fixed`: the row keys that parse now, asked for only when an entry could be readmitted)."""
    stored = {key: (qid, stage, readmitted) for key, qid, stage, readmitted in conn.execute(
        select(qt.c.row_key, qt.c.id, qt.c.stage, qt.c.readmitted_at)
        .where(and_(qt.c.period == period, qt.c.source == source)))}
    latest = {r.row_key: r for r in rejected}  # a key repeated in the file: its last row
    inserts, updates = [], []
    for key, rej in latest.items():
        values = {"response_id": rej.response_id, "file": file, "line": rej.row, "stage": "collect",
                  "raw": rej.raw, "reasons": rej.reasons, "readmitted_at": None}
        if key in stored:
            updates.append({**{f"v_{k}": v for k, v in values.items()}, "b_id": stored[key][0]})
        else:
            inserts.append({**values, "period": period, "source": source, "row_key": key, "created_at": now})
    for part in _chunks(inserts):
        conn.execute(insert(qt), list(part))
    if updates:
        stmt = update(qt).where(qt.c.id == bindparam("b_id")).values(
            {k[2:]: bindparam(k) for k in updates[0] if k != "b_id"})
        for part in _chunks(updates):
            conn.execute(stmt, list(part))
    candidates = [(key, qid) for key, (qid, stage, readmitted) in stored.items()
                  if stage == "collect" and readmitted is None and key not in latest]
    fixed_keys = fixed() if candidates else frozenset()
    readmit = [qid for key, qid in candidates if key in fixed_keys]
    for part in _chunks(readmit, _IN_CHUNK):
        conn.execute(update(qt).where(qt.c.id.in_(list(part))).values(readmitted_at=now))


def _record_failure(engine: Engine, period: str, imp: ImportSummary, content_hash: str) -> None:
    it: Table = ImportRecord.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        imp.import_id = int(conn.execute(insert(it).values(
            source=imp.source, file=imp.file, content_hash=content_hash, period=period,
            started_at=utcnow(), error=imp.error, **dict.fromkeys(COUNT_NAMES, 0),
        )).inserted_primary_key[0])  # type: ignore[index]


# ------------------------------------------------------------------------------------ sources
def _label(settings: Settings, path: Path) -> str:
    """How a file is named in messages and records: relative to the config when it is beneath it."""
    try:
        return str(path.resolve().relative_to(settings.base_dir.resolve()))
    except ValueError:
        return str(path)


def source_files(settings: Settings, source: SourceConfig) -> list[Path]:
    """The files a source's `path` names; a glob is expanded and taken in name order, so an
    export named later (usually newer) wins when two overlap."""
    assert source.path is not None
    pattern = settings.resolve(source.path)
    if glob.has_magic(str(pattern)):
        matches = sorted(Path(p) for p in glob.glob(str(pattern), recursive=True) if Path(p).is_file())
        if not matches:
            raise SourceError(f"{source.path}: no file matches (looked for {pattern})")
        return matches
    if not pattern.is_file():
        raise SourceError(f"{source.path}: file not found (looked for {pattern})")
    return [pattern]


def read_file(settings: Settings, source: SourceConfig, path: Path, label: str,
              data: bytes | None = None) -> RawTable:
    """One file of a file-based source, read by its kind's reader (`data`: its bytes, if read)."""
    if source.kind == "csv":
        return readers.read_csv(path, source.encoding, label, data)
    if source.kind == "excel":
        return readers.read_excel(path, source.sheet, label, data)
    if source.kind == "json":
        return readers.read_json(path, source.encoding, label, data)
    return readers.read_jsonl(path, source.encoding, label, data)


def collect_source(settings: Settings, engine: Engine, source: SourceConfig, period: str
                   ) -> list[ImportSummary]:
    """Load one configured source (every file its glob matches, or its SQL query).

    A file whose exact content was imported before under the same mapping is not parsed again
    when that says nothing can change for this period (see `_reuse`)."""
    loaders: list[tuple[str, Path | None]] = []
    if source.kind == "sql":
        assert source.url is not None and source.query is not None
        url = readers.resolve_sql_url(source.url, settings.base_dir)
        loaders.append((f"sql:{readers.mask_url(url)}", None))
    else:
        try:
            files = source_files(settings, source)
        except SourceError as exc:
            imp = ImportSummary(source.name, source.path or "", error=str(exc))
            _record_failure(engine, period, imp, "")
            return [imp]
        loaders.extend((_label(settings, path), path) for path in files)
    fingerprint = _fingerprint(settings, source)
    done: list[ImportSummary] = []
    for label, path in loaders:
        if path is not None and _is_big(source, path):
            big = _collect_big(settings, engine, source, path, label, fingerprint, period)
            if big is not None:
                done.append(big)
                continue
        imp = ImportSummary(source.name, label)
        digest = ""
        try:
            if path is None:
                raw = readers.read_sql(url, source.query or "", label)
            else:
                data = functools.cache(path.read_bytes)
                digest = readers.file_digest(data())
                if _reuse(engine, source, label, data, digest, fingerprint, period, imp):
                    done.append(imp)
                    continue
                raw = read_file(settings, source, path, label, data())
                data.cache_clear()
            digest, imp.encoding = raw.content_hash, raw.encoding
            prep = prepare(settings, source, raw, period, label)
        except SourceError as exc:
            imp.error = str(exc)
        except Exception as exc:  # an unforeseen shape of data must not stop the other sources
            imp.error = f"{label}: cannot be read ({type(exc).__name__}: {exc})"
        if imp.error:
            _record_failure(engine, period, imp, digest)
        else:
            _store(engine, source, prep, period, imp, digest, {
                "config": fingerprint, "rows": prep.periods, "undated": prep.undated, "reused": None})
        done.append(imp)
    return done


class _SeenIds:
    """The 64-bit hashes of the response ids inserted so far, in a few sorted arrays merged like a
    binary counter: 8 bytes per id (ten million ids: 80 MB), cheap to add to and to search."""

    def __init__(self) -> None:
        self._levels: list[np.ndarray] = []

    def add(self, hashes: np.ndarray) -> None:
        if not len(hashes):
            return
        level = np.sort(hashes)
        while self._levels and len(self._levels[-1]) <= len(level):
            level = np.sort(np.concatenate([self._levels.pop(), level]))
        self._levels.append(level)

    def may_hold(self, hashes: np.ndarray) -> np.ndarray:
        """Per hash: True if seen (or a 2**-64 coincidence: the caller confirms a hit)."""
        order = np.argsort(hashes)
        needles = hashes[order]  # sorted: the searches walk each level once
        found = np.zeros(len(hashes), dtype=bool)
        for level in self._levels:
            pos = np.minimum(np.searchsorted(level, needles), len(level) - 1)
            found[order[level[pos] == needles]] = True
        return found


class _ChunkedImport:
    """What `_store` does for a whole file, done chunk by chunk in one transaction (a file read
    by `tasks.chunked`). Counts, quarantine and stored rows come out as for the whole file:

    - a response id repeated in a later chunk: the later copy wins, the earlier counts as
      repeated. A row this import inserted is rewritten in place (so the rows' order differs from
      a whole-file load, and `inserted` is left None: the month is read back); a stored row is
      judged by its final copy. One case cannot be undone in place - an earlier copy changed a
      stored row and a later one restores it - and gives way (`chunked.GiveWay`): the file is
      then read whole;
    - the quarantine is written at the end, from every chunk's rejections."""

    def __init__(self, conn: Connection, source: str, period: str, import_id: int, now: datetime,
                 analysis: InsertAnalysis | None = None) -> None:
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
        self._insert(records, piece.times, new)
        self.seen.add(hashes[new])
        _update_changed(self.conn, records, changed, {
            "period": self.period, "import_id": self.import_id, "updated_at": self.now,
            "sentiment": None, "sentiment_score": None, "themes": None})
        _update_changed(self.conn, records, rewrite, dict.fromkeys(_ANALYSIS))  # the comment may differ

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
                from cxloop.tasks.chunked import GiveWay

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

    def _insert(self, records: pd.DataFrame, times: dict[str, np.ndarray], new: list[int]) -> None:
        if not new:
            return
        if len(new) < len(records):
            records = records.iloc[new]
            times = {name: text[new] for name, text in times.items()}
        analysed = self.analysis.columns(records) if self.analysis else None
        if analysed:  # as object columns: pandas would make text ones `str`, with NaN for None
            records = records.assign(**{k: pd.Series(v, index=records.index, dtype=v.dtype)
                                        for k, v in analysed.items()})
        names, columns, _ = _row_columns(records, {}, self.conn.dialect.name, times)
        _bulk_insert(self.conn, _FB.name, names, columns, self.constants)
        self.counts["loaded"] += len(new)
        if self.counts["loaded"] > month.KEEP_ROWS:  # a month too big to keep: not handed over
            self.frames, self.hand_over = [], False
        if self.hand_over:
            self.frames.append(records.drop(columns="content_hash").assign(source=self.source))

    def finish(self, imp: ImportSummary, file: str, fingerprint: str) -> None:
        """Quarantine, counts and the import record."""
        qt: Table = QuarantinedRow.__table__  # type: ignore[attr-defined]
        it: Table = ImportRecord.__table__  # type: ignore[attr-defined]
        if self.analysis:
            self.analysis.finish(self.conn, self.period)
        _quarantine(self.conn, qt, self.source, self.period, self.rejected, lambda: self.fixed, file,
                    self.now)
        c = self.counts
        imp.rows_read, imp.loaded, imp.updated = c["rows_read"], c["loaded"], c["updated"]
        imp.duplicates, imp.rejected = c["same"] + c["repeated"], len(self.rejected)
        imp.out_of_period = c["out_of_period"]
        if self.frames and self.hand_over and not self.rewritten:
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
    from cxloop.tasks import chunked

    return chunked.wanted(source, path)


def _collect_big(settings: Settings, engine: Engine, source: SourceConfig, path: Path, label: str,
                 fingerprint: str, period: str) -> ImportSummary | None:
    """One big CSV file, read and prepared in chunks by a worker process (`tasks.chunked`) while
    this process stores each chunk: the two overlap, and memory stays bounded. The same import
    as `collect_source` makes of the whole file; None when the file must be read whole after all
    (the transaction is then rolled back)."""
    from cxloop.tasks import chunked
    from cxloop.tasks.comments import InsertAnalysis

    imp = ImportSummary(source.name, label)
    try:
        feed = chunked.Feed(settings, source, path, label, period, engine.dialect.name,
                            _open_quarantine(engine, source.name, period))
    except OSError:  # no second process here (the fork server cannot start): read it whole
        return None
    with feed:
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        data = functools.cache(path.read_bytes)  # read only if `_reuse` must search the file
        if _reuse(engine, source, label, data, digest, fingerprint, period, imp):
            return imp
        data.cache_clear()
        it: Table = ImportRecord.__table__  # type: ignore[attr-defined]
        now = utcnow()
        try:
            with engine.begin() as conn:
                import_id = int(conn.execute(insert(it).values(
                    source=source.name, file=label, content_hash=digest, period=period, started_at=now,
                    **dict.fromkeys(COUNT_NAMES, 0), error=None, periods=None,
                )).inserted_primary_key[0])  # type: ignore[index]
                store = _ChunkedImport(conn, source.name, period, import_id, now,
                                       InsertAnalysis.start(conn, settings, period))
                with _page_cache(conn):
                    for piece in feed:
                        store.add(piece)
                store.finish(imp, label, fingerprint)
                imp.import_id = import_id
        except chunked.GiveWay:
            return None
        except SourceError as exc:
            imp = ImportSummary(source.name, label, error=str(exc),
                                encoding=feed.encoding if feed.read else None)
            _record_failure(engine, period, imp, digest)
            return imp
        imp.encoding = feed.encoding
    return imp


# Bump when `prepare` maps the same file differently: earlier imports then no longer vouch for it.
_PREPARE_VERSION = 2  # 2: NUL characters removed from cells (issue 21)


def _fingerprint(settings: Settings, source: SourceConfig) -> str:
    """What besides the file's bytes decides its canonical rows: the source's mapping, the time
    zone, the department ownership (derived departments) and the mapping code's version."""
    spec = {"v": _PREPARE_VERSION, "source": source.model_dump(mode="json"), "tz": str(settings.tz),
            "departments": {k: d.model_dump(mode="json") for k, d in settings.departments.items()}}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _may_hold(source: SourceConfig, data: bytes, response_id: str) -> bool:
    """Could the file mention this response id? A byte search in the usual encodings (and JSON
    escapes); compressed Excel files cannot be searched, so they may hold anything."""
    if source.kind == "excel":
        return True
    forms = {response_id, json.dumps(response_id)[1:-1]}
    for text in forms:
        for enc in ("utf-8", "gb18030", "utf-16-le", "utf-16-be"):
            try:
                if text.encode(enc) in data:
                    return True
            except UnicodeEncodeError:
                continue
    return False


def _reuse(engine: Engine, source: SourceConfig, label: str, data: Callable[[], bytes], digest: str,
           fingerprint: str, period: str, imp: ImportSummary) -> bool:
    """Record a file without parsing it, when an earlier import of the same bytes under the same
    mapping shows that parsing it would change nothing for `period`:

    - it has no row for this period (every row is dated, in other months), or
    - the latest import of this file for this period was of these bytes: its rows are stored.

    The import record is written as the parse would have written it (rows_read = the file's
    rows; out_of_period, rejected as before; the rows stored earlier count as duplicates), with
    `periods.reused` naming the import it relied on. Not used when the source has a collect-stage
    quarantine entry for the period that a parse of this file could change: one of this file's
    own that another file readmitted, or another file's whose response id occurs in this file
    (a parse would readmit it if the row is valid here).
    """
    it: Table = ImportRecord.__table__  # type: ignore[attr-defined]
    qt: Table = QuarantinedRow.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        earlier = conn.execute(
            select(it.c.id, it.c.period, it.c.content_hash, it.c.periods, it.c.rows_read, it.c.loaded,
                   it.c.updated, it.c.duplicates, it.c.rejected, it.c.out_of_period)
            .where(it.c.source == source.name, it.c.file == label, it.c.error.is_(None))
            .order_by(it.c.id.desc())).all()
        vouched = [r for r in earlier if r.content_hash == digest and isinstance(r.periods, dict)
                   and r.periods.get("config") == fingerprint]
        if not vouched:
            return False
        last_here = next((r for r in earlier if r.period == period), None)
        ref = None
        if last_here is not None and last_here in vouched:
            ref = last_here
            counts = {"rows_read": ref.rows_read, "loaded": 0, "updated": 0,
                      "duplicates": ref.loaded + ref.updated + ref.duplicates, "rejected": ref.rejected,
                      "out_of_period": ref.out_of_period}
        else:
            latest = vouched[0]
            info = latest.periods
            if int(info.get("undated", 1)) or int((info.get("rows") or {}).get(period, 0)):
                return False
            ref = latest
            counts = {"rows_read": ref.rows_read, "loaded": 0, "updated": 0, "duplicates": 0,
                      "rejected": 0, "out_of_period": ref.rows_read}
        entries = conn.execute(
            select(qt.c.response_id, qt.c.file, qt.c.readmitted_at)
            .where(qt.c.period == period, qt.c.source == source.name, qt.c.stage == "collect")).all()
        for rid, file, readmitted in entries:
            if file == label:
                if readmitted is not None:  # a parse would put this file's rejection back
                    return False
            elif rid is not None and _may_hold(source, data(), str(rid)):
                return False  # a parse might readmit (or take over) another file's rejection
    periods = {**ref.periods, "reused": int(ref.id)}
    with engine.begin() as conn:
        imp.import_id = int(conn.execute(insert(it).values(
            source=source.name, file=label, content_hash=digest, period=period, started_at=utcnow(),
            error=None, periods=periods, **counts,
        )).inserted_primary_key[0])  # type: ignore[index]
    for name, value in counts.items():
        setattr(imp, name, int(value))
    return True


def collect_period(settings: Settings, engine: Engine, period: str) -> CollectSummary:
    """Read every `[[sources]]` entry and load the responses submitted in `period`."""
    summary = CollectSummary(parse_period(period))
    for source in settings.sources:
        summary.imports.extend(collect_source(settings, engine, source, summary.period))
    return summary


def list_imports(engine: Engine, period: str | None = None, source: str | None = None,
                 limit: int | None = None) -> list[dict[str, Any]]:
    """Import records, newest first, for `cxloop imports`."""
    it: Table = ImportRecord.__table__  # type: ignore[attr-defined]
    q = select(it).order_by(it.c.id.desc())
    if period:
        q = q.where(it.c.period == period)
    if source:
        q = q.where(it.c.source == source)
    if limit:
        q = q.limit(limit)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    for r in rows:
        r["started_at"] = _aware(r["started_at"])
    return rows


def _aware(v: datetime | None) -> datetime | None:
    return v.replace(tzinfo=UTC) if v is not None and v.tzinfo is None else v


def feedback_count(engine: Engine, period: str) -> int:
    fb: Table = Feedback.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        q = select(func.count()).select_from(fb).where(fb.c.period == period)
        return int(conn.execute(q).scalar_one())


def write_example_project(directory: Path, force: bool = False) -> list[Path]:
    """Copy the commented example `cxloop.toml` and its sample data into `directory`.

    Refuses to overwrite an existing file unless `force`: an admin's edited config is worth more
    than the example. Returns the files written.
    """
    from cxloop.paths import shipped

    src = shipped("templates/init")
    files = sorted(p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    targets = [(p, directory / p.relative_to(src)) for p in files]
    clash = [str(t) for _, t in targets if t.exists()]
    if clash and not force:
        raise FileExistsError(f"{', '.join(clash)} already exist(s); use --force to overwrite")
    written = []
    for s, t in targets:
        try:
            t.parent.mkdir(parents=True, exist_ok=True)
            t.write_bytes(s.read_bytes())
        except OSError as exc:  # read-only folder, a file where a folder should be, a full disk
            raise CannotWrite(f"cannot write {t}: {exc.strerror or exc}") from None
        written.append(t)
    return written


class CannotWrite(OSError):
    """`cxloop init` could not write one of its files; the message names it."""
