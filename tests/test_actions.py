"""The actions stage: candidates, routing, de-duplication, evidence, severity, due dates, playbooks."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, SQLModel, select

from cxloop.config import KPI_NAMES, Settings, TargetConfig, settings_from_dict
from cxloop.db import session_scope
from cxloop.models import Action, ActionEvent, Feedback, KpiResult, Measurement
from cxloop.tasks.actions import (
    ActionError,
    action_detail,
    action_row,
    assign,
    change_status,
    due_date,
    gap_of,
    is_overdue,
    latest_measurements,
    list_actions,
    open_actions,
    playbook_source,
    render_playbook,
    route,
    severity_of,
)
from cxloop.tasks.lifecycle import transition

COMPANY: dict[str, Any] = {
    "project": {"language": "en", "timezone": "Asia/Shanghai"},
    "departments": {
        "logistics": {"name": "Logistics", "head": "王丽", "language": "zh",
                      "owns": {"journey_stage": ["delivery"], "touchpoint": ["courier"],
                               "topic": ["delivery_speed"]}},
        "service": {"name": "Customer Service", "head": "Anna Smith", "language": "en",
                    "owns": {"channel": ["hotline"], "journey_stage": ["after_sales"]}},
    },
    "actions": {"default_owner": "cx_office", "due_days": {"high": 7, "medium": 21, "low": 60},
                "worst_comments": 2},
}


def make_settings(base_dir: Path, **overrides: Any) -> Settings:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in COMPANY.items()}
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value}
    return settings_from_dict(data, base_dir, env={})


def add_result(engine: Engine, period: str, kpi: str = "nps", scope: str = "journey_stage",
               scope_value: str = "delivery", *, value: float = 20.0, ci: tuple[float, float] = (14.0, 26.0),
               n: int = 400, target: float | None = 40.0, status: str = "missed", signal: str | None = None,
               provisional: bool = False, min_n: int | None = 30) -> None:
    with session_scope(engine) as s:
        s.add(KpiResult(period=period, kpi=kpi, scope=scope, scope_value=scope_value, n=n, value=value,
                        ci_low=ci[0], ci_high=ci[1], method="test", target=target, min_n=min_n,
                        status=status, signal=signal, provisional=provisional))


_counter = iter(range(1, 10**6))


def add_feedback(engine: Engine, period: str, comment: str | None, *, quarantined: bool = False,
                 **fields: Any) -> None:
    i = next(_counter)
    year, month = (int(x) for x in period.split("-"))
    row: dict[str, Any] = {"source": "survey", "response_id": f"r{i}", "period": period,
           "submitted_at": datetime(year, month, 10, tzinfo=UTC), "channel": "web",
           "comment": comment, "content_hash": f"h{i}", "quarantined": quarantined}
    row.update(fields)
    with session_scope(engine) as s:
        s.add(Feedback(**row))


def dump(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, for 'nothing changed' comparisons."""
    out: dict[str, list[dict[str, Any]]] = {}
    with Session(engine) as s:
        for name, table in sorted(SQLModel.metadata.tables.items()):
            rows = s.connection().execute(table.select()).mappings().all()
            out[name] = sorted((dict(r) for r in rows), key=lambda r: str(r.get("id", r)))
    return out


def actions(engine: Engine) -> list[Action]:
    with Session(engine) as s:
        return list(s.exec(select(Action).order_by(Action.id)).all())  # type: ignore[arg-type]


def events(engine: Engine, action_id: int) -> list[ActionEvent]:
    with Session(engine) as s:
        return list(s.exec(select(ActionEvent).where(ActionEvent.action_id == action_id)
                           .order_by(ActionEvent.id)).all())  # type: ignore[arg-type]


# --------------------------------------------------------------------------- routing

@pytest.mark.parametrize(("scope", "value", "owner"), [
    ("department", "logistics", "logistics"),
    ("department", "Customer Service", "service"),  # by display name too
    ("department", "legal", "cx_office"),  # not a configured department
    ("journey_stage", "delivery", "logistics"),
    ("journey_stage", "after_sales", "service"),
    ("journey_stage", "purchase", "cx_office"),  # nobody owns it
    ("touchpoint", "courier", "logistics"),
    ("channel", "hotline", "service"),
    ("channel", "web", "cx_office"),
    ("topic", "delivery_speed", "logistics"),
    ("overall", "all", "cx_office"),
    ("segment", "vip", "cx_office"),
    ("region", "east", "cx_office"),
    ("department x region", "logistics | east", "logistics"),
    ("region x department", "east | service", "service"),
    ("channel x region", "hotline | east", "service"),
    ("segment x region", "vip | east", "cx_office"),
    ("department x region", "legal | east", "cx_office"),
])
def test_route_each_scope_kind(tmp_path: Path, scope: str, value: str, owner: str) -> None:
    assert route(make_settings(tmp_path), scope, value) == owner


# --------------------------------------------------------------------------- candidates

def test_missed_and_low_signals_open_but_not_at_risk_insufficient_or_high(engine: Engine,
                                                                         tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    p = "2026-10"
    add_result(engine, p, "nps", "journey_stage", "delivery", status="missed")
    add_result(engine, p, "csat", "channel", "hotline", status="met", signal="signal_low", n=120,
               value=70, ci=(62, 78), target=65)
    add_result(engine, p, "nps", "channel", "web", status="at_risk", value=35, ci=(25, 45))
    add_result(engine, p, "nps", "channel", "app", status="insufficient", n=12, value=-10, ci=(-60, 40))
    add_result(engine, p, "nps", "region", "east", status="no_target", target=None, signal="signal_high")
    add_result(engine, p, "csat", "region", "west", status="no_target", target=None, signal="signal_low",
               n=20, min_n=30)  # a signal on too few answers
    add_result(engine, p, "responses", "overall", "all", status="missed", target=1000, value=500)
    summary = open_actions(settings, engine, p)
    assert (summary.opened, summary.updated, summary.skipped, summary.candidates) == (2, 0, 0, 2)
    got = {(a.kpi, a.scope_value, a.department, a.head) for a in actions(engine)}
    assert got == {("nps", "delivery", "logistics", "王丽"), ("csat", "hotline", "service", "Anna Smith")}
    assert sorted(summary.action_ids) == [a.id for a in actions(engine)]
    assert summary.counts()["opened"] == 2


def test_signal_uses_configured_min_n_when_result_has_none(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, kpis={"min_n": 50, "min_n_per_kpi": {"ces": 200}})
    add_result(engine, "2026-10", "csat", "channel", "hotline", status="no_target", target=None,
               signal="signal_low", n=60, min_n=None)
    add_result(engine, "2026-10", "ces", "channel", "hotline", status="no_target", target=None,
               signal="signal_low", n=150, min_n=None)
    open_actions(settings, engine, "2026-10")
    assert [a.kpi for a in actions(engine)] == ["csat"]


def test_provisional_period_opens_nothing(engine: Engine, tmp_path: Path) -> None:
    add_result(engine, "2026-10", "nps", status="missed", provisional=True)
    add_result(engine, "2026-10", "csat", status="missed", provisional=False)
    summary = open_actions(make_settings(tmp_path), engine, "2026-10")
    assert summary.provisional and summary.opened == 0
    assert actions(engine) == []


# --------------------------------------------------------------------------- de-duplication

def test_next_cycle_adds_evidence_to_the_open_action(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    add_result(engine, "2026-09", value=20, ci=(14, 26))
    add_result(engine, "2026-10", value=25, ci=(19, 31))
    first = open_actions(settings, engine, "2026-09")
    second = open_actions(settings, engine, "2026-10")
    [action] = actions(engine)
    assert first.opened == 1 and second.opened == 0 and second.updated == 1
    assert second.action_ids == [action.id]
    assert [e["period"] for e in action.evidence] == ["2026-09", "2026-10"]
    assert action.baseline_value == 20 and action.opened_period == "2026-09"
    notes = [e.note for e in events(engine, action.id or 0)]
    assert len(notes) == 2 and notes[0].startswith("opened for logistics")
    assert notes[1].startswith("new evidence: 2026-10")


def test_an_earlier_month_run_later_adds_nothing_to_a_later_months_action(engine: Engine,
                                                                           tmp_path: Path) -> None:
    """A backfill of history after a live month: the earlier month's shortfall in the same scope
    neither becomes evidence of the later month's action (it did, as "new evidence: 2026-09")
    nor opens a second action; another scope of the earlier month still opens its own."""
    settings = make_settings(tmp_path)
    add_result(engine, "2026-10")
    add_result(engine, "2026-09", value=18, ci=(12, 24))
    add_result(engine, "2026-09", "csat", "channel", "hotline", value=60, ci=(55, 65), target=80)
    assert open_actions(settings, engine, "2026-10").opened == 1
    earlier = open_actions(settings, engine, "2026-09")
    assert (earlier.opened, earlier.updated, earlier.skipped) == (1, 0, 1)
    nps = next(a for a in actions(engine) if a.kpi == "nps")
    assert nps.opened_period == "2026-10" and [e["period"] for e in nps.evidence] == ["2026-10"]
    assert [e.note[:9] for e in events(engine, nps.id or 0)] == ["opened fo"]
    assert [(a.kpi, a.opened_period) for a in actions(engine)] == [("nps", "2026-10"), ("csat", "2026-09")]


def test_rerunning_a_period_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    add_result(engine, "2026-09")
    add_result(engine, "2026-10")
    add_result(engine, "2026-10", "csat", "channel", "hotline", value=60, ci=(55, 65), target=80)
    add_feedback(engine, "2026-10", "很慢 13812345678", journey_stage="delivery", nps=0)
    open_actions(settings, engine, "2026-09")
    open_actions(settings, engine, "2026-10")
    before = dump(engine)
    again = open_actions(settings, engine, "2026-10")
    assert (again.opened, again.updated, again.skipped) == (0, 0, 2)
    open_actions(settings, engine, "2026-09")
    assert dump(engine) == before


def test_dedupe_by_status(engine: Engine, tmp_path: Path) -> None:
    """Any status but verified/cancelled takes the next cycle's evidence (escalated included)."""
    settings = make_settings(tmp_path)
    cases = {"open": True, "escalated": True, "done": True, "reopened": True, "verified": False,
             "cancelled": False}
    for period in ("2026-09", "2026-10"):
        for status in cases:
            add_result(engine, period, "nps", "channel", status)
    open_actions(settings, engine, "2026-09")
    with session_scope(engine) as s:
        for action in s.exec(select(Action)).all():
            target = action.scope_value
            if target == "reopened":
                transition(s, action, "verified", by="test", period="2026-09")
            if target != "open":
                transition(s, action, target, by="test", note="for the test", period="2026-09")
    summary = open_actions(settings, engine, "2026-10")
    assert (summary.updated, summary.opened) == (4, 2)
    rows = actions(engine)
    for status, same in cases.items():
        mine = [a for a in rows if a.scope_value == status]
        assert len(mine) == (1 if same else 2), status
        assert mine[0].status == status
        assert [e["period"] for e in mine[-1].evidence] == (["2026-09", "2026-10"] if same else ["2026-10"])


def test_closed_action_holding_the_period_is_not_reopened_by_a_rerun(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    add_result(engine, "2026-10")
    open_actions(settings, engine, "2026-10")
    with session_scope(engine) as s:
        action = s.get(Action, actions(engine)[0].id)
        assert action is not None
        transition(s, action, "cancelled", by="test", note="known issue, handled elsewhere")
    assert open_actions(settings, engine, "2026-10").skipped == 1
    assert len(actions(engine)) == 1


# --------------------------------------------------------------------------- severity and due dates

@pytest.mark.parametrize(("gap", "ci", "target", "n", "expected"), [
    (12.0, (14.0, 26.0), 40.0, 400, "high"),     # 2 half-widths but 30% of target, n >= 100
    (12.0, (14.0, 26.0), 40.0, 60, "medium"),    # same gap, few customers
    (3.0, (33.0, 41.0), 40.0, 150, "low"),       # 0.75 half-width, 7.5% of target: small
    (3.0, (33.0, 41.0), 40.0, 5000, "medium"),   # small gap, very many customers
    (0.5, (0.3, 0.5), 0.3, 2000, "high"),        # complaint rate far above target
    (None, (60.0, 70.0), None, 150, "medium"),   # signal only, no target
    (None, (60.0, 70.0), None, 40, "low"),
])
def test_severity_rule(gap: float | None, ci: tuple[float, float], target: float | None, n: int,
                       expected: str) -> None:
    assert severity_of(gap, ci[0], ci[1], target, n) == expected


def test_gap_is_positive_in_the_worse_direction() -> None:
    assert gap_of("nps", 20, 40) == 20
    assert gap_of("complaint_rate", 0.08, 0.05) == pytest.approx(0.03)
    assert gap_of("first_response_hours", 10, 24) == -14
    assert gap_of("nps", None, 40) is None


def test_due_date_counts_from_period_end_per_severity(engine: Engine, tmp_path: Path) -> None:
    cases: dict[str, tuple[dict[str, Any], str, int]] = {
        "a": ({"value": 20, "ci": (14, 26), "n": 400}, "high", 7),
        "b": ({"value": 30, "ci": (25, 35), "n": 40}, "medium", 21),
        "c": ({"value": 37, "ci": (33, 39), "n": 50}, "low", 60),
    }
    for value, (kw, _, _) in cases.items():
        add_result(engine, "2026-10", "nps", "segment", value, **kw)
    open_actions(make_settings(tmp_path), engine, "2026-10")
    got = {a.scope_value: (a.severity, a.due) for a in actions(engine)}
    assert got == {v: (sev, date(2026, 10, 31) + timedelta(days=d)) for v, (_, sev, d) in cases.items()}


def test_backfill_gets_the_dates_a_live_run_would(engine: Engine, tmp_path: Path) -> None:
    """A month run a year late is due relative to its own end, not to today."""
    add_result(engine, "2024-02", value=20, ci=(14, 26), n=400)
    open_actions(make_settings(tmp_path), engine, "2024-02")
    [action] = actions(engine)
    assert action.due == date(2024, 3, 7)  # 29 Feb 2024 + 7 days
    assert due_date(make_settings(tmp_path), "2024-12", "low") == date(2025, 3, 1)


# --------------------------------------------------------------------------- evidence

def test_evidence_quotes_the_worst_comments_masked(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    p = "2026-10"
    add_result(engine, p, value=20, ci=(14, 26), n=400, target=40)
    add_feedback(engine, p, "Courier never came, call me 13812345678", journey_stage="delivery", nps=0)
    add_feedback(engine, p, "Late again, write to li.lei@example.com", journey_stage="delivery", nps=2)
    add_feedback(engine, p, "ok I guess", journey_stage="delivery", nps=6)
    add_feedback(engine, p, "worst ever", journey_stage="purchase", nps=0)  # another scope
    add_feedback(engine, p, "secret 13900001111", journey_stage="delivery", nps=0, quarantined=True)
    add_feedback(engine, "2026-09", "last month", journey_stage="delivery", nps=0)
    add_feedback(engine, p, None, journey_stage="delivery", nps=0)
    open_actions(settings, engine, p)
    [action] = actions(engine)
    [entry] = action.evidence
    assert {k: entry[k] for k in ("period", "value", "ci_low", "ci_high", "n", "target", "gap", "status",
                                  "signal")} == {
        "period": p, "value": 20, "ci_low": 14, "ci_high": 26, "n": 400, "target": 40, "gap": 20,
        "status": "missed", "signal": None}
    texts = [c["text"] for c in entry["worst_comments"]]
    assert texts == ["Courier never came, call me [phone]", "Late again, write to [email]"]
    assert [c["score"] for c in entry["worst_comments"]] == [0, 2]
    assert "13812345678" not in json.dumps(action.evidence) + (action.playbook or "")


def test_only_answers_on_the_wrong_side_or_negative_comments_are_quoted(engine: Engine,
                                                                       tmp_path: Path) -> None:
    settings = make_settings(tmp_path, actions={"worst_comments": 5})
    p = "2026-10"
    add_result(engine, p, "csat", "channel", "hotline", value=50, ci=(40, 60), target=80, n=120)
    add_feedback(engine, p, "love it", channel="hotline", csat=5)
    add_feedback(engine, p, "fine but they hung up on me", channel="hotline", csat=4, sentiment="negative",
                 sentiment_score=0.2)
    add_feedback(engine, p, "meh", channel="hotline", csat=3)
    add_feedback(engine, p, "no answer for days", channel="hotline", csat=1)
    open_actions(settings, engine, p)
    [action] = actions(engine)
    quoted = [(c["score"], c["text"]) for c in action.evidence[0]["worst_comments"]]
    assert quoted == [(1, "no answer for days"), (3, "meh"), (4, "fine but they hung up on me")]


def test_a_month_read_in_parts_quotes_the_same_comments(engine: Engine, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A month too large to keep is read part by part, keeping the commented rows: the same rows in
    id order as from the month at once, so the same evidence."""
    import cxloop.tasks.month as month
    from cxloop.tasks.actions import commented_rows

    settings = make_settings(tmp_path, actions={"worst_comments": 4})
    p = "2026-10"
    add_result(engine, p, value=20, ci=(14, 26), n=400, target=40)
    for i in range(40):  # ties on the answer: the order of ids decides
        add_feedback(engine, p, None if i % 3 == 0 else "" if i % 5 == 0 else f"comment {i}",
                     journey_stage="delivery" if i % 2 else "purchase", nps=i % 4, quarantined=i % 7 == 0,
                     sentiment="negative" if i % 4 == 1 else None, sentiment_score=(i % 6) / 10)
    whole = commented_rows(month.Month(engine, p, keep=True))  # the kept month: one part
    monkeypatch.setattr(month, "PART_ROWS", 4)
    assert len(list(month.Month(engine, p).parts(["id"], clean=True))) == 9
    pd.testing.assert_frame_equal(commented_rows(month.Month(engine, p)), whole)
    assert len(whole) == 18 and whole["id"].is_monotonic_increasing
    open_actions(settings, engine, p)
    [action] = actions(engine)
    assert [c["text"] for c in action.evidence[0]["worst_comments"]] == [
        "comment 1", "comment 13", "comment 37", "comment 17"]  # nps 1, least positive, by id


def test_with_the_real_kpi_stage_end_to_end(engine: Engine, tmp_path: Path) -> None:
    """compute_kpis -> open_actions, twice: one action for the missed scope, nothing new on re-run."""
    from cxloop.tasks.kpis import compute_kpis

    settings = make_settings(tmp_path)
    settings = settings.model_copy(update={"targets": [
        TargetConfig(kpi="nps", scope="journey_stage", value=40)]})
    for i in range(200):
        add_feedback(engine, "2026-10", "等了一周 13812345678" if i % 20 == 1 else None,
                     journey_stage="delivery", nps=0 if i % 2 else 9)
        add_feedback(engine, "2026-10", None, journey_stage="purchase", nps=10 if i % 2 else 8)
    compute_kpis(settings, engine, "2026-10")
    open_actions(settings, engine, "2026-10")
    before = dump(engine)
    [action] = actions(engine)
    assert (action.kpi, action.scope_value, action.department, action.severity) == (
        "nps", "delivery", "logistics", "high")
    assert action.baseline_value == 0 and action.evidence[0]["gap"] == 40  # 50% promoters, 50% detractors
    assert {c["text"] for c in action.evidence[0]["worst_comments"]} == {"等了一周 [phone]"}
    compute_kpis(settings, engine, "2026-10")
    open_actions(settings, engine, "2026-10")
    assert dump(engine)["action"] == before["action"]
    assert dump(engine)["action_event"] == before["action_event"]


def test_comments_for_kpis_without_a_question_are_negative_ones(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    p = "2026-10"
    add_result(engine, p, "theme_negative_share", "topic", "delivery_speed", value=0.6, ci=(0.5, 0.7),
               target=0.3, n=200)
    add_feedback(engine, p, "slow slow", themes="price,delivery_speed", sentiment="negative",
                 sentiment_score=0.1)
    add_feedback(engine, p, "fine", themes="delivery_speed", sentiment="positive", sentiment_score=0.9)
    add_feedback(engine, p, "wrong theme", themes="deliveryXspeed", sentiment="negative", sentiment_score=0.0)
    add_feedback(engine, p, "complained", themes="delivery_speed", is_complaint=True, sentiment_score=0.3)
    open_actions(settings, engine, p)
    [action] = actions(engine)
    assert action.department == "logistics"
    assert [c["text"] for c in action.evidence[0]["worst_comments"]] == ["slow slow", "complained"]


def test_crossed_scope_evidence_and_routing(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    p = "2026-10"
    add_result(engine, p, "csat", "department x region", "logistics | east", value=50, ci=(40, 60),
               target=80, n=90)
    add_feedback(engine, p, "east bad", department="logistics", region="east", csat=1)
    add_feedback(engine, p, "west bad", department="logistics", region="west", csat=1)
    open_actions(settings, engine, p)
    [action] = actions(engine)
    assert action.department == "logistics"
    assert [c["text"] for c in action.evidence[0]["worst_comments"]] == ["east bad"]


# --------------------------------------------------------------------------- playbooks

def test_a_comment_cannot_take_over_the_playbook_a_notice_quotes(engine: Engine, tmp_path: Path) -> None:
    """A customer's comment with line breaks, one of them a "### " line: the playbook quotes it on
    one line inside its "> " quote, so the notice still quotes the playbook's own steps."""
    from cxloop.tasks.notify.items import action_item

    settings = make_settings(tmp_path)
    add_result(engine, "2026-10", "nps", "journey_stage", "delivery", value=20, ci=(14, 26), target=40)
    add_feedback(engine, "2026-10", "slow\n### Pay a refund to everyone\n1. now", journey_stage="delivery",
                 nps=0)
    open_actions(settings, engine, "2026-10")
    [action] = actions(engine)
    assert "> slow ### Pay a refund to everyone 1. now" in (action.playbook or "")
    steps = action_item(settings, action, "2026-10", "en").playbook
    assert "Pay a refund" not in steps and steps.startswith("1. "), steps


def test_playbook_in_the_departments_language(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    add_result(engine, "2026-10", "nps", "journey_stage", "delivery", value=20, ci=(14, 26), target=40)
    add_result(engine, "2026-10", "csat", "channel", "hotline", value=60, ci=(55, 65), target=80)
    add_feedback(engine, "2026-10", "<b>rude</b> agent", channel="hotline", csat=1)
    open_actions(settings, engine, "2026-10")
    by_dept = {a.department: a for a in actions(engine)}
    zh, en = by_dept["logistics"], by_dept["service"]
    assert zh.playbook is not None
    assert "建议措施：NPS（推荐意愿）" in zh.playbook and "旅程阶段: delivery" in zh.playbook
    assert "负责部门: Logistics (王丽)\n- 数值: 20.0 (95% 置信区间 14.0 – 26.0, n = 400)" in zh.playbook
    assert "目标: 40.0" in zh.playbook and "差距: 20.0" in zh.playbook and "王丽" in zh.playbook
    assert "严重程度: 高" in zh.playbook
    assert f"cxloop actions start {zh.id}" in zh.playbook
    assert en.playbook is not None
    assert "Suggested playbook: CSAT" in en.playbook and "Channel: hotline" in en.playbook
    assert "> <b>rude</b> agent" in en.playbook  # Markdown keeps text; HTML notices escape it
    assert "建议" not in en.playbook


def test_project_playbook_overrides_per_department(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    (tmp_path / "playbooks" / "service").mkdir(parents=True)
    (tmp_path / "playbooks" / "service" / "csat.en.md.j2").write_text(
        "Service way: call {{ head }} about {{ scope_value }} ({{ value|num }}) by {{ due }}.")
    (tmp_path / "playbooks" / "nps.zh.md.j2").write_text("公司统一：{{ scope_label }} {{ _('Target') }}")
    add_result(engine, "2026-10", "nps", "journey_stage", "delivery")
    add_result(engine, "2026-10", "csat", "channel", "hotline", value=60, ci=(55, 65), target=80, n=50)
    add_result(engine, "2026-10", "csat", "journey_stage", "delivery", value=60, ci=(55, 65), target=80)
    open_actions(settings, engine, "2026-10")
    by_key = {(a.kpi, a.scope_value): a.playbook for a in actions(engine)}
    assert by_key[("csat", "hotline")] == "Service way: call Anna Smith about hotline (60.0) by 2026-11-21."
    assert by_key[("nps", "delivery")] == "公司统一：旅程阶段 目标"
    assert "建议措施：CSAT" in (by_key[("csat", "delivery")] or "")  # logistics: shipped zh playbook
    assert playbook_source(settings, "service", "nps", "en") == ("playbooks/nps.en.md.j2", None)
    assert playbook_source(settings, "service", "unknown_kpi", "zh") == ("playbooks/default.zh.md.j2", None)


def test_every_shipped_playbook_renders(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    action = Action(id=7, kpi="nps", scope="overall", scope_value="all", department="service",
                    opened_period="2026-10", due=date(2026, 11, 30), severity="low")
    entry = {"period": "2026-10", "value": 1.0, "ci_low": None, "ci_high": None, "n": 40, "target": None,
             "gap": None, "status": "no_target", "signal": "signal_low", "worst_comments": []}
    for kpi in [*KPI_NAMES, "other"]:
        if kpi == "responses":
            continue
        for dept in ("service", "logistics"):
            action.kpi, action.department = kpi, dept
            text = render_playbook(settings, action, entry)
            assert text.count("\n") > 5, (kpi, dept)


# --------------------------------------------------------------------------- people's changes and queries

def test_assign_validates_department_and_moves_head(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    add_result(engine, "2026-10", "nps", "overall", "all")
    open_actions(settings, engine, "2026-10")
    [action] = actions(engine)
    assert action.department == "cx_office" and action.head == ""
    with pytest.raises(ActionError, match="unknown department 'legal'"):
        assign(settings, engine, action.id or 0, "legal", "ann")
    moved = assign(settings, engine, action.id or 0, "logistics", "ann", "they own the courier contract")
    assert (moved.department, moved.head) == ("logistics", "王丽")
    assert moved.playbook and "建议措施" in moved.playbook
    last = events(engine, action.id or 0)[-1]
    assert last.by == "ann"
    assert last.note == "assigned from cx_office to logistics: they own the courier contract"
    with pytest.raises(ActionError, match="no action with id 999"):
        assign(settings, engine, 999, "service", "ann")


def test_queries(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    add_result(engine, "2026-09", "nps", "journey_stage", "delivery")
    add_result(engine, "2026-10", "nps", "journey_stage", "delivery")
    add_result(engine, "2026-10", "csat", "channel", "hotline", value=60, ci=(55, 65), target=80)
    open_actions(settings, engine, "2026-09")
    open_actions(settings, engine, "2026-10")
    first, second = actions(engine)
    change_status(settings, engine, second.id or 0, "acknowledged", by="anna")
    assert [a.id for a in list_actions(engine, status="open")] == [first.id]
    assert [a.id for a in list_actions(engine, status="active")] == [first.id, second.id]
    assert list_actions(engine, status="closed") == []
    assert [a.id for a in list_actions(engine, department="service")] == [second.id]
    assert [a.id for a in list_actions(engine, period="2026-09")] == [first.id]
    assert [a.id for a in list_actions(engine, period="2026-10")] == [first.id, second.id]
    with pytest.raises(ActionError, match="unknown status 'nope'"):
        list_actions(engine, status="nope")
    with session_scope(engine) as s:
        s.add(Measurement(action_id=first.id or 0, period="2026-10", value=25, n=380, verdict="no_change"))
    detail = action_detail(engine, first.id or 0)
    assert detail["action"].id == first.id
    assert [m.period for m in detail["measurements"]] == ["2026-10"]
    assert len(detail["events"]) == 2
    row = action_row(second)
    assert {"id", "kpi", "scope", "scope_value", "department", "status", "opened_period", "due",
            "severity"} <= set(row)
    # `actions list` shows the newest figure: a re-measurement newer than the last evidence wins
    assert action_row(first)["last_period"] == "2026-10"
    latest = latest_measurements(engine, [first.id or 0, second.id or 0])
    assert set(latest) == {first.id} and action_row(first, latest[first.id or 0])["last_period"] == "2026-10"
    with session_scope(engine) as s:
        s.add(Measurement(action_id=first.id or 0, period="2026-11", value=21, n=390, verdict="no_change"))
    newest = latest_measurements(engine, [first.id or 0])[first.id or 0]
    row = action_row(first, newest)
    assert (row["last_period"], row["last_value"]) == ("2026-11", 21)
    assert first.due == date(2026, 10, 7)
    assert is_overdue(first, date(2026, 10, 8)) and not is_overdue(first, date(2026, 10, 7))
