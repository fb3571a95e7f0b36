"""Re-measure stage end to end on SQLite and PostgreSQL: three cycles of decisions, idempotent re-runs.

World (NPS by journey stage, exact answer counts so the truth is known without sampling luck):
  delivery   action A: 10 -> 45 (target 30 met: verified), stays 45 (watch), falls to 5 (reopened)
  checkout   action B: 20 flat, due end of May: kept open in May, escalated in June
  returns    action C: 25 -> -10: worse, escalated at once
  payment    action D: 0 -> 20: improved but target 30 not met: progress noted, stays open
  s1..s6     comparison stages, flat at 30
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from cxloop.config import Settings, settings_from_dict
from cxloop.models import Action, ActionEvent, Feedback, Measurement
from cxloop.tasks.remeasure import effect_sentence, remeasure_actions

N = 300
HISTORY = ["2026-02", "2026-03"]
BASELINE = "2026-04"
CYCLES = ["2026-05", "2026-06", "2026-07"]
LEVELS: dict[str, list[float]] = {  # history..., baseline, May, June, July
    "delivery": [10, 10, 10, 45, 45, 5],
    "checkout": [20, 20, 20, 20, 20, 20],
    "returns": [25, 25, 25, -10, -10, -10],
    "payment": [0, 0, 0, 20, 20, 20],
    **{f"s{i}": [30.0] * 6 for i in range(1, 7)},
}


def answers(level: float, n: int) -> list[int]:
    """NPS answers (0-10) with exactly the given NPS: 35% passives, the rest split to hit the level."""
    promoters = round(n * (0.65 + level / 100) / 2)
    detractors = round(n * (0.65 - level / 100) / 2)
    return [10] * promoters + [8] * (n - promoters - detractors) + [3] * detractors


def feedback_rows() -> list[dict[str, Any]]:
    rows = []
    for p_idx, period in enumerate([*HISTORY, BASELINE, *CYCLES]):
        year, month = (int(x) for x in period.split("-"))
        for stage, levels in LEVELS.items():
            for i, score in enumerate(answers(levels[p_idx], N)):
                rows.append(dict(source="survey", response_id=f"{period}-{stage}-{i}", period=period,
                                 submitted_at=datetime(year, month, 10, tzinfo=UTC), channel="web",
                                 journey_stage=stage, nps=score, content_hash=f"h{period}{stage}{i}",
                                 quarantined=False, loaded_at=datetime(year, month, 10, tzinfo=UTC)))
    return rows


def make_settings(tmp_path: Path, url: str = "") -> Settings:
    return settings_from_dict({
        "project": {"language": "en"},
        "database": {"url": url},
        "kpis": {"history_cycles": 3, "bootstrap_resamples": 299, "min_n": 30},
        "actions": {"watch_cycles": 2},
        "targets": [{"kpi": "nps", "scope": "journey_stage", "value": 30}],
        "departments": {"logistics": {"name": "Logistics"}},
    }, tmp_path, env={})


def seed_world(engine: Engine) -> dict[str, int]:
    with engine.begin() as conn:
        conn.execute(insert(Feedback.__table__), feedback_rows())  # type: ignore[attr-defined]
    ids = {}
    with Session(engine) as session:
        for key, stage, due in (("A", "delivery", date(2026, 6, 30)), ("B", "checkout", date(2026, 5, 31)),
                                ("C", "returns", date(2026, 6, 30)), ("D", "payment", date(2026, 7, 31))):
            a = Action(kpi="nps", scope="journey_stage", scope_value=stage, department="logistics",
                       opened_period=BASELINE, due=due, baseline_value=LEVELS[stage][2], target=30.0)
            session.add(a)
            session.commit()
            ids[key] = a.id or 0
    return ids


def state(engine: Engine, ids: dict[str, int], period: str) -> dict[str, tuple[str, str | None, str]]:
    with Session(engine) as session:
        out = {}
        for key, aid in ids.items():
            action = session.get(Action, aid)
            assert action is not None
            m = session.exec(select(Measurement).where(Measurement.action_id == aid,
                                                       Measurement.period == period)).first()
            out[key] = (action.status, m.decision if m else None, m.verdict if m else "-")
        return out


def test_three_cycles_of_decisions(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    ids = seed_world(engine)

    may = remeasure_actions(settings, engine, "2026-05")
    assert may.measured == 4
    assert state(engine, ids, "2026-05") == {
        "A": ("verified", "verified", "improved"),
        "B": ("open", "kept_open", "no_change"),
        "C": ("escalated", "escalated", "worsened"),
        "D": ("open", "progress", "improved"),
    }
    june = remeasure_actions(settings, engine, "2026-06")
    assert state(engine, ids, "2026-06") == {
        "A": ("verified", "watch_ok", "improved"),
        "B": ("escalated", "escalated", "no_change"),  # still no change, now past its due date
        "C": ("escalated", "still_escalated", "worsened"),
        "D": ("open", "progress", "improved"),
    }
    assert june.decisions["escalated"] == 1
    july = remeasure_actions(settings, engine, "2026-07")
    assert state(engine, ids, "2026-07")["A"] == ("reopened", "reopened", "no_change")
    assert july.counts()["decision_reopened"] == 1

    with Session(engine) as session:
        m = session.exec(select(Measurement).where(Measurement.action_id == ids["A"],
                                                   Measurement.period == "2026-05")).one()
        assert m.method == "did" and m.comparison_scopes == 6  # stages with their own actions excluded
        assert m.value == pytest.approx(45.0, abs=0.5) and m.n == N
        assert m.change == pytest.approx(35.0, abs=0.5) and m.effect == pytest.approx(35.0, abs=0.5)
        assert m.effect_ci_low is not None and 20 < m.effect_ci_low < 35 < (m.effect_ci_high or 0)
        events = session.exec(select(ActionEvent).where(ActionEvent.action_id == ids["A"])
                              .order_by(col(ActionEvent.id))).all()
        assert [e.to_status for e in events if e.to_status] == ["verified", "reopened"]
        assert all(e.by == "cxloop" for e in events)
        verified = next(e for e in events if e.to_status == "verified")
        assert "NPS of delivery rose 35.0 points (95% CI" in verified.note
        assert "more than in 6 comparable scopes" in verified.note and "target met" in verified.note
        reopened = next(e for e in events if e.to_status == "reopened")
        assert "fell back below target" in reopened.note
        c_events = session.exec(select(ActionEvent).where(ActionEvent.action_id == ids["C"])).all()
        assert any(e.to_status == "escalated" and "worse than before" in e.note for e in c_events)
        d_notes = [e.note for e in session.exec(select(ActionEvent).where(ActionEvent.action_id == ids["D"]))]
        assert any("progress, target not met yet" in n for n in d_notes)


def test_rerunning_a_cycle_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    ids = seed_world(engine)
    remeasure_actions(settings, engine, "2026-05")

    def snapshot() -> tuple[list[tuple[Any, ...]], int, dict[str, tuple[str, str | None, str]]]:
        with Session(engine) as session:
            ms = [(m.action_id, m.period, m.value, m.effect, m.effect_ci_low, m.verdict, m.decision)
                  for m in session.exec(select(Measurement).order_by(col(Measurement.id)))]
            return ms, len(session.exec(select(ActionEvent)).all()), state(engine, ids, "2026-05")

    before = snapshot()
    again = remeasure_actions(settings, engine, "2026-05")
    # B, C, D recomputed to the same numbers; A, verified in this very cycle, is not picked again
    assert again.measured == 0 and again.unchanged == 3
    assert snapshot() == before


def test_rerun_after_the_cycle_opened_actions_reproduces_every_stored_number(engine: Engine,
                                                                             tmp_path: Path) -> None:
    """A finished month re-run after its actions stage opened an action on a comparison scope: the
    re-run judges against the comparison scopes the first run had (that action did not exist yet
    when the month was re-measured), so nothing stored changes."""
    settings = make_settings(tmp_path)
    seed_world(engine)
    remeasure_actions(settings, engine, "2026-05")
    with Session(engine) as session:  # what the actions stage of May does after this stage
        session.add(Action(kpi="nps", scope="journey_stage", scope_value="s1", department="logistics",
                           opened_period="2026-05", target=30.0))
        session.commit()

    def stored() -> list[tuple[Any, ...]]:
        with Session(engine) as session:
            return [(m.action_id, m.value, m.effect, m.effect_ci_low, m.effect_ci_high, m.verdict,
                     m.comparison_scopes, m.decision)
                    for m in session.exec(select(Measurement).order_by(col(Measurement.id)))]

    before = stored()
    again = remeasure_actions(settings, engine, "2026-05")
    assert again.unchanged == 3 and again.changed == 0
    assert stored() == before
    assert {row[6] for row in before} == {6}


def test_changed_inputs_never_rewrite_a_decided_measurement(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    ids = seed_world(engine)
    remeasure_actions(settings, engine, "2026-05")
    with Session(engine) as session:
        before = session.exec(select(Measurement).where(Measurement.action_id == ids["B"])).one()
        kept = (before.effect, before.verdict, before.decision)
        # checkout's May answers re-exported: now much better
        for row in session.exec(select(Feedback).where(Feedback.period == "2026-05",
                                                       Feedback.journey_stage == "checkout")):
            row.nps = 10
            session.add(row)
        session.commit()
    again = remeasure_actions(settings, engine, "2026-05")
    assert again.changed == 1 and again.unchanged == 2
    again = remeasure_actions(settings, engine, "2026-05")  # said once, not at every re-run
    with Session(engine) as session:
        after = session.exec(select(Measurement).where(Measurement.action_id == ids["B"])).one()
        assert (after.effect, after.verdict, after.decision) == kept
        notes = [e.note for e in session.exec(select(ActionEvent).where(ActionEvent.action_id == ids["B"]))
                 if "re-run of 2026-05" in e.note]
        assert len(notes) == 1 and "the stored measurement and decision are kept" in notes[0]


def test_lone_scope_falls_back_to_pre_post(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    seed_world(engine)
    with Session(engine) as session:  # the overall scope has no comparison scope by definition
        session.add(Action(kpi="nps", scope="overall", scope_value="all", department="logistics",
                           opened_period=BASELINE, target=50.0))
        session.commit()
    remeasure_actions(settings, engine, "2026-05")
    with Session(engine) as session:
        m = session.exec(select(Measurement).join(Action, col(Action.id) == col(Measurement.action_id))
                         .where(Action.scope == "overall")).one()
        assert m.method == "pre_post" and m.comparison_scopes == 0
        assert "pre/post" in m.note
        assert m.decision in {"progress", "kept_open"}  # overall NPS rose a little; target 50 far away


def test_effects_cli_json(engine: Engine, db_url: str, tmp_path: Path) -> None:
    from cxloop.cli import app

    settings = make_settings(tmp_path, db_url)
    ids = seed_world(engine)
    remeasure_actions(settings, engine, "2026-05")
    cfg = tmp_path / "cxloop.toml"
    cfg.write_text(f'[project]\nlanguage = "en"\n[database]\nurl = "{db_url}"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["effects", "--period", "2026-05", "--format", "json",
                                      "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 4
    for key in ("action_id", "period", "value", "n", "change", "change_ci_low", "change_ci_high",
                "effect", "effect_ci_low", "effect_ci_high", "verdict"):
        assert key in rows[0]
    one = CliRunner().invoke(app, ["effects", "--action", str(ids["C"]), "-f", "json", "-c", str(cfg)])
    assert [r["verdict"] for r in json.loads(one.stdout)] == ["worsened"]
    table = CliRunner().invoke(app, ["effects", "-p", "2026-05", "-c", str(cfg)], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "improved" in table.stdout


def test_effect_sentence_in_chinese(tmp_path: Path) -> None:
    action = Action(kpi="nps", scope="journey_stage", scope_value="delivery", department="x",
                    opened_period=BASELINE)
    m = Measurement(action_id=1, period="2026-05", effect=9.5, effect_ci_low=4.1, effect_ci_high=14.8,
                    method="did", comparison_scopes=10)
    assert effect_sentence(action, m, "en") == (
        "NPS of delivery rose 9.5 points (95% CI 4.1 to 14.8) more than in 10 comparable scopes")
    zh = effect_sentence(action, m, "zh")
    assert "净推荐值" in zh and "9.5" in zh and "上升" in zh
