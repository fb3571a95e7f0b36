"""Collect the `[outcomes]` export - what customers did afterwards (orders, spend, visits, churn and
renewal flags by customer and date) - into the `outcome` table, file by file.

Read like any source (tasks/readers.py: GBK / GB18030 / UTF-8 with BOM, Excel), so the same exports
load. Idempotent per file: an unchanged file (same bytes) is skipped, a changed one replaces its
rows in one transaction, so a re-run never duplicates. Outcomes are not monthly: every configured
file is collected whatever the period, and the report joins them to a month's responses by
customer id (tasks/report/outcomes.py). A row without a customer id or a readable date, or with a
value that is not a number / not yes-no, is skipped and counted (never stored as zero); messages
name the file, row and column, never the customer id (personal data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Table, delete, insert, select

from cxloop.config import OUTCOME_FLAGS, OUTCOME_MEASURES, OutcomesConfig, Settings
from cxloop.models import Outcome
from cxloop.tasks import readers
from cxloop.tasks.collect.sources import _label
from cxloop.tasks.mapping import _blank_to_none, _to_text, parse_datetimes, to_bool
from cxloop.tasks.readers import RawTable, SourceError

_OUT: Table = Outcome.__table__  # type: ignore[attr-defined]
_CHUNK = 5000


class OutcomeColumnError(SourceError):
    """A mapped column the file does not have: the config is wrong for this file (exit 2)."""


@dataclass
class OutcomeFile:
    """What one outcomes file contributed."""

    file: str
    rows_read: int = 0
    stored: int = 0
    skipped: int = 0
    unchanged: bool = False
    first_skip: str = ""  # "row 7, column '日期': not a date"
    error: str | None = None
    config_error: bool = False  # a mapped column missing from the file

    def row(self) -> dict[str, Any]:
        return {"file": self.file, "read": self.rows_read, "stored": self.stored, "skipped": self.skipped,
                "unchanged": self.unchanged, "error": self.error or ""}


@dataclass
class OutcomesSummary:
    files: list[OutcomeFile] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [f"outcomes: {f.error}" for f in self.files if f.error]

    @property
    def config_error(self) -> bool:
        return any(f.config_error for f in self.files)

    @property
    def warning_lines(self) -> list[str]:
        return [f"outcomes: {f.file}: {f.skipped} row(s) skipped (first: {f.first_skip})"
                for f in self.files if f.skipped]

    def counts(self) -> dict[str, int]:
        return {"outcome_files": len(self.files), "outcome_rows": sum(f.stored for f in self.files),
                "outcome_skipped": sum(f.skipped for f in self.files), "outcome_errors": len(self.errors)}


def outcome_files(settings: Settings, cfg: OutcomesConfig) -> list[Path]:
    """The files `[outcomes] path` names (a glob in name order), or SourceError naming the path."""
    import glob

    pattern = settings.resolve(cfg.path)
    if glob.has_magic(str(pattern)):
        found = sorted(Path(p) for p in glob.glob(str(pattern), recursive=True) if Path(p).is_file())
        if not found:
            raise SourceError(f"{cfg.path}: no file matches (looked for {pattern})")
        return found
    if not pattern.is_file():
        raise SourceError(f"{cfg.path}: file not found (looked for {pattern})")
    return [pattern]


def _read(cfg: OutcomesConfig, path: Path, label: str, data: bytes) -> RawTable:
    if cfg.kind == "csv":
        return readers.read_csv(path, cfg.encoding, label, data)
    return readers.read_excel(path, cfg.sheet, label, data)


def _numbers(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Numbers (NaN where empty) and the mask of present cells that are not numbers."""
    text = s.map(lambda v: v.replace(",", "").replace("，", "") if isinstance(v, str) else v)
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    present = s.notna().to_numpy(dtype=bool)
    return values, present & np.isnan(values)


def outcome_rows(settings: Settings, cfg: OutcomesConfig, raw: RawTable, label: str
                 ) -> tuple[pd.DataFrame, int, str]:
    """The file's rows as outcome records (customer_id, at, row, measures, flags), the number
    skipped and the first skip's reason; OutcomeColumnError when a mapped column is missing."""
    frame = raw.frame
    missing = [f"outcomes.columns.{name} = {column!r}" for name, column in cfg.columns.items()
               if column not in frame.columns]
    if missing:
        raise OutcomeColumnError(f"{label}: mapped column not found: {', '.join(missing)}; the file's "
                                 f"columns are: {', '.join(map(str, frame.columns))}")
    n = len(frame)
    bad = np.zeros(n, dtype=bool)
    reasons: list[tuple[int, str]] = []

    def note(mask: np.ndarray, name: str, why: str) -> None:
        nonlocal bad
        if mask.any():
            first = int(np.flatnonzero(mask)[0])
            reasons.append((first, f"row {raw.rows[first]}, column {cfg.columns[name]!r}: {why}"))
            bad = bad | mask

    cols = {name: _blank_to_none(frame[column]) for name, column in cfg.columns.items()}
    ids = _to_text(cols["customer_id"])
    note(ids.isna().to_numpy(dtype=bool), "customer_id", "no customer id")
    at, unreadable = parse_datetimes(cols["date"], settings.tz, excel_serial=cfg.kind == "excel")
    note(unreadable | cols["date"].isna().to_numpy(dtype=bool), "date", "not a date")
    out = pd.DataFrame({"customer_id": ids, "at": at, "row": raw.rows.astype(int)})
    for name in OUTCOME_MEASURES:
        if name in cols:
            values, wrong = _numbers(cols[name])
            note(wrong, name, "not a number")
            note(values < 0, name, "negative")
            out[name] = values
    for name in OUTCOME_FLAGS:
        if name in cols:
            flags, wrong = to_bool(cols[name])
            note(wrong, name, "not yes/no (1/0, true/false, 是/否)")
            out[name] = flags
    first = min(reasons)[1] if reasons else ""
    return out[~bad].reset_index(drop=True), int(bad.sum()), first


def _store(engine: Engine, label: str, digest: str, rows: pd.DataFrame) -> int:
    """Replace the file's rows by these, in one transaction."""
    records: list[dict[str, Any]] = []
    for rec in rows.to_dict("records"):
        item: dict[str, Any] = {"file": label, "file_hash": digest, "row": int(rec["row"]),
                                "customer_id": str(rec["customer_id"]), "at": rec["at"].to_pydatetime()}
        for name in OUTCOME_MEASURES:
            v = rec.get(name)
            item[name] = None if v is None or v != v else float(v)
        for name in OUTCOME_FLAGS:
            v = rec.get(name)
            item[name] = None if v is None else bool(v)
        records.append(item)
    with engine.begin() as conn:
        conn.execute(delete(_OUT).where(_OUT.c.file == label))
        for start in range(0, len(records), _CHUNK):
            conn.execute(insert(_OUT), records[start:start + _CHUNK])
    return len(records)


def _digest(settings: Settings, cfg: OutcomesConfig, data: bytes) -> str:
    """The file's bytes and how they are read: a changed column map or time zone re-reads the file."""
    import hashlib

    how = f"{cfg.model_dump_json()}|{settings.project.timezone}".encode()
    return hashlib.sha256(readers.file_digest(data).encode() + b"|" + how).hexdigest()


def _unchanged(engine: Engine, label: str, digest: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(_OUT.c.id).where(_OUT.c.file == label, _OUT.c.file_hash == digest)
                            .limit(1)).first() is not None


def collect_outcomes(settings: Settings, engine: Engine) -> OutcomesSummary:
    """Load every file of `[outcomes]` (none configured: an empty summary). A file that cannot be
    read is reported and the others still load."""
    summary = OutcomesSummary()
    cfg = settings.outcomes
    if cfg is None:
        return summary
    try:
        files = outcome_files(settings, cfg)
    except SourceError as exc:
        summary.files.append(OutcomeFile(cfg.path, error=str(exc)))
        return summary
    for path in files:
        label = _label(settings, path)
        done = OutcomeFile(label)
        summary.files.append(done)
        try:
            data = path.read_bytes()
            digest = _digest(settings, cfg, data)
            if _unchanged(engine, label, digest):
                done.unchanged = True
                continue
            raw = _read(cfg, path, label, data)
            rows, done.skipped, done.first_skip = outcome_rows(settings, cfg, raw, label)
            done.rows_read = len(raw.frame)
            done.stored = _store(engine, label, digest, rows)
        except OutcomeColumnError as exc:
            done.error, done.config_error = str(exc), True
        except SourceError as exc:
            done.error = str(exc)
        except OSError as exc:
            done.error = f"{label}: cannot be read ({exc.strerror or exc})"
    return summary
