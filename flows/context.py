"""The one context of a cycle run: what the flow builds once and hands to each stage.

Stages meet here instead of in process-wide caches: the settings loaded once for the run, the
engine opened for it, the period, the month's rows they share (`tasks.month.Month`) and the
bookkeeping's memo of the feedback rows' stamp. Nothing in it outlives the run, and nothing is
keyed by a database URL (which would hold its password).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

from cxloop.config import Settings
from cxloop.flows.bookkeeping import FeedbackStamp
from cxloop.periods import parse_period
from cxloop.tasks.month import Month


@dataclass(frozen=True)
class CycleContext:
    settings: Settings
    engine: Engine
    period: str
    month: Month
    stamp: FeedbackStamp = field(default_factory=FeedbackStamp)

    @classmethod
    def for_run(cls, settings: Settings, engine: Engine, period: str) -> CycleContext:
        """The context of one cycle run, which holds the period's lock: its month is kept and
        shared by the stages (see `tasks.month`)."""
        period = parse_period(period)
        return cls(settings, engine, period, Month(engine, period, keep=True))
