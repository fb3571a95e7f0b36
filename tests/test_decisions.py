"""Decisions at company scale: which results act, judged over the whole cycle at once.

The pure parts are checked against independent computations (statsmodels' Benjamini-Hochberg,
the interval a result shows); the whole procedure runs on a simulated model company through the
project's own KPI code (`bench/decisions.py`, fewer cycles), and on both databases through the KPI
and actions stages.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine
from statsmodels.stats.multitest import multipletests
from typer.testing import CliRunner

from cxloop.config import Settings, settings_from_dict
from cxloop.tasks import kpis
from cxloop.tasks.kpis import decisions

sim = importlib.import_module("bench.decisions")


def test_benjamini_hochberg_matches_statsmodels() -> None:
    rng = np.random.default_rng(3)
    p = np.concatenate([rng.uniform(0, 1, 200), rng.uniform(0, 1e-4, 5)])
    _, expected, _, _ = multipletests(p, method="fdr_bh")
    assert decisions.bh_qvalues(p) == pytest.approx(expected)


def test_simes_combination() -> None:
    assert decisions.simes([0.01]) == pytest.approx(0.01)
    assert decisions.simes([0.01, 0.04]) == pytest.approx(0.02)  # min(2 * 0.01, 0.04)
    assert decisions.simes([0.03, 0.04]) == pytest.approx(0.04)
    assert decisions.simes([]) == 1.0


@pytest.mark.parametrize(("value", "lo", "hi", "target", "lower", "below"), [
    (20.0, 10.0, 29.0, 30.0, False, True),  # whole interval under the target: p < 2.5%
    (20.0, 10.0, 31.0, 30.0, False, False),  # the interval reaches it: p > 2.5%
    (12.0, 9.5, 14.9, 9.0, True, True),  # lower is better: whole interval above the target
    (12.0, 8.0, 16.0, 9.0, True, False),
])
def test_shortfall_p_agrees_with_the_interval_shown(value: float, lo: float, hi: float, target: float,
                                                    lower: bool, below: bool) -> None:
    p = decisions.shortfall_p(value, lo, hi, target, lower)
    assert p is not None and (p < 0.025) == below


def test_a_margin_asks_for_a_larger_shortfall() -> None:
    plain = decisions.shortfall_p(24.0, 18.0, 30.0, 30.0, False)
    with_margin = decisions.shortfall_p(24.0, 18.0, 30.0, 30.0, False, margin=3.0)
    assert plain is not None and with_margin is not None and with_margin > plain


def _company_rows(offset: float = 0.0, shortfall: dict[str, float] | None = None,
                  seed: int = 5, responses: int = 20_000) -> list[kpis.KpiRow]:
    rng = np.random.default_rng(seed)
    cfg = sim.settings(offset)
    df = sim.month(sim.World(responses, shortfall or {}), rng)
    return kpis.rows_from_histograms(kpis.histograms(df, cfg), cfg, period="2026-10")


def test_only_results_a_target_names_are_judged() -> None:
    rows = _company_rows()
    kpis.judge_cycle(rows, {}, sim.settings(), lambda columns: [])
    judged = [r for r in rows if (r.stats.get("decision") or {}).get("judged")]
    assert judged and all(r.target is not None and kpis.CROSS_SEP not in r.scope for r in judged)
    assert {r.kpi for r in judged} == set(sim.KPIS)
    crossing = [r for r in rows if kpis.CROSS_SEP in r.scope]
    assert crossing and all(r.status in ("no_target", "insufficient") for r in crossing)


def test_a_small_result_acts_only_on_pooled_evidence() -> None:
    rows = _company_rows(shortfall={"t19": 40.0}, responses=5_000)  # the smallest touchpoint: ~85 a month
    small = next(r for r in rows if r.key == ("nps", "touchpoint", "t19"))
    assert 30 <= small.n < 100
    kpis.judge_cycle(rows, {}, sim.settings(), lambda columns: [])
    ev = small.stats["decision"]
    assert not ev["judged"] and "directional only" in ev["reason"] and not ev["act"]
    previous = {r.key: r for r in _company_rows(shortfall={"t19": 40.0}, seed=6, responses=5_000)}
    rows = _company_rows(shortfall={"t19": 40.0}, responses=5_000)
    kpis.judge_cycle(rows, previous, sim.settings(), lambda columns: [])
    small = next(r for r in rows if r.key == ("nps", "touchpoint", "t19"))
    ev = small.stats["decision"]
    assert set(ev["tests"]) == {"pooled"} and ev["pooled"]["n"] > small.n
    assert ev["act"] and small.status == "missed"


def test_model_company_at_target_gets_almost_no_false_actions() -> None:
    """Every scope exactly at its target, 20k responses a month, 24 months after 12 of history:
    the first wave's rule opened ~40 false actions a month; the aim is at most one a quarter."""
    company = sim.Company(sim.settings(0.0))
    rng = np.random.default_rng(17)
    false = old = 0
    for month in range(30):
        rows = company.cycle(sim.month(sim.World(20_000, {}), rng))
        if month >= 6:
            false += len(sim.acting(rows))
            old += sum(1 for r in rows if r.stats["old_rule"])
    assert false / 24 <= 0.33
    assert old / 24 >= 20  # the same months under the old rule


def test_nested_collapse_is_one_action_with_its_parents_as_context() -> None:
    company = sim.Company(sim.settings(1.0))
    rng = np.random.default_rng(23)
    for _ in range(3):
        company.cycle(sim.month(sim.World(20_000, {}), rng))
    rows = company.cycle(sim.month(sim.World(20_000, {"t0": 23.0}), rng))
    acting = [r.key for r in sim.acting(rows) if r.kpi == "nps"]
    assert acting == [("nps", "touchpoint", "t0")]
    root = next(r for r in rows if r.key == ("nps", "touchpoint", "t0"))
    explained = {tuple(k) for k in root.stats["decision"]["explains"]}
    # its stage, its department and the company are short because of it, and say so
    parents = {("nps", "journey_stage", "s0"), ("nps", "department", "d0"), ("nps", "overall", "all")}
    assert parents <= explained
    stage = next(r for r in rows if r.key == ("nps", "journey_stage", "s0"))
    assert stage.status == "missed"
    assert stage.stats["decision"]["explained_by"] == ["nps", "touchpoint", "t0"]
    assert "explained by touchpoint=t0" in stage.stats["decision"]["reason"]


def test_a_12_point_shortfall_at_n_400_is_caught_within_two_cycles() -> None:
    result = sim.run_power(trials=6, seed=31, histories=2)
    assert 300 <= result["n"] <= 500
    assert result["within_two"] >= 5 / 6


# --- through the stages, on SQLite and PostgreSQL ------------------------------------------


def _settings(tmp_path: Path, db_url: str, **extra: Any) -> Settings:
    data: dict[str, Any] = {
        "database": {"url": db_url},
        "departments": {"logistics": {"name": "Logistics", "owns": {"journey_stage": ["delivery"],
                                                                    "touchpoint": ["courier"]}}},
        "targets": [{"kpi": "nps", "scope": "journey_stage", "value": 30},
                    {"kpi": "nps", "scope": "touchpoint", "value": 30},
                    {"kpi": "nps", "scope": "overall", "value": 30}],
        "kpis": {"bootstrap_resamples": 99},
    }
    data.update(extra)
    return settings_from_dict(data, tmp_path, env={})


def _feedback(engine: Engine, period: str, rows: list[tuple[str, str, int]]) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from cxloop.models import Feedback

    at = datetime(int(period[:4]), int(period[5:]), 10, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(insert(Feedback.__table__), [  # type: ignore[attr-defined]
            {"source": "t", "response_id": f"{period}-{i}", "period": period, "submitted_at": at,
             "channel": "web", "content_hash": "h", "quarantined": False, "journey_stage": stage,
             "touchpoint": touch, "nps": nps} for i, (stage, touch, nps) in enumerate(rows)])


def _month(courier_nps: int) -> list[tuple[str, str, int]]:
    """Delivery = courier (the problem) + locker (fine); purchase on the website, fine."""
    rows = []
    for i in range(600):
        rows.append(("purchase", "website", (10, 9, 9, 8, 3)[i % 5]))  # NPS 40
    for i in range(400):
        rows.append(("delivery", "courier", courier_nps if i % 2 else (9, 10, 7, 5)[i % 4]))
    for i in range(400):
        rows.append(("delivery", "locker", (10, 9, 9, 8, 6)[i % 5]))
    return rows


def test_stages_store_the_decision_and_open_one_action_per_cause(engine: Engine, db_url: str,
                                                                 tmp_path: Path) -> None:
    from cxloop.cli import app
    from cxloop.tasks.actions import list_actions, open_actions
    from cxloop.tasks.notify import action_item
    from cxloop.tasks.rendering import render

    settings = _settings(tmp_path, db_url)
    _feedback(engine, "2026-10", _month(courier_nps=0))
    kpis.compute_kpis(settings, engine, "2026-10")
    stored = {r.key: r for r in kpis.stored_rows(engine, "2026-10")}
    courier = stored[("nps", "touchpoint", "courier")]
    delivery = stored[("nps", "journey_stage", "delivery")]
    ev = courier.stats["decision"]
    assert ev["act"] and ev["q"] is not None and ev["q"] <= 0.1 and "single" in ev["tests"]
    assert delivery.status == "missed" and delivery.stats["decision"]["explained_by"] == [
        "nps", "touchpoint", "courier"]
    summary = open_actions(settings, engine, "2026-10")
    [action] = list_actions(engine)
    assert summary.opened == 1 and (action.scope, action.scope_value) == ("touchpoint", "courier")
    entry = action.evidence[0]
    assert entry["decision"]["q"] == pytest.approx(ev["q"])
    assert {(c["scope"], c["scope_value"]) for c in entry["context"]} >= {("journey_stage", "delivery")}
    item = action_item(settings, action, "2026-10", "en")  # what the head's notice lists with it
    assert any(line.startswith("delivery: NPS") and "target 30" in line for line in item.context), \
        item.context
    rendered = render("notice.md", "en", department="Logistics", period="2026-10", head="", new=[item],
                      overdue=[], still_open=[], verdicts=[], subject="", report_url=None, project="cxloop",
                      confidence="95")
    assert "Also short because of this" in rendered and "delivery" in rendered
    # the distance from the target as read: below a higher-is-better target is negative
    assert item.value is not None and item.target == 30 and item.gap is not None
    assert item.gap == pytest.approx(item.value - 30) and item.gap < 0
    assert f"(target 30.0, -{abs(item.gap):.1f})" in rendered, rendered
    # the playbook's steps, not the facts it opens with (the notice lists those itself); each quote once
    [playbook] = [line for line in rendered.splitlines() if "Suggested playbook" in line]
    assert "1. " in playbook and "2. " in playbook and "What customers said" not in playbook, playbook
    assert "Severity" not in playbook and "##" not in playbook, playbook
    from cxloop.models import Action

    echoed = Action(department="logistics", kpi="nps", scope="touchpoint", scope_value="courier",
                    opened_period="2026-10", evidence=[{**entry, "worst_comments": [
                        {"text": "退款太慢"}, {"text": "退款太慢"}, {"text": "没人接电话"}]}])
    assert action_item(settings, echoed, "2026-10", "zh").comments == ["退款太慢", "没人接电话"]  # each once
    from cxloop.tasks.report import render_report

    page = render_report(settings, engine, "2026-10", lang="en")
    assert "Also short because of this" in page
    # re-running the period changes nothing
    kpis.compute_kpis(settings, engine, "2026-10")
    assert open_actions(settings, engine, "2026-10").opened == 0
    [again] = list_actions(engine)
    assert again.evidence == action.evidence

    cfg = tmp_path / "cxloop.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n', encoding="utf-8")
    out = CliRunner().invoke(app, ["kpis", "--period", "2026-10", "--format", "json", "--config", str(cfg)])
    assert out.exit_code == 0, out.output
    shown = {(r["kpi"], r["scope"], r["scope_value"]): r for r in json.loads(out.output)}
    decision = shown[("nps", "touchpoint", "courier")]["decision"]
    assert decision["act"] is True and decision["q"] == pytest.approx(ev["q"]) and decision["tests"]
