"""Expectation suites: found in the project and shipped folders, parsed, and their `${...}`
placeholders filled from the settings and the period.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cxloop.config import Settings
from cxloop.paths import EXPECTATIONS, shipped
from cxloop.periods import period_bounds

STAGE = "validate"
LEVELS = ("row", "batch")
SEVERITIES = ("critical", "warning")
ROW_FRAME = "rows"
BATCH_FRAMES = ("batch", "sources", "channels", "score_columns")
KEY_COLUMNS = {"rows": "row_key", "batch": "subject", "sources": "subject", "channels": "subject",
               "score_columns": "subject"}
_PLACEHOLDER = re.compile(r"^\$\{([A-Za-z0-9_.]+)\}$")


class SuiteError(ValueError):
    """A suite file that cannot be used; the message names the file and the expectation."""


@dataclass
class Expectation:
    """One expectation of a suite file, with placeholders filled and severity resolved."""

    suite: str
    path: Path
    level: str
    frame: str
    name: str
    type: str
    kwargs: dict[str, Any]
    meta: dict[str, Any]
    severity: str
    description: str | None = None

    @property
    def column(self) -> str | None:
        col = self.kwargs.get("column", self.kwargs.get("column_A"))
        return str(col) if col is not None else None


@dataclass
class Suite:
    name: str
    path: Path
    level: str
    data: dict[str, Any]


def suite_dirs(settings: Settings) -> list[Path]:
    """Where suites come from: the shipped folder, then the config's `expectations/` if it exists."""
    dirs = [shipped("expectations")]
    user = settings.resolve("expectations")
    if user.is_dir() and user.resolve() != EXPECTATIONS.resolve():
        dirs.append(user)
    return dirs


def load_suites(settings: Settings) -> list[Suite]:
    """Every `*.json` suite; a user file named like a shipped one replaces it."""
    by_file: dict[str, Path] = {}
    for folder in suite_dirs(settings):
        for path in sorted(folder.glob("*.json")):
            by_file[path.name] = path
    suites = []
    for path in by_file.values():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SuiteError(f"{path}: not a readable JSON suite: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("expectations"), list):
            raise SuiteError(f"{path}: a suite needs a top-level object with an `expectations` list")
        level = (data.get("meta") or {}).get("level", "row")
        if level not in LEVELS:
            raise SuiteError(f"{path}: meta.level must be one of {LEVELS}, not {level!r}")
        suites.append(Suite(str(data.get("name") or path.stem), path, level, data))
    return suites


def placeholder_values(settings: Settings, period: str, now: datetime) -> dict[str, Any]:
    """What `${name}` placeholders in suite files stand for in this run."""
    start, end = period_bounds(period, settings.tz)
    q = settings.quality
    return {
        "vocabulary.channel": list(settings.vocabulary.channel),
        "vocabulary.journey_stage": list(settings.vocabulary.journey_stage),
        "vocabulary.touchpoint": list(settings.vocabulary.touchpoint),
        "period.start": start.isoformat(),
        "period.end": end.isoformat(),
        "now": now.isoformat(),
        "quality.max_quarantine_share": q.max_quarantine_share,
        "quality.volume_band.min": q.volume_band[0],
        "quality.volume_band.max": q.volume_band[1],
        "quality.null_rate_jump": q.null_rate_jump,
        "sources": [s.name for s in settings.sources],
    }


class _Skip(Exception):
    """An expectation whose placeholder resolved to an empty list: nothing to check."""


def _fill(value: Any, params: dict[str, Any], where: str) -> Any:
    if isinstance(value, str):
        m = _PLACEHOLDER.match(value)
        if not m:
            return value
        if m.group(1) not in params:
            raise SuiteError(f"{where}: unknown placeholder {value}; known: "
                             + ", ".join("${" + k + "}" for k in params))
        filled = params[m.group(1)]
        if isinstance(filled, list) and not filled:
            raise _Skip
        return filled
    if isinstance(value, dict):
        return {k: _fill(v, params, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, params, where) for v in value]
    return value


def expectations_of(suite: Suite, settings: Settings, params: dict[str, Any]) -> list[Expectation]:
    """The suite's expectations ready to run: placeholders filled, severity and frame resolved."""
    out = []
    default_frame = (suite.data.get("meta") or {}).get("frame") or (
        ROW_FRAME if suite.level == "row" else "sources")
    for i, raw in enumerate(suite.data["expectations"]):
        where = f"{suite.path}: expectation #{i + 1}"
        if not isinstance(raw, dict) or "type" not in raw:
            raise SuiteError(f"{where}: needs a `type` (e.g. expect_column_values_to_not_be_null)")
        meta = dict(raw.get("meta") or {})
        kwargs = dict(raw.get("kwargs") or {})
        name = str(meta.get("id") or f"{raw['type']}({kwargs.get('column', kwargs.get('column_A', ''))})")
        where = f"{suite.path}: expectation {name!r}"
        try:
            kwargs = _fill(kwargs, params, where)
        except _Skip:
            continue
        frame = str(meta.get("frame") or default_frame)
        allowed = (ROW_FRAME,) if suite.level == "row" else BATCH_FRAMES
        if frame not in allowed:
            raise SuiteError(f"{where}: meta.frame {frame!r} not available for a {suite.level} suite; "
                             f"use one of {allowed}")
        overrides = settings.quality.severity
        severity = str(overrides.get(name) or overrides.get(raw["type"]) or meta.get("severity")
                       or raw.get("severity") or "critical")
        if severity == "info":
            severity = "warning"
        if severity not in SEVERITIES:
            raise SuiteError(f"{where}: severity must be one of {SEVERITIES}, not {severity!r}")
        out.append(Expectation(suite.name, suite.path, suite.level, frame, name, str(raw["type"]),
                               kwargs, meta, severity, raw.get("description")))
    return out
