"""End to end: four monthly cycles through the real Prefect flow, on SQLite and PostgreSQL.

The story: month 2 delivery collapses and hotline complaints rise (two actions, two notices);
month 3 delivery recovers (its action is verified, the owner hears the verdict) while complaints
stay up (no change: escalated past its due date); month 4's app export is broken (the gate holds:
no action, only the data owners hear). Re-running a month changes and sends nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session, select

from cxloop.flows.cycle import cx_monthly_cycle
from cxloop.models import Action, AuditEntry, Cycle, CycleStage, Feedback, Measurement, OutboxMessage
from cxloop.tasks.demo import DemoPlan, Truth, write_demo

PERIODS = ["2026-06", "2026-07", "2026-08", "2026-09"]


@pytest.fixture
def demo_config(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    plan = DemoPlan(periods=PERIODS, rows_per_month=2400, seed=3)
    plan.stage_truth[("2026-07", "delivery")] = Truth(0.25, 0.45)
    plan.complaint_rate = {p: 0.32 for p in PERIODS[1:]}
    plan.broken_app_period = "2026-09"
    monkeypatch.setenv("CXLOOP_DATABASE_URL", db_url)
    return write_demo(tmp_path / "demo", plan)


def _notices(folder: Path) -> dict[str, list[str]]:
    root = folder / "notices"
    return {d.name: sorted(f.read_text(encoding="utf-8") for f in d.iterdir()) for d in root.iterdir()
            if d.is_dir()}


def test_four_cycles_tell_the_whole_story(prefect_harness: None, demo_config: Path) -> None:
    from cxloop.config import load_settings
    from cxloop.db import open_db

    settings = load_settings(demo_config)
    engine = open_db(settings.database_url)
    outcomes = [cx_monthly_cycle(p, config=str(demo_config), started_by="test") for p in PERIODS]
    assert [o["status"] for o in outcomes] == ["completed", "completed", "completed", "held"]

    with Session(engine) as s:
        actions = list(s.exec(select(Action)))
        by_key = {(a.kpi, a.scope, a.scope_value): a for a in actions}
        delivery = by_key[("nps", "journey_stage", "delivery")]
        assert delivery.department == "logistics" and delivery.opened_period == "2026-07"
        assert delivery.status == "verified"
        m = s.exec(select(Measurement).where(Measurement.action_id == delivery.id,
                                             Measurement.period == "2026-08")).one()
        assert m.verdict == "improved" and m.effect is not None and m.effect > 0
        hotline = by_key[("complaint_rate", "channel", "hotline")]
        assert hotline.department == "customer_service"
        assert hotline.status not in ("verified", "cancelled")
        assert not [a for a in actions if a.opened_period == "2026-09"], "a held cycle opens no action"
        assert s.exec(select(Cycle).where(Cycle.period == "2026-09")).one().gate == "held"
        outbox = list(s.exec(select(OutboxMessage)))
        assert {(o.period, o.kind) for o in outbox if o.period == "2026-09"} == {("2026-09", "data_quality")}
        assert all(o.status == "sent" for o in outbox)
        stages = list(s.exec(select(CycleStage).where(CycleStage.period == "2026-08")))
        assert {st.stage for st in stages} >= {"collect", "validate", "kpis", "remeasure", "actions",
                                                "notify", "report"}

    notices = _notices(demo_config.parent)
    assert any("2026-07" in text for text in notices["logistics"])
    assert any("2026-08" in text for text in notices["logistics"]), "the owner hears the verdict"
    assert notices.get("data-owners"), "data owners hear about the held cycle"
    assert (demo_config.parent / "reports" / "2026-08" / "report.html").exists()

    # Re-running a period is safe: nothing duplicated, nothing re-sent.
    with Session(engine) as s:
        before = (len(list(s.exec(select(Action)))), len(list(s.exec(select(Feedback)))),
                  len(list(s.exec(select(OutboxMessage)))), len(list(s.exec(select(Measurement)))))
    files_before = sum(len(v) for v in _notices(demo_config.parent).values())
    again = cx_monthly_cycle("2026-08", config=str(demo_config), started_by="test")
    assert again["status"] == "completed"
    assert "collect" in again["resumed"], "unchanged source files are not collected again"
    with Session(engine) as s:
        after = (len(list(s.exec(select(Action)))), len(list(s.exec(select(Feedback)))),
                 len(list(s.exec(select(OutboxMessage)))), len(list(s.exec(select(Measurement)))))
        collect = s.exec(select(CycleStage).where(CycleStage.period == "2026-08",
                                                  CycleStage.stage == "collect")).one()
    assert after == before
    assert sum(len(v) for v in _notices(demo_config.parent).values()) == files_before
    assert collect.status == "completed"
    engine.dispose()


def test_accepting_the_data_risk_publishes_a_held_month(prefect_harness: None, demo_config: Path) -> None:
    from cxloop.config import load_settings
    from cxloop.db import open_db

    engine = open_db(load_settings(demo_config).database_url)
    for p in PERIODS[:3]:
        cx_monthly_cycle(p, config=str(demo_config), started_by="test")
    held = cx_monthly_cycle("2026-09", config=str(demo_config), started_by="test")
    assert held["status"] == "held"
    accepted = cx_monthly_cycle("2026-09", config=str(demo_config), started_by="ann",
                                accept_data_risk=True, risk_reason="app export checked by hand")
    assert accepted["status"] == "completed"
    with Session(engine) as s:
        cycle = s.exec(select(Cycle).where(Cycle.period == "2026-09")).one()
        assert (cycle.gate, cycle.risk_accepted_by, cycle.risk_reason) == (
            "accepted", "ann", "app export checked by hand")
        assert cycle.risk_accepted_at is not None
        kinds = {o.kind for o in s.exec(select(OutboxMessage).where(OutboxMessage.period == "2026-09"))}
        assert "digest" in kinds, "departments hear about the month once the risk is accepted"
        [audit] = s.exec(select(AuditEntry).where(AuditEntry.verb == "accept_data_risk")).all()
        assert (audit.actor, audit.target, audit.detail) == (
            "ann", "cycle:2026-09", "app export checked by hand")
        report = Path(cycle.report_path or "")
    assert accepted["gate"] == "accepted" and accepted["note"] is None
    assert 'id="provisional"' not in report.read_text(encoding="utf-8")  # no longer a provisional month

    # A run without the override on the same data keeps the acceptance (it flipped back to held),
    # also once a later month has run (which changes validate's inputs, not this month).
    again = cx_monthly_cycle("2026-09", config=str(demo_config), started_by="schedule")
    assert (again["status"], again["gate"], again["note"]) == ("completed", "accepted", None)
    assert 'id="provisional"' not in report.read_text(encoding="utf-8")
    cx_monthly_cycle("2026-10", config=str(demo_config), started_by="schedule")  # no data: held
    again = cx_monthly_cycle("2026-09", config=str(demo_config), started_by="schedule")
    assert (again["status"], again["gate"], again["note"]) == ("completed", "accepted", None)

    # Data that changed and still fails the gate: held again, and the run says why; the audit log
    # keeps the acceptance.
    survey = next((demo_config.parent / "data" / "survey").glob("survey_2026-09.csv"))
    lines = survey.read_text(encoding="utf-8-sig").splitlines()
    survey.write_text("\n".join([*lines, lines[-1].replace(lines[-1].split(",")[0], "late-1", 1)]) + "\n",
                      encoding="utf-8-sig")
    changed = cx_monthly_cycle("2026-09", config=str(demo_config), started_by="schedule")
    assert (changed["status"], changed["gate"]) == ("held", "held")
    assert "the month's data changed since ann accepted the risk" in changed["note"]
    with Session(engine) as s:
        cycle = s.exec(select(Cycle).where(Cycle.period == "2026-09")).one()
        assert (cycle.gate, cycle.risk_accepted_by, cycle.risk_reason) == ("held", None, None)
        assert len(s.exec(select(AuditEntry).where(AuditEntry.verb == "accept_data_risk")).all()) == 1
    assert 'id="provisional"' in report.read_text(encoding="utf-8")
    # The reports are written again when only the gate or its acceptance changes (nothing else need
    # differ: accepting a month that opens no action left its pages saying "provisional").
    from cxloop.flows.bookkeeping import update_cycle
    from cxloop.flows.context import CycleContext
    from cxloop.flows.cycle import write_reports

    ctx = CycleContext.for_run(load_settings(demo_config), engine, "2026-09")
    assert write_reports.fn(ctx).get("resumed")
    update_cycle(engine, "2026-09", gate="accepted", risk_accepted_by="ann", risk_reason="checked")
    assert not write_reports.fn(ctx).get("resumed")
    update_cycle(engine, "2026-09", risk_reason="checked again, by phone")
    assert not write_reports.fn(ctx).get("resumed")
    engine.dispose()


def test_a_crashed_stage_leaves_a_consistent_cycle_that_the_next_run_resumes(
        prefect_harness: None, demo_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cxloop.tasks.report
    from cxloop.config import load_settings
    from cxloop.db import open_db

    engine = open_db(load_settings(demo_config).database_url)

    def boom(*args: object, **kwargs: object) -> list[Path]:
        raise RuntimeError("disk full")

    with monkeypatch.context() as patched, pytest.raises(RuntimeError, match="disk full"):
        patched.setattr(cxloop.tasks.report, "write_reports", boom)
        cx_monthly_cycle("2026-06", config=str(demo_config), started_by="test")
    with Session(engine) as s:
        cycle = s.exec(select(Cycle).where(Cycle.period == "2026-06")).one()
        assert cycle.status == "failed" and "disk full" in (cycle.error or "")
        stages = {st.stage: st for st in s.exec(select(CycleStage).where(CycleStage.period == "2026-06"))}
        assert stages["report"].status == "failed"
        assert stages["kpis"].status == "completed"
        loaded = len(list(s.exec(select(Feedback).where(Feedback.period == "2026-06"))))
    again = cx_monthly_cycle("2026-06", config=str(demo_config), started_by="test")
    assert again["status"] == "completed"
    with Session(engine) as s:
        stages = {st.stage: st for st in s.exec(select(CycleStage).where(CycleStage.period == "2026-06"))}
        assert stages["collect"].counts.get("resumed") is None  # the record of the first, real run
        assert stages["report"].status == "completed"
        assert len(list(s.exec(select(Feedback).where(Feedback.period == "2026-06")))) == loaded
    assert (demo_config.parent / "reports" / "2026-06" / "report.html").exists()
    engine.dispose()


def test_cycles_on_prefect_s_temporary_server_send_no_heartbeats() -> None:
    """Only a lasting server (PREFECT_API_URL) is told that a run is alive; stopping the heartbeat
    thread held each flow run up to a second at its end."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    from cxloop.flows.cycle import on_temporary_server

    default = get_current_settings().flows.heartbeat_frequency
    assert default is not None
    with temporary_settings(restore_defaults={PREFECT_API_URL}), on_temporary_server():
        assert get_current_settings().flows.heartbeat_frequency is None
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:4200/api"}), on_temporary_server():
        assert get_current_settings().flows.heartbeat_frequency == default


def test_a_cycle_told_not_to_notify_queues_no_notice(prefect_harness: None, demo_config: Path) -> None:
    """A backfilled month of history (`cxloop backfill` tells every month but the newest not to
    notify): its notify stage is skipped with the reason, and the outbox holds nothing of it."""
    from cxloop.config import load_settings
    from cxloop.db import open_db
    from cxloop.flows.cycle import NOT_NOTIFIED

    engine = open_db(load_settings(demo_config).database_url)
    done = cx_monthly_cycle(PERIODS[0], config=str(demo_config), started_by="test", notify=False)
    assert done["status"] == "completed"
    with Session(engine) as s:
        stage = s.exec(select(CycleStage).where(CycleStage.period == PERIODS[0],
                                                CycleStage.stage == "notify")).one()
        assert (stage.status, stage.counts) == ("skipped", {"reason": NOT_NOTIFIED})
        assert not s.exec(select(OutboxMessage)).all()
        report = s.exec(select(CycleStage).where(CycleStage.period == PERIODS[0],
                                                 CycleStage.stage == "report")).one()
        assert report.status == "completed"
    engine.dispose()
