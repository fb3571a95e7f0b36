"""Source readers: turn one export (CSV, Excel, JSON, JSONL, SQL query) into a raw table.

Readers only read; mapping to the canonical record happens in `tasks.collect`. Every reader
returns the source's own columns untouched (CSV cells as text, Excel/SQL cells in their native
types) plus the row number of each record as a person would find it: the spreadsheet row for
CSV/Excel (header = row 1), the line for JSONL, the record number for JSON arrays and SQL results.
A file that cannot be read raises `SourceError` whose message names the file and, where known,
the line or column, so the admin can fix the export without reading a traceback.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import json
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd
from charset_normalizer import from_bytes
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import SQLAlchemyError

# Chinese spreadsheet exports are GBK more often than not; GB18030 is its superset and decodes
# every GBK file, so it is tried right after UTF-8 (with and without BOM).
TRY_ENCODINGS = ("utf-8", "gb18030")
_SNIFF_DELIMITERS = ",;\t|"


class SourceError(Exception):
    """A source that cannot be read at all; the message names the file and the line or column."""


@dataclass
class RawTable:
    """The records of one source file, as read, with the row number of each record."""

    frame: pd.DataFrame
    rows: np.ndarray  # row / line number of each record, for messages and quarantine
    content_hash: str
    encoding: str | None = None
    # False when the file's bytes hold no NUL (then no cell can): mapping skips its per-cell search.
    may_hold_nul: bool = True


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _undetectable(data: bytes, label: str) -> SourceError:
    """The error for bytes no encoding fits (random bytes named `.csv`, a file that mixes UTF-8
    and GBK lines): it names the line where the file stops being text in the encoding that held
    out longest, since that is where someone has to look (the pasted line of a mixed file)."""
    stops: dict[str, int] = {}
    for enc in TRY_ENCODINGS:
        try:
            data.decode(enc)
        except UnicodeDecodeError as exc:
            stops[enc] = _line_of(data, exc.start)
    enc, line = max(stops.items(), key=lambda item: item[1])
    detail = ", ".join(f"{e.upper()} from line {n}" for e, n in stops.items())
    return SourceError(f"{label}: line {line}: cannot detect the text encoding (not {detail}; "
                       "random bytes, or lines in different encodings?); fix the file or set "
                       "`encoding` on the source")


def detect_encoding(data: bytes, label: str = "file") -> str:
    """The encoding of a text export: BOM first, then strict UTF-8, then GB18030, then a guess.

    A strict decode is exact where a statistical guess is not: a file that decodes as UTF-8
    is UTF-8, and GBK exports (the usual Excel "CSV" in China) decode as GB18030.
    """
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for enc in TRY_ENCODINGS:
        try:
            data.decode(enc)
        except UnicodeDecodeError:
            continue
        return enc

    best = from_bytes(data[: 4 << 20]).best()
    if best is None:
        raise _undetectable(data, label)
    return str(best.encoding)


# GB18030 decodes nearly any bytes, so a UTF-8 export with one GBK line pasted in would "decode"
# as GB18030 into garbage. A file that is valid UTF-8 up to its first bad byte, with at least this
# many non-ASCII characters before it, is taken for such a mixed file and refused: a GBK export
# almost never starts with that many characters that happen to be valid UTF-8 as well.
MIXED_UTF8_CHARS = 4
_UTF8_LEAD = re.compile(rb"[\xc2-\xf4]")


def looks_mixed(data: bytes | memoryview | Any, stop: int) -> bool:
    """Whether `data[:stop]` (valid UTF-8) holds `MIXED_UTF8_CHARS` non-ASCII characters; `data`
    may be an mmap (the chunked reader's big files), nothing is copied."""
    leads = _UTF8_LEAD.finditer(data, 0, stop)
    return sum(1 for _ in itertools.islice(leads, MIXED_UTF8_CHARS)) >= MIXED_UTF8_CHARS


def mixed_error(data: bytes, stop: int, label: str) -> SourceError:
    return SourceError(f"{label}: line {_line_of(data, stop)}: not UTF-8 like the lines before it (a "
                       "file mixing encodings, e.g. a GBK line in a UTF-8 export?); save the file in "
                       "one encoding, or set `encoding` on the source if all of it is one other encoding")


def decode_text(data: bytes, encoding: str, label: str) -> tuple[str, str]:
    """Decode the whole file; `auto` detects. A bad byte is reported with its line number."""
    if encoding.lower() == "auto" and not data.startswith(codecs.BOM_UTF8):
        for enc in TRY_ENCODINGS:  # the successful trial decode is the result: no second pass
            try:
                return data.decode(enc), enc
            except UnicodeDecodeError as exc:
                if enc == "utf-8" and looks_mixed(data, exc.start):
                    raise mixed_error(data, exc.start, label) from None
                continue
    enc = detect_encoding(data, label) if encoding.lower() == "auto" else encoding
    if enc.lower().replace("_", "-") in ("utf-8", "utf8") and data.startswith(codecs.BOM_UTF8):
        enc = "utf-8-sig"
    try:
        return data.decode(enc), enc
    except LookupError:
        raise SourceError(f"{label}: unknown encoding {enc!r}") from None
    except UnicodeDecodeError as exc:
        line = _line_of(data, exc.start)
        raise SourceError(f"{label}: line {line}: not valid {enc} text ({exc.reason}); "
                          f"set `encoding` on the source or use `auto`") from None


# Bounds of a CSV header: a feedback export has tens of columns. A 54 MB file of one line (13.6 M
# "columns") kept collect at 100% CPU for over ten minutes in the delimiter sniffer and pandas.
MAX_HEADER_CHARS = 1_000_000
MAX_COLUMNS = 2_000
_SNIFF_CHARS = 64_000


def header_line(text: str, label: str) -> str:
    """The header (line 1) of a CSV text, refused with an error naming the file when it is longer
    than `MAX_HEADER_CHARS` or has more than `MAX_COLUMNS` fields; found without splitting (or
    copying) the whole text."""
    end = text.find("\n", 0, MAX_HEADER_CHARS + 1)
    if end < 0 and len(text) > MAX_HEADER_CHARS:
        raise SourceError(f"{label}: line 1 (the header) is longer than {MAX_HEADER_CHARS:,} characters; "
                          "not a CSV export with a header row")
    header = text if end < 0 else text[:end]
    fields = max(header.count(sep) for sep in _SNIFF_DELIMITERS) + 1
    if fields > MAX_COLUMNS:
        raise SourceError(f"{label}: line 1 (the header) has {fields:,} fields; at most {MAX_COLUMNS:,} "
                          "columns are read (is it a header row, and the right delimiter?)")
    return header


def _sniff_delimiter(text: str) -> str:
    """The delimiter of the header line (only its start is sniffed: the sniffer's regular
    expressions slow down sharply on long lines)."""
    header = text.split("\n", 1)[0][:_SNIFF_CHARS]
    try:
        return csv.Sniffer().sniff(header, delimiters=_SNIFF_DELIMITERS).delimiter
    except csv.Error:
        return ","


def _as_objects(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns with None for empty cells: one representation for every reader."""
    out = frame.astype(object, copy=False)
    if not out.isna().to_numpy().any():
        return out
    return out.where(out.notna(), None)


def file_digest(data: bytes) -> str:
    """The content hash of a file-based source (what `RawTable.content_hash` holds for it)."""
    return hashlib.sha256(data).hexdigest()


_PANDAS_LINE = re.compile(r"\bline (\d+)\b")


def parser_error(exc: Exception, label: str) -> SourceError:
    """pandas' tokenizer error in the `file: line N: ...` form every other reader error has."""
    text = " ".join(str(exc).split())
    found = _PANDAS_LINE.search(text)
    if found is None:
        return SourceError(f"{label}: not a readable CSV: {text}")
    detail = text.replace("Error tokenizing data. C error: ", "")
    return SourceError(f"{label}: line {found.group(1)}: not a readable CSV ({detail})")


def read_csv(path: Path, encoding: str, label: str, data: bytes | None = None) -> RawTable:
    data = path.read_bytes() if data is None else data
    text, enc = decode_text(data, encoding, label)
    if not text.strip():
        raise SourceError(f"{label}: the file is empty (no header row)")
    sep = _sniff_delimiter(header_line(text, label))
    # The decode above proved the encoding; the parser decodes the bytes again itself (for UTF-8
    # in C), which is faster than handing it the text. Every cell is text, a missing one "" (no
    # NA detection: blanks and null markers are mapped later, in one place).
    source = io.BytesIO(data) if enc.lower().replace("_", "-").startswith("utf-8") else io.StringIO(text)
    del text
    try:
        frame = pd.read_csv(source, dtype=object, keep_default_na=False, na_filter=False, sep=sep,
                            skipinitialspace=False, encoding=enc if isinstance(source, io.BytesIO) else None)
    except pd.errors.ParserError as exc:
        raise parser_error(exc, label) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return RawTable(frame, np.arange(2, len(frame) + 2), file_digest(data), enc, b"\x00" in data)


def read_excel(path: Path, sheet: str | int | None, label: str, data: bytes | None = None) -> RawTable:
    data = path.read_bytes() if data is None else data
    try:
        frame = pd.read_excel(io.BytesIO(data), sheet_name=sheet if sheet is not None else 0,
                              dtype=object)
    except ValueError as exc:  # unknown sheet, not an Excel file
        raise SourceError(f"{label}: cannot read as Excel: {exc}") from None
    except Exception as exc:  # zip/xml errors of a corrupt or mislabelled file
        raise SourceError(f"{label}: not a readable Excel file ({type(exc).__name__}: {exc})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return RawTable(_as_objects(frame), np.arange(2, len(frame) + 2), file_digest(data))


def _records_frame(records: list[Any], label: str, rows: np.ndarray) -> pd.DataFrame:
    for rec, row in zip(records, rows, strict=True):
        if not isinstance(rec, dict):
            raise SourceError(f"{label}: record {row}: expected a JSON object, got {type(rec).__name__}")
    # Nested objects become dotted columns ("customer.id"), so they can be mapped directly.
    frame = pd.json_normalize(records, sep=".") if records else pd.DataFrame()
    return _as_objects(frame)


def read_json(path: Path, encoding: str, label: str, data: bytes | None = None) -> RawTable:
    data = path.read_bytes() if data is None else data
    text, enc = decode_text(data, encoding, label)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{label}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if isinstance(doc, dict):
        # {"data": [...]} / {"responses": [...]}: the one list inside is the records.
        lists = [v for v in doc.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise SourceError(f"{label}: expected a JSON array of records (or an object holding one)")
        doc = lists[0]
    if not isinstance(doc, list):
        raise SourceError(f"{label}: expected a JSON array of records")
    rows = np.arange(1, len(doc) + 1)
    return RawTable(_records_frame(doc, label, rows), rows, file_digest(data), enc, b"\x00" in data)


def read_jsonl(path: Path, encoding: str, label: str, data: bytes | None = None) -> RawTable:
    data = path.read_bytes() if data is None else data
    text, enc = decode_text(data, encoding, label)
    records: list[Any] = []
    lines: list[int] = []
    for no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise SourceError(f"{label}: line {no}: not valid JSON ({exc.msg})") from None
        lines.append(no)
    rows = np.asarray(lines, dtype=int)
    return RawTable(_records_frame(records, label, rows), rows, file_digest(data), enc, b"\x00" in data)


# The password of `scheme://user:password@host` (up to the last @ before the path or query) and the
# value of a secret query parameter (`?password=...`, libpq's `sslpassword`, tokens).
_PASSWORD = re.compile(r"(://[^:/@?#]*:)[^/?#]*@")
_SECRET_PARAM = re.compile(r"([?&;](?:ssl)?(?:password|passwd|pwd|secret|token|api_?key)=)[^&;#]*",
                           re.IGNORECASE)


def mask_url(url: str) -> str:
    """A database URL safe to print and store: its password and secret parameters become ***."""
    return _SECRET_PARAM.sub(r"\1***", _PASSWORD.sub(r"\1***@", url))


def scrub_url_secrets(text: str, url: str) -> str:
    """`text` (a driver's error message) without the URL's secrets, in case it quotes them."""

    secrets = [m.group(0)[len(m.group(1)):-1] for m in _PASSWORD.finditer(url)]
    secrets += [m.group(0)[len(m.group(1)):] for m in _SECRET_PARAM.finditer(url)]
    text = text.replace(url, mask_url(url))
    for secret in sorted({v for s in secrets for v in (s, unquote(s)) if len(v) >= 3}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def resolve_sql_url(url: str, base_dir: Path) -> str:
    """Relative SQLite paths are relative to the config file, like every other path in it."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str(base_dir / url[len(prefix):])
    return url


def _read_only_engine(url: str) -> Engine:
    """An engine whose connections cannot write, whatever the source's query says.

    SQLite opens the file read-only (`mode=ro`, and `query_only` for in-memory or URI forms);
    PostgreSQL starts every transaction read-only (`default_transaction_read_only`). The query
    itself runs in a read-only transaction too (`_query_frame`)."""


    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            target = f"file:{quote(os.path.abspath(database))}?mode=ro"
            engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(target, uri=True))
        else:
            engine = create_engine(parsed)

        def query_only(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA query_only = ON")

        event.listen(engine, "connect", query_only)
        return engine
    if backend == "postgresql":
        options = " ".join(filter(None, [str(parsed.query.get("options") or ""),
                                         "-c default_transaction_read_only=on"]))
        return create_engine(parsed.difference_update_query(["options"]),
                             connect_args={"options": options})
    return create_engine(parsed)


def _query_frame(conn: Connection, query: str) -> pd.DataFrame:
    """The rows of the source's one SELECT, read in a read-only transaction.

    On PostgreSQL with psycopg the query becomes a cursor declared in a prepared statement: the
    server then accepts exactly one SELECT or VALUES (not `DELETE ...; COMMIT; SELECT ...`, a
    `COPY ... TO PROGRAM` or a data-modifying WITH), and `SET TRANSACTION READ ONLY` covers
    functions called by it. SQLite's driver runs one statement per call and the connection is
    read-only."""

    if conn.dialect.name != "postgresql":
        return pd.read_sql_query(text(query), conn)
    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
    if conn.dialect.driver != "psycopg":
        return pd.read_sql_query(text(query), conn)
    raw: Any = conn.connection.dbapi_connection
    with raw.cursor() as cur:
        cur.execute("DECLARE cxloop_source NO SCROLL CURSOR FOR " + query, prepare=True)
        cur.execute("FETCH ALL FROM cxloop_source")
        columns = [d.name for d in cur.description or []]
        frame = pd.DataFrame.from_records(cur.fetchall(), columns=columns, coerce_float=True)
    for name in frame.columns:  # what pandas' read_sql does with time zone aware columns
        if isinstance(frame[name].dtype, pd.DatetimeTZDtype):
            frame[name] = frame[name].dt.tz_convert("UTC")
    return frame


def read_sql(url: str, query: str, label: str) -> RawTable:
    """The rows of a SQL source's query, read without any power to change the source database."""

    try:
        engine = _read_only_engine(url)
    except Exception as exc:
        raise SourceError(f"{label}: bad database url: {scrub_url_secrets(str(exc), url)}") from None
    driver_error: type[Exception] = getattr(engine.dialect.loaded_dbapi, "Error", SQLAlchemyError)
    try:
        with engine.connect() as conn:
            frame = _query_frame(conn, query)
    except (SQLAlchemyError, pd.errors.DatabaseError, OSError, driver_error) as exc:
        # pandas and SQLAlchemy wrap the driver's error; its first line is the database's message.
        cause = exc.__cause__ or exc
        lines = str(getattr(cause, "orig", None) or cause).strip().splitlines() or [type(exc).__name__]
        raise SourceError(f"{label}: query failed: {scrub_url_secrets(lines[0], url)}") from None
    finally:
        engine.dispose()
    frame.columns = [str(c) for c in frame.columns]
    digest = hashlib.sha256(
        pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes()
    ).hexdigest()
    return RawTable(_as_objects(frame), np.arange(1, len(frame) + 1), digest)
