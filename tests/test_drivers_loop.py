"""Key drivers in the loop: a real collect of a CSV with driver columns, the KPIs, the actions and the
report, on SQLite and PostgreSQL. Planted: NPS is driven by seat comfort (strongly, and it performs
badly) and checkout (weakly, performs well); wifi has no effect. The report's "What drives the score"
section shows the ranking with intervals and the matrix; the NPS action names seat comfort, the
driver its department owns that matters most and performs worst."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cxloop.config import Settings, settings_from_dict
from cxloop.models import Action
from cxloop.tasks.actions import open_actions
from cxloop.tasks.collect import collect_period
from cxloop.tasks.kpis import compute_kpis
from cxloop.tasks.ratings import month_drivers
from cxloop.tasks.report import build_report, write_reports

P = "2026-10"


def write_export(path: Path, n: int = 800, seed: int = 5) -> None:
    rng = np.random.default_rng(seed)
    seat = rng.choice([1, 2, 3, 4, 5], n, p=[0.2, 0.3, 0.3, 0.15, 0.05])
    checkout = np.clip(seat + rng.integers(0, 4, n) + 4, 0, 10)  # correlated with seat, performs well
    wifi = rng.integers(1, 6, n)
    nps = np.clip(np.round(1.8 * seat + 0.25 * checkout + rng.normal(0, 1.2, n)), 0, 10).astype(int)
    lines = ["id,time,nps,seat,checkout,wifi"]
    for i in range(n):
        cells = [str(seat[i]), str(checkout[i]), str(wifi[i])]
        if i % 7 == 0:
            cells[2] = ""  # not rated
        lines.append(f"R{i},2026-10-{1 + i % 28:02d} 10:00,{nps[i]},{','.join(cells)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_settings(tmp_path: Path, **actions: Any) -> Settings:
    return settings_from_dict({
        "project": {"timezone": "UTC", "language": "en"},
        "sources": [{"name": "web", "kind": "csv", "path": "export.csv", "channel": "web",
                     "touchpoint": "cabin",
                     "columns": {"response_id": "id", "submitted_at": "time", "nps": "nps"},
                     "drivers": {"seat": "seat", "checkout": "checkout", "wifi": "wifi"}}],
        "drivers": [
            {"name": "seat", "label_en": "Seat comfort", "label_zh": "座椅舒适度", "touchpoint": "cabin"},
            {"name": "checkout", "label_en": "Checkout speed", "label_zh": "结账速度", "scale": [0, 10],
             "journey_stage": "purchase"},
            {"name": "wifi", "label_en": "Wi-Fi", "label_zh": "无线网络", "touchpoint": "cabin"},
        ],
        "driver_analysis": {"min_n": 100},
        "departments": {"ops": {"name": "Operations", "owns": {"touchpoint": ["cabin"]}},
                        "shop": {"name": "Shop", "owns": {"journey_stage": ["purchase"]}}},
        "targets": [{"kpi": "nps", "scope": "department", "match": "ops", "value": 60}],
        "actions": actions,
    }, tmp_path, env={})


@pytest.fixture
def collected(engine: Engine, tmp_path: Path) -> Settings:
    write_export(tmp_path / "export.csv")
    settings = make_settings(tmp_path)
    summary = collect_period(settings, engine, P)
    assert summary.imports[0].loaded == 800
    compute_kpis(settings, engine, P)
    return settings


def test_drivers_from_a_collected_csv_reach_the_report(engine: Engine, tmp_path: Path,
                                                       collected: Settings) -> None:
    analyses = month_drivers(collected, engine, P)
    assert set(analyses) == {("overall", "all"), ("department", "ops")}
    overall = analyses[("overall", "all")]
    ranked = overall.ranked()
    assert ranked[0].driver == "seat" and ranked[0].rank == 1 and not ranked[0].tied
    wifi = next(d for d in overall.drivers if d.driver == "wifi")
    assert wifi.rank > 1 and wifi.n < 800  # not ranked above an effect; not rated left out
    assert next(d for d in overall.drivers if d.driver == "seat").quadrant == "fix"

    [company, ops_page, shop_page] = write_reports(collected, engine, P, out_dir=tmp_path / "out")
    html = company.read_text(encoding="utf-8")
    assert 'id="drivers"' in html and "What drives the score" in html
    assert 'data-chart="priority"' in html and html.count('class="driver"') == 3
    seat = next(d for d in overall.drivers if d.driver == "seat")
    assert f"{seat.share:.0f}%" in html and f"({seat.share_low:.0f}–{seat.share_high:.0f}%)" in html
    assert "Fix first" in html and "Operations" in html
    # The department without enough rated responses of its own shows the company's, and says so.
    assert "Company-wide drivers" in shop_page.read_text(encoding="utf-8")
    assert "Company-wide drivers" not in ops_page.read_text(encoding="utf-8")
    zh = build_report(collected, engine, P, lang="zh", drivers=analyses).drivers
    assert zh is not None and zh.rows[0].label == "座椅舒适度" and zh.rows[0].quadrant_label == "优先改进"


def test_no_drivers_configured_no_section(engine: Engine, tmp_path: Path) -> None:
    write_export(tmp_path / "export.csv", n=200)
    settings = make_settings(tmp_path)
    plain = settings.model_copy(update={"drivers": [], "sources": [settings.sources[0].model_copy(
        update={"drivers": {}})]})
    collect_period(plain, engine, P)
    assert build_report(plain, engine, P).drivers is None
    [page, *_] = write_reports(plain, engine, P, out_dir=tmp_path / "out")
    assert 'id="drivers"' not in page.read_text(encoding="utf-8")


def test_tied_drivers_are_shown_as_tied(tmp_path: Path) -> None:
    """Two drivers with the same planted effect share a rank in the section."""
    from cxloop.tasks.drivers import analyse_drivers
    from cxloop.tasks.report.drivers import drivers_section

    rng = np.random.default_rng(1)
    n = 400
    x = rng.integers(1, 6, (n, 2)).astype(float)
    y = np.clip(np.round(x[:, 0] + x[:, 1] + rng.normal(0, 1, n)), 0, 10)
    analysis = analyse_drivers(y, x, ["seat", "wifi"], scales=[(1, 5), (1, 5)], outcome_name="nps")
    assert analysis is not None
    section = drivers_section(make_settings(tmp_path), {("overall", "all"): analysis}, None, "en")
    assert section is not None and [r.rank for r in section.rows] == ["=1", "=1"]
    assert all(r.tied for r in section.rows)


@pytest.mark.parametrize("weigh", [False, True])
def test_an_action_names_the_owned_drivers_that_matter_and_perform_worst(
        engine: Engine, tmp_path: Path, collected: Settings, weigh: bool) -> None:
    settings = make_settings(tmp_path, weigh_driver_importance=weigh)
    summary = open_actions(settings, engine, P)
    assert summary.opened >= 1
    with Session(engine) as s:
        action = s.exec(select(Action).where(Action.kpi == "nps", Action.scope == "department",
                                             Action.scope_value == "ops")).one()
    [entry] = action.evidence
    named = entry["drivers"]
    assert [d["driver"] for d in named] == ["seat"]  # owned by ops, important, below average
    assert named[0]["owner"] == "ops" and named[0]["label_en"] == "Seat comfort"
    assert named[0]["share_low"] <= named[0]["share"] <= named[0]["share_high"]
    assert named[0]["clearly_important"] is True
    from cxloop.tasks.notify.items import action_item

    en, zh = action_item(settings, action, P, "en"), action_item(settings, action, P, "zh")
    assert en.drivers == [f"Seat comfort (rank 1, importance {named[0]['share']:.0f}% "
                          f"[{named[0]['share_low']:.0f}–{named[0]['share_high']:.0f}%], "
                          f"mean {named[0]['mean']:.2f} / 1–5)"]
    assert zh.drivers[0].startswith("座椅舒适度 (排名 1, 重要性 ")
    plain = open_actions_severity(settings, entry)
    assert action.severity == (("high", "high", "medium")[("high", "medium", "low").index(plain)]
                               if weigh else plain)


def open_actions_severity(settings: Settings, entry: dict[str, Any]) -> str:
    """The severity the KPI's gap and reach give on their own."""
    from cxloop.tasks.actions import severity_of

    return severity_of(entry["gap"], entry["ci_low"], entry["ci_high"], entry["target"], entry["n"])
