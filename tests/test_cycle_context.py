"""One cycle context per run (`flows.context.CycleContext`): the stages are handed the settings,
the engine, the period and the month's rows; no module keeps state about a run, an engine or a
database URL (which holds the password), and the config file is read once per run."""

from __future__ import annotations

import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, make_url

import cxloop.config
import cxloop.flows.cycle
import cxloop.tasks.kpis
from cxloop.flows.cycle import cx_monthly_cycle
from cxloop.tasks.demo import DemoPlan, write_demo
from cxloop.tasks.month import Month


@pytest.fixture
def demo_config(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CXLOOP_DATABASE_URL", db_url)
    return write_demo(tmp_path / "demo", DemoPlan(periods=["2026-09", "2026-10"], rows_per_month=300, seed=2))


def _module_state() -> Iterator[tuple[str, Any]]:
    """Every module-level container of cxloop's modules, with its keys and items: (where, value)."""
    for name, module in list(sys.modules.items()):
        if not name.startswith("cxloop") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if isinstance(value, dict | weakref.WeakKeyDictionary | weakref.WeakValueDictionary):
                for k, v in list(value.items()):
                    yield f"{name}.{attr}", k
                    yield f"{name}.{attr}", v
            elif isinstance(value, list | set | frozenset | tuple | weakref.WeakSet):
                for v in list(value):
                    yield f"{name}.{attr}", v


def test_no_module_holds_run_state_keyed_by_engine_or_url(
        prefect_harness: None, demo_config: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Looked at in the middle of a run (while KPIs are computed): no module-level dict, list or set
    of cxloop holds the database URL (password included) or the run's month, and nothing is keyed
    by an id() that a later object could reuse."""
    secret = make_url(db_url).render_as_string(hide_password=False)
    seen: list[tuple[str, Any]] = []
    real = cxloop.tasks.kpis.compute_kpis

    def looking(settings: Any, engine: Engine, period: str, provisional: bool = False, *,
                month_rows: Month | None = None) -> Any:
        assert isinstance(month_rows, Month) and month_rows.keep, "the flow hands the stage its month"
        seen.extend(_module_state())
        seen.append(("engine id", id(engine)))
        return real(settings, engine, period, provisional, month_rows=month_rows)

    monkeypatch.setattr(cxloop.tasks.kpis, "compute_kpis", looking)
    assert cx_monthly_cycle("2026-09", config=str(demo_config), started_by="test")["status"] == "completed"
    engine_id = seen.pop()[1]
    assert seen, "the stage ran"
    for where, value in seen:
        assert not (isinstance(value, str) and secret in value), f"{where} holds the database URL"
        assert not isinstance(value, Month), f"{where} holds a run's month"
        assert not (isinstance(value, int) and value == engine_id), f"{where} is keyed by id(engine)"


def test_the_config_is_read_once_per_run(prefect_harness: None, demo_config: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []
    real = cxloop.config.load_settings

    def counted(path: Any = None, env: Any = None) -> Any:
        loads.append(str(path))
        return real(path, env)

    monkeypatch.setattr(cxloop.flows.cycle, "load_settings", counted)
    for period in ("2026-09", "2026-10"):
        cx_monthly_cycle(period, config=str(demo_config), started_by="test")
    assert loads == [str(demo_config)] * 2
