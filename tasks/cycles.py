"""The stored cycles and their stage records, as the CLI reads them: `cxloop status`, and whether
the data gate held a period (`cxloop kpis` and `cxloop notify` treat a held period as provisional).
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session, select

from cxloop.models import Cycle, CycleStage


def stored_cycles(engine: Engine, period: str | None = None) -> list[Cycle]:
    """The cycles as stored, by period (only `period`'s when given)."""
    with Session(engine) as s:
        q = select(Cycle).order_by(Cycle.period)
        if period:
            q = q.where(Cycle.period == period)
        return list(s.exec(q))


def gate_held(engine: Engine, period: str) -> bool:
    """Did the data-quality gate hold the period's cycle? False when no cycle ran for it."""
    with Session(engine) as s:
        cycle = s.exec(select(Cycle).where(Cycle.period == period)).first()
    return bool(cycle and cycle.gate == "held")


def stage_records(engine: Engine, period: str) -> dict[str, CycleStage]:
    """The period's stage records by stage name."""
    with Session(engine) as s:
        return {r.stage: r for r in s.exec(select(CycleStage).where(CycleStage.period == period))}
