"""What the gate found: one check's result (`CheckResult`) and the period's verdict (`GateResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class CheckResult:
    """One expectation's outcome, as stored in `quality_check` and shown in the report."""

    suite: str
    expectation: str
    type: str
    column: str | None
    level: str
    frame: str
    severity: str
    success: bool
    element_count: int = 0
    unexpected_count: int = 0
    observed: dict[str, Any] = field(default_factory=dict)
    sample: list[Any] = field(default_factory=list)
    message: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def gating(self) -> bool:
        """Does this failure hold the cycle? Critical batch checks, and broken (erroring) suites."""
        return (not self.success and self.severity == "critical"
                and (self.level == "batch" or "error" in self.observed))


@dataclass
class GateResult:
    period: str
    status: str  # passed | held
    checks: list[CheckResult]
    failed_critical: list[str]
    rows: int
    quarantined: int  # rows quarantined by this stage
    collect_quarantined: int
    quarantine_share: float
    report_path: Path | None
    readmitted: int = 0
    read: int = 0
    duplicates: int = 0

    @property
    def warnings(self) -> list[str]:
        return [c.expectation for c in self.checks if not c.success and c.severity == "warning"]

    def counts(self) -> dict[str, int | float | str]:
        """Figures for the cycle's stage record; read = loaded + quarantined + duplicates."""
        return {
            "status": self.status,
            "rows": self.rows,
            "read": self.read,
            "loaded": self.rows - self.quarantined,
            "quarantined": self.quarantined + self.collect_quarantined,
            "quarantined_validate": self.quarantined,
            "quarantined_collect": self.collect_quarantined,
            "duplicates": self.duplicates,
            "quarantine_share": round(self.quarantine_share, 6),
            "readmitted": self.readmitted,
            "checks": len(self.checks),
            "failed": sum(not c.success for c in self.checks),
            "failed_critical": len(self.failed_critical),
            "warnings": len(self.warnings),
        }
