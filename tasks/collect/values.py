"""Canonical columns turned into the values the database driver takes (datetimes as text on
SQLite, NULLs, text without NUL), column by column.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, literal

from cxloop.models import (
    CANONICAL_FIELDS,
)

# A comment's analysis, which collect writes with new rows of repeated comments (`InsertAnalysis`).
_ANALYSIS = {"sentiment": "text", "sentiment_score": "float", "themes": "text"}


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
    worker (`tasks.collect.chunked`), as cheap to pickle as the timestamps; formatting them took the main
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
