"""What the demo's cycles left in the database: the facts `cxloop demo` tells its story from."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cxloop.config import Settings
from cxloop.models import Action, Cycle, KpiResult, Measurement, QualityCheck


@dataclass
class DemoOutcome:
    cycles: dict[str, Cycle] = field(default_factory=dict)  # by period
    actions: list[Action] = field(default_factory=list)  # by id
    measures: dict[int, list[Measurement]] = field(default_factory=dict)  # per action, by period
    marketing: list[KpiResult] = field(default_factory=list)  # NPS of marketing's journey stages
    held_checks: dict[str, list[str]] = field(default_factory=dict)  # failed critical batch checks


def demo_outcome(settings: Settings, engine: Engine) -> DemoOutcome:
    out = DemoOutcome()
    with Session(engine) as s:
        out.cycles = {c.period: c for c in s.exec(select(Cycle))}
        out.actions = list(s.exec(select(Action).order_by(col(Action.id))))
        for row in s.exec(select(Measurement).order_by(col(Measurement.period))):
            out.measures.setdefault(row.action_id, []).append(row)
        owned = settings.departments["marketing"].owns.get("journey_stage", []) \
            if "marketing" in settings.departments else []
        out.marketing = list(s.exec(select(KpiResult).where(
            KpiResult.kpi == "nps", KpiResult.scope == "journey_stage",
            col(KpiResult.scope_value).in_(owned)).order_by(col(KpiResult.period))))
        for q in s.exec(select(QualityCheck).where(QualityCheck.success == False)):  # noqa: E712
            if q.severity == "critical" and q.level == "batch":
                column = f" ({q.column})" if q.column else ""
                out.held_checks.setdefault(q.period, []).append(f"{q.expectation}{column}")
    return out

