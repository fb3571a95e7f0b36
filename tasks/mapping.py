"""Mapping: one source's records -> canonical typed rows of a period, and what was rejected.

Pure functions of the records and the configuration (no database): the whole-file collect and
collect's chunk worker (`tasks.collect.chunked`) both run `prepare`. Mapping and type coercion are
vectorised, and each distinct value of a repetitive column is converted once: a million rows
take seconds. Only what cannot be turned into the canonical types is rejected (an unparseable
date or score, a missing key field, a record with neither score nor comment); ranges and
vocabularies are the data-quality gate's job (`tasks/validate/`).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property
from itertools import repeat
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from cxloop.config import Settings, SourceConfig
from cxloop.models import CANONICAL_FIELDS, CONTACT_FIELDS, MAPPED_FIELDS, REQUIRED_FIELDS, SCORE_FIELDS
from cxloop.periods import period_bounds
from cxloop.tasks.ratings import Ratings, ratings_from_frame
from cxloop.tasks.readers import RawTable, SourceError

NULL_TOKENS = frozenset({"", "null", "none", "nan", "n/a", "#n/a", "-"})
TRUE_TOKENS = frozenset({"1", "true", "t", "yes", "y", "是", "真", "对"})
FALSE_TOKENS = frozenset({"0", "false", "f", "no", "n", "否", "假", "错"})
# Tried in order after ISO 8601 (which pandas also reads with "/" separators, e.g. 2026/10/3 14:05).
DATE_FORMATS = (
    "%Y年%m月%d日 %H:%M:%S", "%Y年%m月%d日 %H:%M", "%Y年%m月%d日 %H时%M分", "%Y年%m月%d日",
    "%Y.%m.%d %H:%M:%S", "%Y.%m.%d %H:%M", "%Y.%m.%d", "%Y%m%d",
    "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p", "%m/%d/%Y",
    "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y",
)
# An explicit offset after a time of day: "…14:05:00Z", "…14:05+08:00", "…T14:05:00.5-0500".
_AWARE = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)
_EXCEL_EPOCH = datetime(1899, 12, 30)
_INT_LIMIT = 2**31 - 1
# A submitted_at further than this from the month being collected is a typo or a broken export
# (2099, 0001, 9999, Excel's 1899-12-30), not another month's answer: it is quarantined with a
# reason instead of passing as out of period. Relative to the period, so the rule never depends
# on the day collect runs, and wide enough for any real history export.
PLAUSIBLE_YEARS = 20
_DATETIME_FIELDS = [f for f, k in CANONICAL_FIELDS.items() if k == "datetime"]


@dataclass
class Rejection:
    row_key: str
    response_id: str | None
    row: int
    raw: dict[str, Any]
    reasons: list[dict[str, Any]]


@dataclass
class Prepared:
    """One file mapped to canonical rows and split into accepted / rejected / other months."""

    records: pd.DataFrame  # accepted rows of the period, one per response_id, + content_hash
    rejected: list[Rejection]
    rows_read: int
    out_of_period: int
    repeated: int  # earlier copies of a response_id repeated later in the same file
    periods: dict[str, int] = field(default_factory=dict)  # dated rows per "YYYY-MM" (any state)
    undated: int = 0  # rows without a usable submitted_at: rejected in every period
    label: str = ""
    ok_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))  # rows that parse:
    ok_lines: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="int64"))  # ids, lines
    warnings: dict[str, Any] = field(default_factory=dict)  # for the import record (see below)
    ratings: Ratings | None = None  # the records' driver ratings, row for row ([sources.drivers])

    @cached_property
    def fixed_keys(self) -> set[str]:
        """Row keys that parse now: their collect-stage quarantine is readmitted. Built only when
        a quarantine entry asks (two million strings for a million-row file)."""
        fixed = set(map(str, self.ok_ids.tolist()))
        fixed.update(map(f"{self.label}:".__add__, map(str, self.ok_lines.tolist())))
        return fixed


# ------------------------------------------------------------------------------ value coercion
def _key(value: Any) -> str:
    """The form a source value is matched in (value maps, booleans): trimmed, case-folded text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return unicodedata.normalize("NFKC", str(value)).strip().casefold()


def _is_str(arr: np.ndarray) -> np.ndarray:
    return np.fromiter(map(isinstance, arr, repeat(str)), dtype=bool, count=len(arr))


def _objects(values: Sequence[Any]) -> np.ndarray:
    """A 1-d object array of `values` as they are (numpy would unpack lists and tuples)."""
    return np.fromiter(values, dtype=object, count=len(values))


def _per_value(s: pd.Series, fn: Callable[[Any], Any]) -> tuple[np.ndarray, list[Any]]:
    """Apply `fn` once per distinct value, not once per row: an export of a million rows has a
    few dozen distinct channels or scores, and this is what keeps mapping fast. None stays None.

    -> (codes, table): row i's result is `table[codes[i]]`. Distinct values are found by pandas'
    hash table (equal values such as 1 and 1.0 share the first one's result, as a dict would)."""
    arr = s.to_numpy(dtype=object)
    codes, uniques = pd.factorize(arr)
    table = [fn(v) for v in uniques.tolist()]
    table.append(None)
    missing = np.flatnonzero(codes < 0)
    if len(missing):
        codes[missing] = len(table) - 1
        # NaN, NA and NaT share None's code in the hash table, but `fn` decides what they are.
        for i, v in zip(missing.tolist(), arr[missing].tolist(), strict=True):
            if v is not None:
                codes[i] = len(table)
                table.append(fn(v))
    return codes, table


_NULLS_RAW = frozenset(NULL_TOKENS | {t.upper() for t in NULL_TOKENS} | {"Null", "None", "NaN", "N/a"})


def _blank(v: Any) -> Any:
    if isinstance(v, str):
        v = v.strip()
        return None if v in _NULLS_RAW else v
    return None if v is None or (isinstance(v, float) and v != v) else v


def _blanked(values: list[Any]) -> list[Any]:
    """`_blank` of each value (inlined for text: this runs once per cell of an id column)."""
    return [(None if (t := v.strip()) in _NULLS_RAW else t) if type(v) is str else _blank(v)
            for v in values]


def _factorize(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """`pd.factorize` (missing values: -1) of repetitive values; None when most of a sample is
    distinct (ids, times to the second), where the hash table costs more than it saves.
    Raises TypeError for an unhashable value."""
    if len(set(arr[:2_000].tolist())) > 1_000:
        return None
    return pd.factorize(arr)


def _blank_to_none(s: pd.Series) -> pd.Series:
    """Trim text and turn blanks and null markers ("", "NULL", "N/A", "-") into None.

    Each distinct text is cleaned once (a million cells hold few distinct channels); values
    that are not text keep their own object (the hash table takes 1, 1.0 and True as one)."""
    arr = s.to_numpy(dtype=object)
    try:
        factors = _factorize(arr)
    except TypeError:  # an unhashable value (a JSON list)
        factors = None
    if factors is None:
        return pd.Series(_objects(_blanked(arr.tolist())), index=s.index, dtype=object)
    codes, uniques = factors
    distinct = uniques.tolist()
    out = _objects([*_blanked(distinct), None])[codes]  # code -1 (None, NaN): the last, None
    own = [k for k, v in enumerate(distinct) if type(v) is not str]
    rows = np.flatnonzero(np.isin(codes, own) | (codes < 0))
    if len(rows):
        out[rows] = _objects(_blanked(arr[rows].tolist()))
    return pd.Series(out, index=s.index, dtype=object)


def _map_values(s: pd.Series, mapping: dict[str, Any]) -> pd.Series:
    """Replace source values by canonical ones (`[sources.values.<field>]`); others stay as they are."""
    table = {_key(k): v for k, v in mapping.items()}
    codes, mapped = _per_value(s, lambda v: table.get(_key(v), v))
    return pd.Series(_objects(mapped)[codes], index=s.index, dtype=object)


def _to_text(s: pd.Series) -> pd.Series:
    """Text fields as str; Excel and SQL numbers such as 1001.0 become "1001"."""
    arr = s.to_numpy(dtype=object).tolist()
    if set(map(type, arr)) <= {str, type(None)}:
        return s
    return pd.Series([v if v is None or type(v) is str else _key_text(v) for v in arr],
                     index=s.index, dtype=object)


def _key_text(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, datetime | date):
        return v.isoformat()
    return str(v)


class _Bad(str):
    """Why a value could not be converted (kept apart from good values by its type)."""


def _int_of(v: Any) -> int | _Bad:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, str):
        text = unicodedata.normalize("NFKC", v).strip()
        try:
            v = int(text)
        except ValueError:
            try:
                v = float(text)
            except ValueError:
                return _Bad("is not a number")
    if isinstance(v, float | np.floating):
        if v != v:
            return _Bad("is not a number")
        if not float(v).is_integer():
            return _Bad("is not a whole number")
        v = int(v)
    if not isinstance(v, int | np.integer):
        return _Bad("is not a number")
    if abs(int(v)) > _INT_LIMIT:
        return _Bad("is too large for a score")
    return int(v)


def to_int(s: pd.Series) -> tuple[pd.Series, np.ndarray, list[str]]:
    """Whole numbers as nullable Int64; -> (values, bad mask, message per row of the bad ones)."""
    codes, conv = _per_value(s, _int_of)
    bad_t = np.fromiter((isinstance(v, _Bad) for v in conv), dtype=bool, count=len(conv))
    empty_t = bad_t | np.fromiter((v is None for v in conv), dtype=bool, count=len(conv))
    ints_t = np.array([0 if e else v for v, e in zip(conv, empty_t.tolist(), strict=True)], dtype=np.int64)
    bad = bad_t[codes]
    messages = [str(conv[c]) for c in codes[bad].tolist()]
    values = pd.arrays.IntegerArray(ints_t[codes], empty_t[codes])
    return pd.Series(values, index=s.index), bad, messages


def _bool_of(v: Any) -> bool | _Bad:
    k = _key(v)
    return True if k in TRUE_TOKENS else False if k in FALSE_TOKENS else _Bad("not yes/no")


def to_bool(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """yes/no, true/false, 1/0, 是/否 -> bool; anything else is reported as unparseable."""
    codes, conv = _per_value(s, _bool_of)
    bad_t = np.fromiter((isinstance(v, _Bad) for v in conv), dtype=bool, count=len(conv))
    values = _objects([None if b else v for v, b in zip(conv, bad_t.tolist(), strict=True)])
    return pd.Series(values[codes], index=s.index, dtype=object), bad_t[codes]


def _localize(naive: pd.Series, tz: ZoneInfo) -> pd.Series:
    """Naive wall-clock times in the project zone -> UTC. A repeated DST hour is read as standard
    time and a skipped one is shifted forward, rather than losing the response."""
    return naive.dt.tz_localize(tz, ambiguous=np.zeros(len(naive), dtype=bool),
                                nonexistent="shift_forward").dt.tz_convert("UTC")


def _native_datetime(v: Any, tz: ZoneInfo, excel_serial: bool) -> pd.Timestamp | None:
    if isinstance(v, datetime):
        ts = pd.Timestamp(v)
    elif isinstance(v, date):
        ts = pd.Timestamp(datetime(v.year, v.month, v.day))
    elif excel_serial and isinstance(v, int | float) and not isinstance(v, bool) and 1 <= v < 2958466:
        # An Excel date cell left unformatted arrives as its serial number (days since 1899-12-30).
        ts = pd.Timestamp(_EXCEL_EPOCH + timedelta(days=float(v))).round("s")
    else:
        return None
    if ts.tzinfo is not None:
        return ts.tz_convert("UTC")
    return ts.tz_localize(tz, ambiguous=False, nonexistent="shift_forward").tz_convert("UTC")


def _utc_us(times: pd.Series) -> np.ndarray:
    """Aware or naive-UTC timestamps -> naive UTC datetime64[us] (sub-microseconds truncated)."""
    if isinstance(times.dtype, pd.DatetimeTZDtype):
        times = times.dt.tz_convert(None)
    return times.to_numpy(dtype="datetime64[us]")


def _may_have_offset(texts: list[str]) -> np.ndarray:
    """False where `_AWARE` cannot match: it needs a Z, or a sign 3, 5 or 6 characters from the
    end. Tested on the texts' tails all at once: the regex search itself, run on every distinct
    text of a million rows, took seconds."""
    tails = np.array(list(map(itemgetter(slice(-7, None)), texts)), dtype="U7")
    chars = tails.view(np.uint32).reshape(len(texts), 7)
    return np.asarray(np.isin(chars, [ord(c) for c in "+-Zz"]).any(axis=1))


def _parse_texts(texts: pd.Series, tz: ZoneInfo) -> np.ndarray:
    """Distinct date/time texts -> UTC timestamps as naive datetime64[us] (NaT where no known
    format fits)."""
    out = np.full(len(texts), np.datetime64("NaT"), dtype="datetime64[us]")
    aware = _may_have_offset(texts.tolist())
    if aware.any():
        aware[aware] = texts[aware].str.contains(_AWARE, regex=True).to_numpy(dtype=bool)
    if aware.any():
        parsed_aware = pd.to_datetime(texts[aware], format="ISO8601", utc=True, errors="coerce")
        out[aware] = _utc_us(parsed_aware)
    naive = texts[~aware]
    if len(naive):
        parsed = pd.to_datetime(naive, format="ISO8601", errors="coerce")
        for fmt in DATE_FORMATS:
            todo = parsed.isna().to_numpy(dtype=bool)
            if not todo.any():
                break
            parsed[todo] = pd.to_datetime(naive[todo], format=fmt, errors="coerce")
        out[~aware] = _utc_us(_localize(parsed.astype("datetime64[us]"), tz))
    return out


def _native_times(values: list[Any], tz: ZoneInfo, excel_serial: bool) -> np.ndarray:
    """Python/pandas dates and times (Excel serials) -> naive UTC datetime64[us], NaT if none.
    Converted once per distinct value of a type: an Excel month has few distinct times."""
    out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[us]")
    seen: dict[tuple[type, Any], pd.Timestamp | None] = {}
    for i, v in enumerate(values):
        try:
            ts = seen[type(v), v]
        except KeyError:
            ts = seen[type(v), v] = _native_datetime(v, tz, excel_serial)
        except TypeError:  # unhashable
            ts = _native_datetime(v, tz, excel_serial)
        if ts is not None:
            out[i] = ts.tz_convert(None).as_unit("us", round_ok=True).asm8
    return out


def parse_datetimes(s: pd.Series, tz: ZoneInfo, excel_serial: bool = False) -> tuple[pd.Series, np.ndarray]:
    """Aware UTC timestamps (NaT where empty) and the mask of present values that did not parse.

    ISO 8601 first (vectorised), then common spreadsheet formats (2026/10/3 14:05, 2026年10月3日,
    10/3/2026 2:05 PM, 03.10.2026); values with an offset keep it, naive ones are project time.
    Built as a datetime64 array: pandas' Timestamp objects cost seconds per million rows.
    """
    utc = np.full(len(s), np.datetime64("NaT"), dtype="datetime64[us]")
    present = s.notna().to_numpy(dtype=bool)
    if present.any():
        arr = s.to_numpy(dtype=object)
        is_str = _is_str(arr)
        if is_str.any():
            # Parse each distinct text once: a month of minute-resolution times has ~45,000.
            rows = np.flatnonzero(is_str)
            factors = _factorize(arr[rows])
            codes, uniques = factors if factors else (np.arange(len(rows)), arr[rows])
            texts = pd.Series([unicodedata.normalize("NFKC", t).strip() for t in uniques.tolist()],
                              dtype=object)
            utc[rows] = _parse_texts(texts, tz)[codes]
        others = np.flatnonzero(present & ~is_str)
        if len(others):
            utc[others] = _native_times(arr[others].tolist(), tz, excel_serial)
    out = pd.Series(utc, index=s.index).dt.tz_localize("UTC")
    return out, present & np.isnat(utc)


# ------------------------------------------------------------------------------------ mapping
def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return None if v != v else v
    if isinstance(v, datetime | date):
        return v.isoformat()
    return str(v)


def _source_series(source: SourceConfig, frame: pd.DataFrame, name: str, n: int
                   ) -> tuple[pd.Series | None, str]:
    """The canonical field's values before typing: mapped column, same-named column, constant."""
    column = source.columns.get(name) or (name if name in frame.columns else None)
    s = _blank_to_none(frame[column]) if column else None
    if s is not None and name in source.values:
        s = _map_values(s, source.values[name])
    if name in source.constants:
        const = source.constants[name]
        if s is None:
            return pd.Series([const] * n, index=frame.index, dtype=object), "(constant)"
        s = s.where(s.notna(), const)  # a constant also fills the column's blank cells
    return s, column or ""


FIRST_PLACES = 5  # how many places (rows, ids) a warning of the import record names


def strip_nul(frame: pd.DataFrame, rows: np.ndarray) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The frame without NUL characters in its text cells and headers, and a warning naming how
    many cells and the first places.

    PostgreSQL cannot store a NUL in text (the driver fails the whole file, every run) and SQLite
    stores it silently where no export tool shows it; it is never meaningful in feedback, so it is
    removed and counted, the same way on both databases."""
    cells = 0
    first: list[str] = []
    renamed = {c: c.replace("\x00", "") for c in frame.columns if isinstance(c, str) and "\x00" in c}
    for column in frame.columns:
        if frame[column].dtype != object:
            continue
        values = frame[column].to_numpy(dtype=object)
        hits = [i for i, v in enumerate(values.tolist()) if type(v) is str and "\x00" in v]
        if not hits:
            continue
        if len(first) < FIRST_PLACES:
            name = str(column).replace("\x00", "")
            first += [f"row {rows[i]} column {name!r}" for i in hits[:FIRST_PLACES]]
        cells += len(hits)
        values = values.copy()
        for i in hits:
            values[i] = values[i].replace("\x00", "")
        frame[column] = pd.Series(values, index=frame.index, dtype=object)
    if renamed:
        frame = frame.rename(columns=renamed)
        cells += len(renamed)
        first.append("header")
    if not cells:
        return frame, None
    return frame, {"cells": cells, "first": first[:FIRST_PLACES]}


def merge_warnings(total: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """The warnings of a file read in chunks: counts added, the first places kept."""
    for name, warning in more.items():
        mine = total.setdefault(name, {k: (0 if isinstance(v, int) else []) for k, v in warning.items()})
        for key, value in warning.items():
            mine[key] = mine[key] + value if isinstance(value, int) else [*mine[key], *value][:FIRST_PLACES]
    return total


def prepare(settings: Settings, source: SourceConfig, raw: RawTable, period: str, label: str) -> Prepared:
    """Map one file's records to canonical typed rows and sort them into accepted / rejected."""
    frame = raw.frame.reset_index(drop=True)
    warnings: dict[str, Any] = {}
    if raw.may_hold_nul:
        frame = frame.copy()
        frame, nul = strip_nul(frame, raw.rows)
        if nul:
            warnings["nul_removed"] = nul
    n = len(frame)
    missing = [f"{col!r} (mapped to {name})" for name, col in source.columns.items()
               if col not in frame.columns]
    missing += [f"{col!r} (mapped to driver {name})" for name, col in source.drivers.items()
                if col not in frame.columns]
    if missing and (n or source.kind in ("csv", "excel")):
        raise SourceError(f"{label}: mapped column {', '.join(missing)} not found; "
                          f"the file's columns are: {', '.join(map(str, frame.columns))}")
    if n == 0:
        return Prepared(pd.DataFrame(), [], 0, 0, 0, warnings=warnings)
    for name in REQUIRED_FIELDS:
        if name not in source.columns and name not in source.constants and name not in frame.columns:
            raise SourceError(f"{label}: no column for required field {name!r}: map one under "
                              f"[sources.columns] or set a constant `{name} = ...` on the source")

    problems: dict[int, list[dict[str, Any]]] = {}
    rows = raw.rows

    def flag(mask: np.ndarray, check: str, name: str, column: str, values: pd.Series | None,
             message: Callable[[int], str] | str) -> None:
        for j, i in enumerate(np.flatnonzero(mask)):
            value = _jsonable(values.iloc[i]) if values is not None else None
            what = message(j) if callable(message) else message
            col = f"column {column!r} ({name})" if column and column != "(constant)" else name
            problems.setdefault(int(i), []).append({
                "check": check, "column": column or name, "field": name, "value": value,
                "message": f"{label} row {rows[i]}: {col}: "
                           + (f"{value!r} {what}" if value is not None else what),
            })

    canon: dict[str, pd.Series] = {}
    origin: dict[str, str] = {}
    # Contact details too (collect moves them out), but only for a project with case rules: only
    # the daily follow-up run uses them, and only it purges them after the retention period.
    keep_contacts = bool(settings.cases.rules)
    for name, kind in MAPPED_FIELDS.items():
        if name in CONTACT_FIELDS and not keep_contacts:
            continue
        s, column = _source_series(source, frame, name, n)
        if s is None:
            continue
        origin[name] = column
        if kind == "str":
            canon[name] = _to_text(s)
        elif kind == "int":
            ints, bad, msgs = to_int(s)
            flag(bad, "parse_int", name, column, s, lambda j, m=msgs: m[j])  # type: ignore[misc]
            canon[name] = ints
        elif kind == "bool":
            bools, bad = to_bool(s)
            flag(bad, "parse_bool", name, column, s, "is not yes/no (true/false, 1/0, 是/否)")
            canon[name] = bools
        else:
            times, bad = parse_datetimes(s, settings.tz, excel_serial=source.kind == "excel")
            flag(bad, "parse_datetime", name, column, s,
                 "is not a date/time (use ISO 8601 like 2026-10-03 14:05 or 2026/10/3 14:05)")
            canon[name] = times

    submitted = canon["submitted_at"]
    for name in REQUIRED_FIELDS:
        empty = canon[name].isna().to_numpy(dtype=bool).copy()
        if name == "submitted_at":
            empty &= ~_flagged(problems, n, "submitted_at")
        flag(empty, "missing_required", name, origin.get(name, ""), None, "is empty (required)")

    scores = [canon[f].notna().to_numpy(dtype=bool) for f in SCORE_FIELDS if f in canon]
    has_score = np.logical_or.reduce(scores) if scores else np.zeros(n, dtype=bool)
    has_comment = canon["comment"].notna().to_numpy(dtype=bool) if "comment" in canon else np.zeros(n, bool)
    score_failed = np.zeros(n, dtype=bool)
    for f in SCORE_FIELDS:
        score_failed |= _flagged(problems, n, f)
    flag(~has_score & ~has_comment & ~score_failed, "not_feedback", "scores/comment", "", None,
         "no score and no comment: not feedback")

    start, end = period_bounds(period, settings.tz)
    known = submitted.notna().to_numpy(dtype=bool)
    in_period = known & (submitted >= start).to_numpy(dtype=bool) & (submitted < end).to_numpy(dtype=bool)
    implausible = known & ~in_period & _implausible(submitted, start, end)
    if implausible.any():
        column = origin.get("submitted_at", "")
        shown = frame[column] if column in frame.columns else submitted
        flag(implausible, "implausible_date", "submitted_at", column, shown,
             f"is more than {PLAUSIBLE_YEARS} years from {period}: not a plausible answer date")
    out_of_period = known & ~in_period & ~implausible
    problem = np.zeros(n, dtype=bool)
    problem[list(problems)] = True
    accepted = in_period & ~problem

    _derive_department(settings, canon, n)

    rids = canon["response_id"]
    rejected: list[Rejection] = []
    for i in sorted(problems):
        if out_of_period[i]:
            continue  # another month's row: that month's collect reports it
        rid = rids.iloc[i]
        rejected.append(Rejection(
            row_key=str(rid) if rid is not None else f"{label}:{rows[i]}",
            response_id=rid, row=int(rows[i]),
            raw={str(c): _jsonable(v) for c, v in frame.iloc[i].items()},
            reasons=problems[i],
        ))
    ok_rows = np.flatnonzero(~problem)
    rid_arr = rids.to_numpy(dtype=object)

    records = pd.DataFrame({name: s[accepted] for name, s in canon.items()})
    repeated = records.duplicated("response_id", keep="last").to_numpy(dtype=bool)
    if repeated.any():
        conflicts = conflicting_ids(records)
        if conflicts:
            warnings["conflicting_ids"] = {"count": len(conflicts), "first": conflicts[:FIRST_PLACES]}
    records = records[~repeated].reset_index(drop=True)
    records["content_hash"] = content_hashes(records)
    ratings = None
    if source.drivers:
        ratings = ratings_from_frame(settings, source, frame).take(np.flatnonzero(accepted)[~repeated])
        _out_of_scale_warning(warnings, ratings, source, rows[np.flatnonzero(accepted)[~repeated]],
                              settings)
    return Prepared(records, rejected, n, int(out_of_period.sum()), int(repeated.sum()),
                    _period_counts(submitted[known], settings), int((~known).sum()),
                    label, rid_arr[ok_rows], rows[ok_rows], warnings, ratings)


def _out_of_scale_warning(warnings: dict[str, Any], ratings: Ratings, source: SourceConfig, rows: np.ndarray,
                          settings: Settings) -> None:
    """Driver answers outside their scale (or not numbers) are left out of the ratings, and the import
    record's `driver_out_of_scale` warning counts them and names the first places. The response itself
    loads: one bad attribute answer does not make its score or comment wrong (a bad *score* is
    quarantined, as the score is what the response is for)."""
    if ratings.bad is None or not ratings.bad.any():
        return
    scales = {d.name: d.scale for d in settings.drivers}
    first: list[str] = []
    for i, j in zip(*np.nonzero(ratings.bad), strict=True):
        if len(first) == FIRST_PLACES:
            break
        name = ratings.drivers[int(j)]
        lo, hi = scales[name]
        first.append(f"row {rows[int(i)]} column {source.drivers[name]!r} ({name}, scale {lo:g}-{hi:g})")
    warnings["driver_out_of_scale"] = {"count": int(ratings.bad.sum()), "first": first}


def _implausible(submitted: pd.Series, start: datetime, end: datetime) -> np.ndarray:
    """Times more than `PLAUSIBLE_YEARS` before the period's start or after its end (compared as
    years, so times outside pandas' nanosecond range compare too)."""
    if isinstance(submitted.dtype, pd.DatetimeTZDtype) or submitted.dtype.kind == "M":
        years = submitted.dt.year.to_numpy(dtype=float, na_value=np.nan)
    else:
        years = pd.to_numeric(submitted.map(lambda t: t.year if t is not None and t == t else None),
                              errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        return (years < start.year - PLAUSIBLE_YEARS) | (years > end.year + PLAUSIBLE_YEARS)


def _period_counts(submitted: pd.Series, settings: Settings) -> dict[str, int]:
    """How many of the (dated) rows fall in each month of the project time zone."""
    if not len(submitted):
        return {}
    local = submitted.dt.tz_convert(settings.tz)
    codes, counts = np.unique((local.dt.year * 100 + local.dt.month).to_numpy(dtype="int64"),
                              return_counts=True)
    return {f"{c // 100:04d}-{c % 100:02d}": int(k) for c, k in zip(codes.tolist(), counts.tolist(),
                                                                       strict=True)}


def _flagged(problems: dict[int, list[dict[str, Any]]], n: int, name: str) -> np.ndarray:
    """Rows already flagged for `name`, so one fault is not reported twice."""
    mask = np.zeros(n, dtype=bool)
    for i, reasons in problems.items():
        if any(r["field"] == name for r in reasons):
            mask[i] = True
    return mask


def _derive_department(settings: Settings, canon: dict[str, pd.Series], n: int) -> None:
    """Empty department <- owner of the journey stage, else of the touchpoint, else of the channel."""
    if not settings.departments:
        return
    dept = canon.get("department")
    if dept is None:
        dept = pd.Series([None] * n, dtype=object, index=canon["response_id"].index)
    for name in ("journey_stage", "touchpoint", "channel"):
        empty = dept.isna().to_numpy(dtype=bool)
        if name not in canon or not empty.any():
            continue
        values = canon[name]
        owners = {v: settings.owner_of(name, v) for v in values[empty].dropna().unique()}
        dept = dept.where(~empty, values.map(owners))
    canon["department"] = dept.where(dept.notna(), None)


def conflicting_ids(records: pd.DataFrame) -> list[str]:
    """The response ids the file holds more than once with different content, in file order.

    The last copy wins (an export appended to keeps its newest answer), but two different answers
    under one id usually mean an id reused by the source system: the admin should hear of it."""
    copies = records[records.duplicated("response_id", keep=False).to_numpy(dtype=bool)]
    hashes = pd.Series(content_hashes(copies), index=copies.index)
    first = hashes.groupby(copies["response_id"].to_numpy(), sort=False).transform("first")
    # In the order of the first copy that differs: as a file read in chunks finds them.
    return [str(rid) for rid in pd.unique(copies["response_id"][hashes != first])]


def content_hashes(records: pd.DataFrame) -> list[str]:
    """A digest of each row's canonical content: equal hash = nothing to update.

    Vectorised (pandas' SipHash of each column, combined per row: about 10x faster than hashing
    the joined text of each row), 64 bits, mixed with the names of the fields present. It is only
    ever compared with the stored hash of the same response, so a false "unchanged" needs a 2**-64
    coincidence; a pandas release that hashed differently would make rows look updated once.
    """
    names = [n for n in CANONICAL_FIELDS if n in records]
    if not len(records):
        return []
    salt = int.from_bytes(hashlib.blake2b(",".join(names).encode(), digest_size=8).digest(), "big")
    hashed = np.full(len(records), salt, dtype=np.uint64)
    mult = np.uint64(1_000_003)
    for name in names:
        s = records[name]
        # Hashing the distinct values once pays off for channels and scores, not for ids.
        few = s.iloc[:2_000].nunique(dropna=False) < 200
        column = pd.util.hash_pandas_object(s, index=False, categorize=bool(few)).to_numpy()
        hashed = (hashed ^ column) * mult  # wraps modulo 2**64, like pandas' own combination
        mult = mult + np.uint64(82_520)
    text = hashed.astype(">u8").tobytes().hex()  # 16 hex digits per row, as f"{h:016x}"
    return [text[k:k + 16] for k in range(0, len(text), 16)]


