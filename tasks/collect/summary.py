"""What one collect reports: per file (`ImportSummary`, its warnings in words) and per period
(`CollectSummary`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from cxloop.tasks.collect.outcomes import OutcomesSummary

if TYPE_CHECKING:
    from cxloop.tasks.columnar import Spill


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
    # When the collect that read it started: the same for every file of a source's collect, which
    # is how `records.current_imports` tells that collect's records from older ones.
    collect_started: datetime = field(kw_only=True)  # no default: a path that forgot it would hide failures
    # The rows inserted, in insertion order (canonical fields and source): what a new month is.
    # A big import's are on disk (`columnar.Spill`), for the month's columnar copy.
    inserted: pd.DataFrame | Spill | None = field(default=None, repr=False)

    def row(self) -> dict[str, Any]:
        return {"source": self.source, "file": self.file, "read": self.rows_read, "loaded": self.loaded,
                "updated": self.updated, "duplicates": self.duplicates, "rejected": self.rejected,
                "out_of_period": self.out_of_period, "error": self.error or ""}


WARNING_TEXTS = {
    "nul_removed": "{cells} NUL character(s) removed (first: {first})",
    "conflicting_ids": "{count} response_id(s) repeated with different content, the last row kept "
                       "(first: {first})",
    "driver_out_of_scale": "{count} driver rating(s) outside the driver's scale or not a number, left out "
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
    outcomes: OutcomesSummary | None = None  # the `[outcomes]` files, when configured

    def total(self, name: str) -> int:
        return sum(int(getattr(i, name)) for i in self.imports)

    @property
    def errors(self) -> list[str]:
        """One line per file that could not be read; each message names the file."""
        return [f"source {i.source!r}: {i.error}" for i in self.imports if i.error] + (
            self.outcomes.errors if self.outcomes else [])

    @property
    def warning_lines(self) -> list[str]:
        """One line per thing collect cleaned or noticed in a file that loaded (import warnings)."""
        return [f"source {i.source!r}: {i.file}: {warning_text(name, w)}"
                for i in self.imports for name, w in (i.warnings or {}).items()] + (
            self.outcomes.warning_lines if self.outcomes else [])

    @property
    def ok(self) -> bool:
        return not self.errors

    def inserted(self) -> list[pd.DataFrame | Spill]:
        """The rows this collect inserted, file by file in the order they were inserted."""
        return [i.inserted for i in self.imports if i.inserted is not None]

    def counts(self) -> dict[str, int | float | str | list[str]]:
        """What the stage record keeps. The lines of outcomes files that failed go with it
        (`outcome_failures`): unlike a source's, no import record keeps them for `cxloop run`."""
        out: dict[str, int | float | str | list[str]] = {"files": len(self.imports)}
        out.update({name: self.total(name) for name in COUNT_NAMES})
        out["errors"] = len(self.errors)
        if self.outcomes is not None:
            out.update(self.outcomes.counts())
            if self.outcomes.errors:
                out["outcome_failures"] = self.outcomes.errors
        return out
