"""Core column handles of the tables the gate reads and writes (typed SQL expressions; SQLModel
attributes read as plain values to mypy).
"""

from __future__ import annotations

from cxloop.models import (
    Feedback,
    ImportRecord,
    QualityCheck,
    QuarantinedRow,
)

FB = Feedback.__table__.c  # type: ignore[attr-defined]
QR = QuarantinedRow.__table__.c  # type: ignore[attr-defined]
QC = QualityCheck.__table__.c  # type: ignore[attr-defined]
IR = ImportRecord.__table__.c  # type: ignore[attr-defined]
FT = Feedback.__table__  # type: ignore[attr-defined]
QT = QuarantinedRow.__table__  # type: ignore[attr-defined]
