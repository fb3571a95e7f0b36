"""The data-quality box of a page: imports, quarantined rows and failed checks of the period."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from cxloop.models import (
    Cycle,
    ImportRecord,
    QualityCheck,
    QuarantinedRow,
)
from cxloop.tasks.collect.records import current_imports, rows_of_period_read
from cxloop.tasks.report.data import Quality


def _quality(session: Session, period: str, cycle: Cycle | None, out_dir: Path | None) -> Quality:
    imports = [i for i in current_imports(session.scalars(
        select(ImportRecord).where(col(ImportRecord.period) == period)))
        if i.error or i.rows_read > i.out_of_period]  # not the files holding only other months' rows
    quarantined = len(list(session.scalars(select(col(QuarantinedRow.id)).where(
        col(QuarantinedRow.period) == period, col(QuarantinedRow.readmitted_at).is_(None)))))
    checks = list(session.scalars(select(QualityCheck).where(col(QualityCheck.period) == period)))
    failed: list[dict[str, Any]] = [
        {"expectation": c.expectation, "column": c.column or "", "severity": c.severity, "level": c.level,
         "unexpected": c.unexpected_count}
        for c in sorted(checks, key=lambda c: (c.severity != "critical", -c.unexpected_count))
        if not c.success]
    link = None
    if cycle and cycle.validation_report_path:
        vpath = Path(cycle.validation_report_path)
        link = vpath.name if out_dir is not None and vpath.parent.resolve() == out_dir.resolve() \
            else (vpath.resolve().as_uri() if vpath.is_absolute() else str(vpath))
    return Quality(
        files=len(imports), rows_read=rows_of_period_read(imports),
        loaded=sum(i.loaded for i in imports), duplicates=sum(i.duplicates for i in imports),
        updated=sum(i.updated for i in imports), rejected=sum(i.rejected for i in imports),
        quarantined=quarantined, gate=(cycle.gate or "") if cycle else "",
        cycle_status=cycle.status if cycle else "",
        risk_accepted_by=cycle.risk_accepted_by if cycle else None,
        failed_checks=failed[:8], validation_link=link,
        import_errors=[f"{i.file}: {i.error}" for i in imports if i.error])
