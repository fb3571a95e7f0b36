"""Reading the quarantine back: the rows collect and validate held out of a period, for
`cxloop quarantine` (light: no pandas, so the command starts fast)."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlmodel import Session

from cxloop.models import QuarantinedRow

QR = QuarantinedRow.__table__.c  # type: ignore[attr-defined]


def quarantined_rows(engine: Engine, period: str, include_readmitted: bool = False,
                     stage: str | None = None) -> list[QuarantinedRow]:
    """The period's quarantined rows by source and id; readmitted ones only with
    `include_readmitted`, one stage's (collect / validate) only with `stage`."""
    stmt = select(QuarantinedRow).where(QR.period == period)
    if not include_readmitted:
        stmt = stmt.where(QR.readmitted_at.is_(None))
    if stage:
        stmt = stmt.where(QR.stage == stage)
    with Session(engine) as session:
        return list(session.execute(stmt.order_by(QR.source, QR.id)).scalars())
