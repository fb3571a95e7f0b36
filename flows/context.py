"""The one context of a cycle run: what the flow builds once and hands to each stage.

Stages meet here instead of in process-wide caches: the settings loaded once for the run, the
engine opened for it, the period, the month's rows they share (`tasks.month.Month`) and the
bookkeeping's memo of the feedback rows' stamp. Nothing in it outlives the run, and nothing is
keyed by a database URL (which would hold its password).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from cxloop.config import Settings
from cxloop.flows.bookkeeping import FeedbackStamp
from cxloop.periods import parse_period
from cxloop.tasks.columnar import Copies
from cxloop.tasks.month import Month

if TYPE_CHECKING:
    from cxloop.tasks.drivers import DriverAnalysis


class KeyDrivers:
    """The month's key-driver analyses (`tasks.ratings.month_drivers`), computed on first use - by the
    actions stage, else the report stage, both after the gate has flagged what it quarantines - and
    shared by the stages after it. Recomputing gives the same figures (seeded by period and scope)."""

    def __init__(self) -> None:
        self._value: dict[tuple[str, str], DriverAnalysis] | None = None

    def get(self, settings: Settings, engine: Engine, period: str) -> dict[tuple[str, str], DriverAnalysis]:
        if self._value is None:
            from cxloop.tasks.ratings import month_drivers  # numpy/pandas: on use, as the stages do

            self._value = month_drivers(settings, engine, period)
        return self._value


@dataclass(frozen=True)
class CycleContext:
    settings: Settings
    engine: Engine
    period: str
    month: Month
    stamp: FeedbackStamp = field(default_factory=FeedbackStamp)
    drivers: KeyDrivers = field(default_factory=KeyDrivers)

    def key_drivers(self) -> dict[tuple[str, str], DriverAnalysis]:
        """The month's key-driver analyses, once per run (none without `[[drivers]]`)."""
        return self.drivers.get(self.settings, self.engine, self.period)

    @classmethod
    def for_run(cls, settings: Settings, engine: Engine, period: str) -> CycleContext:
        """The context of one cycle run, which holds the period's lock: its month is kept and
        shared by the stages (see `tasks.month`), a month too big to keep through its columnar copy.
        With a Dask cluster (`[engine] dask_address`) no month is kept in memory: the cluster's
        workers read the copy."""
        period = parse_period(period)
        copies = Copies(settings.resolve(settings.engine.columnar_dir))
        keep_rows = 0 if settings.engine.dask_address else None
        return cls(settings, engine, period, Month(engine, period, keep=True, copies=copies,
                                                   keep_rows=keep_rows))
