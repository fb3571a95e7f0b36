"""The driver's bulk paths: multi-row INSERT on SQLite, COPY on PostgreSQL, keyed UPDATE, and
look-ups of the keys already stored, in bounded chunks.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from itertools import chain, islice, repeat
from typing import Any

from sqlalchemy import Connection, Table, select

from cxloop.tasks.collect.values import _sql_literal

CHUNK = 20_000  # rows per executemany: bounded memory, few round trips
# Rows per INSERT on SQLite: Python's sqlite3 spends ~2.5 us per statement it runs (measured
# here: 1M rows of 20 values took 3.3 s one row per INSERT, 1.5 s fifty rows per INSERT).
_VALUES_ROWS = 50
_IN_CHUNK = 1_000  # keys per IN (...) lookup


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
