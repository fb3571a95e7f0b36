"""The monthly report: numbers equal the stored KPI rows, customer text is masked and escaped,
both languages render, department pages hold only their own scopes and actions, held cycles
are marked provisional. Runs on SQLite and PostgreSQL (`engine` fixture).
"""

from __future__ import annotations

import html
import json
import random
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, insert, select
from sqlmodel import Session, col

from cxloop.config import Settings, settings_from_dict
from cxloop.models import (
    Action,
    ActionEvent,
    Cycle,
    Feedback,
    ImportRecord,
    KpiResult,
    Measurement,
    QualityCheck,
    QuarantinedRow,
)
from cxloop.periods import period_bounds, shift_period
from cxloop.tasks.report import HEADLINE_KPIS, fmt, render_report, write_reports

PERIOD = "2026-10"

# --------------------------------------------------------------------------- factory

DEPARTMENTS: dict[str, dict[str, Any]] = {
    "marketing": {"name": "市场部", "head": "王芳", "owns": {"journey_stage": ["awareness"]}},
    "sales": {"name": "销售部", "head": "李强", "owns": {"journey_stage": ["purchase"],
                                                      "touchpoint": ["store"]}},
    "logistics": {"name": "Logistics", "head": "Chen Jie", "language": "en",
                  "owns": {"journey_stage": ["delivery"], "topic": ["delivery_delay"]}},
    "service": {"name": "客服中心", "head": "赵敏", "owns": {"journey_stage": ["after_sales"],
                                                        "touchpoint": ["hotline"],
                                                        "topic": ["rude_staff", "refund"]}},
}
STAGES = ["awareness", "purchase", "delivery", "use", "after_sales"]
TOUCHPOINTS = ["web", "app", "store", "hotline"]
TOPICS = [
    {"id": "delivery_delay", "name_zh": "配送延迟", "name_en": "Late delivery"},
    {"id": "rude_staff", "name_zh": "服务态度", "name_en": "Staff attitude"},
    {"id": "refund", "name_zh": "退款困难", "name_en": "Refund problems"},
    {"id": "app_bug", "name_zh": "App 故障", "name_en": "App bugs"},
    {"id": "price", "name_zh": "价格", "name_en": "Price"},
]
COMMENTS = {
    "delivery_delay": ["快递等了整整一周才到, 客服也说不清楚在哪里", "配送太慢了, 说好的次日达变成五天",
                       "The parcel arrived six days late and nobody told me why"],
    "rude_staff": ["热线客服态度很差, 直接挂我电话", "门店店员爱答不理, 体验很糟糕"],
    "refund": ["退款申请了两周还没到账, 请联系我 13812345678", "退货流程太复杂, 要填三张表"],
    "app_bug": ["App 支付页面一直闪退 <script>alert('x')</script>", "更新后 App 登录不了"],
    "price": ["价格比别家贵不少"],
}
POSITIVE = ["送货很快, 包装完好", "店员很热情, 推荐的商品很合适", "Great service, thank you!"]


@dataclass
class Seeded:
    settings: Settings
    kpis: list[KpiResult]
    actions: dict[str, int]


def make_settings(base_dir: Path, lang: str = "zh") -> Settings:
    return settings_from_dict({
        "project": {"name": "Acme 零售", "language": lang},
        "departments": DEPARTMENTS,
        "vocabulary": {"journey_stage": STAGES, "touchpoint": TOUCHPOINTS},
        "topics": TOPICS,
        "targets": [{"kpi": "nps", "value": 30}],
    }, base_dir=base_dir, env={})


def _status(value: float, lo: float, hi: float, target: float | None, n: int, lower: bool = False) -> str:
    if n < 30:
        return "insufficient"
    if target is None:
        return "no_target"
    good = value <= target if lower else value >= target
    if good:
        return "met"
    clearly_bad = lo > target if lower else hi < target
    return "missed" if clearly_bad else "at_risk"


def _kpi(period: str, kpi: str, scope: str, value_: str, value: float, n: int, target: float | None,
         provisional: bool = False, lower: bool = False) -> KpiResult:
    half = {"nps": 147.0, "cx_index": 120.0, "csat": 98.0, "ces": 2.6,
            "complaint_rate": 0.9}.get(kpi, 50.0) / max(n, 1) ** 0.5
    if kpi == "complaint_rate":
        half = 196 * (value / 100 * (1 - value / 100) / max(n, 1)) ** 0.5
    lo, hi = value - half, value + half
    return KpiResult(period=period, kpi=kpi, scope=scope, scope_value=value_, n=n, value=value, ci_low=lo,
                     ci_high=hi, method="test", target=target, min_n=30,
                     status=_status(value, lo, hi, target, n, lower), provisional=provisional)


def seed(engine: Engine, tmp_path: Path, *, lang: str = "zh", held: bool = False,
         responses: int = 700) -> Seeded:
    """Realistic rows for one company over 12 cycles; the current cycle has feedback and actions."""
    rng = random.Random(7)
    settings = make_settings(tmp_path, lang)
    targets = {"nps": 30.0, "csat": 80.0, "ces": 5.0, "cx_index": 20.0, "complaint_rate": 8.0}
    base = {"nps": 27.0, "csat": 78.0, "ces": 5.1, "cx_index": 18.0, "complaint_rate": 9.0}
    kpis: list[KpiResult] = []
    for back in range(11, -1, -1):
        period = shift_period(PERIOD, -back)
        current = back == 0
        for kpi in HEADLINE_KPIS:
            noise = {"nps": 3.0, "csat": 1.6, "ces": 0.08, "cx_index": 2.5}[kpi]
            value = round(base[kpi] + rng.gauss(0, noise) - (6.0 if current and kpi == "nps" else 0.0),
                          2 if kpi == "ces" else 1)
            kpis.append(_kpi(period, kpi, "overall", "all", value, 640 + rng.randint(0, 80),
                             targets[kpi], held and current))
            if current and kpi == "nps":
                kpis[-1].signal = "signal_low"  # the dip the factory builds in, as cxloop.tasks.kpis flags it
        if current:
            kpis.append(_kpi(period, "complaint_rate", "overall", "all", 9.4, 700, 8.0, held, True))
        for i, dept in enumerate(DEPARTMENTS):
            n = 25 if dept == "marketing" else 120 + 40 * i
            for kpi in ("nps", "csat", "ces"):
                shift = {"logistics": -14.0, "service": -6.0}.get(dept, 4.0) * (0.01 if kpi == "ces" else 1)
                value = round(base[kpi] + shift + rng.gauss(0, 0.08 if kpi == "ces" else 2),
                              2 if kpi == "ces" else 1)
                kpis.append(_kpi(period, kpi, "department", dept, value, n, targets[kpi], held and current))
            if current:
                kpis.append(_kpi(period, "complaint_rate", "department", dept,
                                 round(5.0 + 2.1 * i, 1), n, 8.0, held, True))
        if current:
            kpis.append(_kpi(period, "nps", "journey_stage", "delivery", 3.5, 180, 30.0, held))
            kpis.append(_kpi(period, "nps", "journey_stage", "awareness", 41.2, 90, 30.0, held))
            kpis.append(_kpi(period, "nps", "touchpoint", "hotline", 12.0, 140, 30.0, held))
            kpis.append(_kpi(period, "nps", "topic", "delivery_delay", -48.0, 60, None, held))
    start, _ = period_bounds(PERIOD, settings.tz)
    feedback: list[dict[str, Any]] = []
    for i in range(responses):
        stage = STAGES[i % len(STAGES)]
        point = TOUCHPOINTS[(i // len(STAGES)) % len(TOUCHPOINTS)]
        bad = ((stage == "delivery" and point in ("app", "web"))
               or (stage == "after_sales" and point == "hotline"))
        p_det = 0.5 if bad else 0.17
        u = rng.random()
        nps = (rng.randint(0, 6) if u < p_det
               else rng.randint(9, 10) if u < p_det + 0.42 else rng.randint(7, 8))
        dept = {"awareness": "marketing", "purchase": "sales", "delivery": "logistics",
                "after_sales": "service"}.get(stage, "sales")
        theme, comment, sentiment = "", None, "neutral"
        if nps <= 6:
            theme = {"delivery": "delivery_delay", "after_sales": rng.choice(["rude_staff", "refund"]),
                     "use": "app_bug", "purchase": "price"}.get(stage, "price")
            comment, sentiment = rng.choice(COMMENTS[theme]), "negative"
        elif nps >= 9 and rng.random() < 0.3:
            comment, sentiment = rng.choice(POSITIVE), "positive"
        feedback.append(dict(
            source="survey", response_id=f"r{i:05d}", period=PERIOD,
            submitted_at=start + timedelta(hours=3 + i % 600), channel=point if point != "store" else "store",
            journey_stage=stage, touchpoint=point, department=dept, nps=nps,
            csat=min(5, max(1, round(nps / 2))), ces=min(7, max(1, round(nps * 0.6) + 1)),
            cx_success=min(7, max(1, round(nps * 0.6) + 1)), cx_effort=min(7, max(1, round(nps * 0.6))),
            cx_emotion=min(7, max(1, round(nps * 0.6) + 1)), comment=comment, is_complaint=nps <= 3,
            sentiment=sentiment,
            sentiment_score=(0.1 + rng.random() * 0.2 if sentiment == "negative" else 0.8),
            themes=theme, content_hash=f"h{i}", quarantined=False))
    feedback.append(dict(feedback[-1], response_id="q1", comment="QUARANTINED ROW TEXT", nps=0,
                         sentiment="negative", themes="price", content_hash="q", quarantined=True))
    end = date(2026, 10, 31)
    with Session(engine, expire_on_commit=False) as s:
        s.add_all(kpis)
        # Core bulk insert of plain dicts: building 700 SQLModel objects alone takes seconds.
        s.execute(insert(Feedback), feedback)
        s.add(ImportRecord(source="survey", file="survey-2026-10.csv", content_hash="x", period=PERIOD,
                           rows_read=responses + 19, loaded=responses + 1, duplicates=12, rejected=6))
        for k in range(7):
            s.add(QuarantinedRow(period=PERIOD, source="survey", row_key=f"bad{k}", stage="validate",
                                 reasons=[{"check": "nps between 0 and 10"}]))
        s.add(QuarantinedRow(period=PERIOD, source="survey", row_key="fixed", stage="validate",
                             readmitted_at=datetime(2026, 11, 2, tzinfo=UTC)))
        s.add(QualityCheck(period=PERIOD, suite="feedback", expectation="expect_column_values_to_be_between",
                           column="nps", severity="warning", success=False, unexpected_count=7))
        s.add(QualityCheck(period=PERIOD, suite="feedback", expectation="expect_column_values_to_not_be_null",
                           column="channel", success=True))
        vpath = settings.resolve("reports") / PERIOD / "validation.html"
        s.add(Cycle(period=PERIOD, status="held" if held else "completed", gate="held" if held else "passed",
                    validation_report_path=str(vpath)))
        acts = {
            "late": Action(kpi="nps", scope="journey_stage", scope_value="delivery", department="logistics",
                           head="Chen Jie", status="in_progress", severity="high", opened_period="2026-08",
                           due=date(2026, 9, 14), baseline_value=4.1, target=30),
            "escalated": Action(kpi="nps", scope="touchpoint", scope_value="hotline", department="service",
                                head="赵敏", status="escalated", severity="high", opened_period="2026-09",
                                due=date(2026, 11, 15), baseline_value=10.0, target=30),
            "verified": Action(kpi="csat", scope="touchpoint", scope_value="store", department="sales",
                               head="李强", status="verified", severity="medium", opened_period="2026-07",
                               due=date(2026, 8, 30), baseline_value=70.0, target=80,
                               closed_period=PERIOD),
            "new": Action(kpi="nps", scope="topic", scope_value="delivery_delay", department="logistics",
                          head="Chen Jie", status="open", severity="medium", opened_period=PERIOD,
                          due=end + timedelta(days=30), baseline_value=-48.0),
            "old_closed": Action(kpi="ces", scope="department", scope_value="marketing",
                                 department="marketing", status="cancelled", opened_period="2026-03",
                                 closed_period="2026-05"),
        }
        s.add_all(acts.values())
        s.flush()
        ids = {k: a.id or 0 for k, a in acts.items()}
        s.add(ActionEvent(action_id=ids["escalated"], period=PERIOD, from_status="open",
                          to_status="escalated", note="no improvement after 2 cycles"))
        s.add(ActionEvent(action_id=ids["verified"], period=PERIOD, from_status="done",
                          to_status="verified"))
        s.add(Measurement(action_id=ids["late"], period="2026-09", value=5.0, n=170, change=0.9,
                          verdict="no_change"))
        s.add(Measurement(action_id=ids["late"], period=PERIOD, value=3.5, n=180, baseline=4.1, change=-0.6,
                          change_ci_low=-14.2, change_ci_high=13.0, effect=2.4, effect_ci_low=-9.8,
                          effect_ci_high=14.6, method="did", verdict="no_change"))
        s.add(Measurement(action_id=ids["verified"], period=PERIOD, value=84.0, n=200, change=14.0,
                          change_ci_low=6.1, change_ci_high=21.9, method="pre_post", verdict="improved"))
        s.commit()
    return Seeded(settings, kpis, ids)


def _text(page: str) -> str:
    """Visible text of the page, tags removed and entities decoded (what a reader sees)."""
    body = re.sub(r"<style.*?</style>|<title>.*?</title>", "", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def _current(seeded: Seeded, kpi: str, scope: str = "overall", value: str = "all") -> KpiResult:
    return next(r for r in seeded.kpis
                if (r.period, r.kpi, r.scope, r.scope_value) == (PERIOD, kpi, scope, value))


# --------------------------------------------------------------------------- tests


def test_headline_and_scorecard_numbers_equal_stored_kpis(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    page = render_report(seeded.settings, engine, PERIOD, lang="en")
    with Session(engine) as s:  # compare with what the database holds, not with the factory's objects
        stored = {(r.kpi, r.scope, r.scope_value): r for r in s.scalars(
            select(KpiResult).where(col(KpiResult.period) == PERIOD))}
        stored_prev = {(r.kpi, r.scope, r.scope_value): r for r in s.scalars(
            select(KpiResult).where(col(KpiResult.period) == shift_period(PERIOD, -1)))}
    for kpi in HEADLINE_KPIS:
        row = stored[(kpi, "overall", "all")]
        tile = re.search(rf'<article class="tile" data-kpi="{kpi}">(.*?)</article>', page, re.S)
        assert tile, kpi
        t = tile.group(1)
        assert f'<span class="kpi-value" data-kpi="{kpi}">{fmt(kpi, row.value)}</span>' in t
        assert f'<b class="n">{row.n}</b>' in t
        assert f"{fmt(kpi, row.ci_low)} – {fmt(kpi, row.ci_high)}" in t
        assert f'<b class="target">{fmt(kpi, row.target)}</b>' in t
        prev = stored_prev[(kpi, "overall", "all")]
        assert prev.value is not None and row.value is not None
        assert f"{row.value - prev.value:+.{2 if kpi == 'ces' else 1}f}" in t
        # "A real change" only when the change exceeds the combined interval half-widths.
        assert row.ci_low is not None and row.ci_high is not None
        assert prev.ci_low is not None and prev.ci_high is not None
        combined = ((row.ci_high - row.ci_low) ** 2 + (prev.ci_high - prev.ci_low) ** 2) ** 0.5 / 2
        real = abs(row.value - prev.value) > combined
        assert ("a real change" in t) is real and ("within sampling noise" in t) is not real
    # Scorecard: every department cell shows the stored value, n and status colour.
    for dept in DEPARTMENTS:
        row = stored[("nps", "department", dept)]
        cell = re.search(rf'<td class="cell st-(\w+)" data-kpi="nps" data-n="{row.n}"[^>]*>\s*'
                         rf'<span class="v">([^<]+)</span>', page.split(DEPARTMENTS[dept]["name"], 1)[1])
        assert cell, dept
        assert cell.group(1) == row.status
        assert cell.group(2) == fmt("nps", row.value)
    assert "insufficient data" in _text(page)  # marketing has n=25
    assert "st-insufficient" in page


def test_customer_text_is_masked_and_escaped(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    start, _ = period_bounds(PERIOD, seeded.settings.tz)
    with Session(engine) as s:  # the most negative comment of the top theme: sure to be quoted
        s.add(Feedback(source="survey", response_id="pii", period=PERIOD, submitted_at=start, channel="app",
                       journey_stage="delivery", touchpoint="app", department="logistics", nps=0,
                       comment="快递丢了! 打 13912345678 或发邮件 li.lei@example.com <b>urgent</b>",
                       sentiment="negative", sentiment_score=0.0, themes="delivery_delay", content_hash="p"))
        s.commit()
    page = render_report(seeded.settings, engine, PERIOD, lang="zh")
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(" in page
    assert "13812345678" not in page and "13912345678" not in page
    assert "li.lei@example.com" not in page
    assert "快递丢了! 打 [phone] 或发邮件 [email] &lt;b&gt;urgent&lt;/b&gt;" in page
    assert "QUARANTINED ROW TEXT" not in page


def test_both_languages(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    zh = render_report(seeded.settings, engine, PERIOD)  # project language is zh
    en = render_report(seeded.settings, engine, PERIOD, lang="en")
    assert '<html lang="zh-CN">' in zh and '<html lang="en">' in en
    for text in ("客户体验报告", "计分卡", "客户旅程图", "纠正措施", "客户之声", "数据质量", "配送延迟"):
        assert text in zh, text
    for text in ("Customer experience report", "Scorecard", "Customer journey map", "Corrective actions",
                 "What customers say", "Data quality", "Late delivery"):
        assert text in en, text
    assert "Scorecard" not in _text(zh)
    # The same stored numbers in both languages.
    nps = fmt("nps", _current(seeded, "nps").value)
    assert f'data-kpi="nps">{nps}</span>' in zh and f'data-kpi="nps">{nps}</span>' in en


def test_department_page_only_has_its_own_scopes_and_actions(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    page = render_report(seeded.settings, engine, PERIOD, department="logistics")
    assert '<html lang="en">' in page  # logistics reads English although the company default is zh
    actions = set(re.findall(r'<tr data-action="(\d+)"', page))
    assert actions == {str(seeded.actions["late"]), str(seeded.actions["new"])}
    # Headline is the department's own KPI row, not the company's.
    dept_nps = _current(seeded, "nps", "department", "logistics")
    assert f'data-kpi="nps">{fmt("nps", dept_nps.value)}</span>' in page
    # Scorecard rows: the department and the scopes it owns, nothing of the others.
    rows = re.findall(r'<th scope="row">([^<]+)</th>', page)
    assert rows == ["Logistics", "Journey stage: delivery", "Topic: Late delivery"]
    assert "客服中心" not in page and "销售部" not in page
    # Comments come from its own feedback only.
    assert "Late delivery" in _text(page)
    assert "Staff attitude" not in _text(page)
    company = render_report(seeded.settings, engine, PERIOD, lang="en")
    assert set(re.findall(r'<tr data-action="(\d+)"', company)) == {
        str(seeded.actions[k]) for k in ("late", "escalated", "verified", "new")}


def test_action_counts_and_effects(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    page = render_report(seeded.settings, engine, PERIOD, lang="en")
    counts = dict(re.findall(r'<b data-count="(\w+)">(\d+)</b>', page))
    assert counts == {"opened": "1", "open": "3", "overdue": "1", "verified": "1", "escalated": "1"}
    late = re.search(rf'<tr data-action="{seeded.actions["late"]}" class="overdue">(.*?)</tr>', page, re.S)
    assert late, "the overdue action is marked"
    # The latest DiD effect with its interval, not the older measurement.
    assert "+2.4" in late.group(1) and "(-9.8 … +14.6)" in late.group(1)
    assert "Chen Jie" in late.group(1) and "2026-09-14" in late.group(1)


def test_data_quality_and_gate(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    page = render_report(seeded.settings, engine, PERIOD, lang="en")
    dq = dict(re.findall(r'<b data-dq="(\w+)">([^<]+)</b>', page))
    assert dq == {"rows_read": "719", "loaded": "701", "duplicates": "12", "quarantined": "7",
                  "gate": "passed"}
    assert 'href="validation.html"' in page
    assert "provisional" not in page


def test_held_cycle_is_marked_provisional(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path, held=True)
    page = render_report(seeded.settings, engine, PERIOD, lang="en")
    assert 'id="provisional"' in page
    zh = render_report(seeded.settings, engine, PERIOD, lang="zh")
    assert "暂定" in zh


def test_journey_map_marks_pain_points(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    page = render_report(seeded.settings, engine, PERIOD, lang="en")
    svg = re.search(r'<svg[^>]*data-chart="heatmap".*?</svg>', page, re.S)
    assert svg
    pains = re.findall(r'<rect class="cell pain"[^>]*><title>([^<]+)</title>', svg.group(0))
    assert pains, "the factory's bad crossings are flagged"
    assert all(p.startswith(("delivery × app", "delivery × web", "after sales × hotline")) for p in pains)
    # Each cell's number is the NPS of that crossing's responses.
    with Session(engine) as s:
        rows = list(s.scalars(select(Feedback).where(col(Feedback.period) == PERIOD,
                                                     col(Feedback.journey_stage) == "delivery",
                                                     col(Feedback.touchpoint) == "app",
                                                     Feedback.quarantined.is_(False))))  # type: ignore[attr-defined]
    scores = [100 if r.nps is not None and r.nps >= 9 else (-100 if (r.nps or 0) <= 6 else 0) for r in rows]
    expected = f"{sum(scores) / len(scores):.1f} (n={len(scores)})"
    assert f"delivery × app: {expected}" in svg.group(0)
    # Another KPI on the same map: CSAT (% answering 4-5) of the crossing.
    csat = render_report(seeded.settings, engine, PERIOD, lang="en", journey_kpi="csat")
    top2 = [100 if (r.csat or 0) >= 4 else 0 for r in rows if r.csat is not None]
    assert f"delivery × app: {sum(top2) / len(top2):.1f} (n={len(top2)})" in csat
    with pytest.raises(ValueError, match="cannot show 'complaint_rate'"):
        render_report(seeded.settings, engine, PERIOD, journey_kpi="complaint_rate")


def test_write_reports_company_and_departments(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    paths = write_reports(seeded.settings, engine, PERIOD)
    out = tmp_path / "reports" / PERIOD
    assert paths == [out / "report.html"] + [out / f"report-{d}.html" for d in DEPARTMENTS]
    assert '<html lang="zh-CN">' in paths[0].read_text(encoding="utf-8")
    assert '<html lang="en">' in (out / "report-logistics.html").read_text(encoding="utf-8")
    before = [p.read_text(encoding="utf-8") for p in paths]
    write_reports(seeded.settings, engine, PERIOD)  # idempotent: same bytes again
    assert [p.read_text(encoding="utf-8") for p in paths] == before
    assert not list(out.glob("*.tmp"))


def test_page_is_self_contained(engine: Engine, tmp_path: Path) -> None:
    seeded = seed(engine, tmp_path)
    page = render_report(seeded.settings, engine, PERIOD, lang="en")
    assert "<script" not in page.replace("&lt;script", "")
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert page.count('data-chart="trend"') == 4
    assert "@media print" in page and "@media (max-width" in page


def test_empty_period_still_renders(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    page = render_report(settings, engine, "2025-01", lang="en")
    assert "No KPI results stored for this cycle." in page


def test_unknown_department_is_a_clear_error(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown department 'nope'"):
        render_report(make_settings(tmp_path), engine, PERIOD, department="nope")


def _write_config(tmp_path: Path, db_url: str) -> Path:
    """The factory's company as a cxloop.toml, for tests through the CLI."""
    cfg = tmp_path / "cxloop.toml"
    depts = "".join(
        f'[departments.{d}]\nname = "{v["name"]}"\n'
        + (f'language = "{v["language"]}"\n' if "language" in v else "")
        + "".join(f"owns.{k} = {json.dumps(vals)}\n" for k, vals in v["owns"].items())
        for d, v in DEPARTMENTS.items())
    topics = "".join(f'[[topics]]\nid = "{t["id"]}"\nname_zh = "{t["name_zh"]}"\nname_en = "{t["name_en"]}"\n'
                     for t in TOPICS)
    cfg.write_text(f'[project]\nname = "Acme"\nlanguage = "zh"\n[database]\nurl = "{db_url}"\n'
                   f'[vocabulary]\njourney_stage = {json.dumps(STAGES)}\n'
                   f'touchpoint = {json.dumps(TOUCHPOINTS)}\n'
                   f'[[targets]]\nkpi = "nps"\nvalue = 30\n[[targets]]\nkpi = "csat"\nvalue = 80\n'
                   f"{depts}{topics}", encoding="utf-8")
    return cfg


def test_numbers_match_cxloop_kpis_after_the_real_kpi_stage(engine: Engine, db_url: str,
                                                            tmp_path: Path) -> None:
    """End to end with cxloop.tasks.kpis: compute the period from the feedback rows, then every number the
    report shows for a KPI row equals `cxloop kpis --format json`."""
    from typer.testing import CliRunner

    from cxloop.cli import app
    from cxloop.config import load_settings
    from cxloop.tasks.kpis import compute_kpis

    seed(engine, tmp_path)
    cfg = _write_config(tmp_path, db_url)
    settings = load_settings(cfg, env={})
    compute_kpis(settings, engine, PERIOD)
    res = CliRunner().invoke(app, ["kpis", "--period", PERIOD, "--format", "json", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    rows = {(r["kpi"], r["scope"], r["scope_value"]): r for r in json.loads(res.output)}
    page = render_report(settings, engine, PERIOD, lang="en")
    for kpi in HEADLINE_KPIS:
        row = rows[(kpi, "overall", "all")]
        tile = re.search(rf'<article class="tile" data-kpi="{kpi}">(.*?)</article>', page, re.S)
        assert tile, kpi
        assert f'data-kpi="{kpi}">{fmt(kpi, row["value"])}</span>' in tile.group(1)
        assert f'<b class="n">{row["n"]}</b>' in tile.group(1)
        assert f"{fmt(kpi, row['ci_low'])} – {fmt(kpi, row['ci_high'])}" in tile.group(1)
    shown = 0
    for dept in DEPARTMENTS:
        part = page.split(f'<th scope="row">{DEPARTMENTS[dept]["name"]}</th>', 1)[1].split("</tr>", 1)[0]
        cells = re.findall(r'<td class="cell st-(\w+)" data-kpi="(\w+)" data-n="(\d+)"[^>]*>\s*'
                           r'<span class="v">([^<]+)</span>', part)
        assert cells, dept
        for status, kpi, n, value in cells:
            row = rows[(kpi, "department", dept)]
            assert (status, int(n), value) == (row["status"], row["n"], fmt(kpi, row["value"]))
            shown += 1
    assert shown >= 12


def test_cli_writes_reports_and_prints_paths(engine: Engine, db_url: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cxloop.cli import app

    seed(engine, tmp_path)
    cfg = _write_config(tmp_path, db_url)
    runner = CliRunner()
    res = runner.invoke(app, ["report", "--period", PERIOD, "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "reports" / PERIOD
    assert res.output.split() == [str(out / "report.html"), *(str(out / f"report-{d}.html")
                                                              for d in DEPARTMENTS)]
    single = tmp_path / "one" / "logistics.html"
    res = runner.invoke(app, ["report", "-p", PERIOD, "-d", "logistics", "--lang", "zh",
                              "--out", str(single), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str(single)
    empty = runner.invoke(app, ["report", "-p", "2031-05", "--config", str(cfg)])  # a typo, likely
    assert empty.exit_code == 0 and "2031-05: no responses and no cycle for this month" in empty.stderr
    assert "no responses" not in res.stderr
    assert '<html lang="zh-CN">' in single.read_text(encoding="utf-8")
    res = runner.invoke(app, ["report", "-p", PERIOD, "--lang", "fr", "--config", str(cfg)])
    assert res.exit_code == 2 and "use zh or en" in res.output
    # pages unlike the cycle's (forced language, another journey KPI) leave the cycle's pages alone
    cycle_pages = {p.name: p.read_bytes() for p in out.glob("*.html")}
    res = runner.invoke(app, ["report", "-p", PERIOD, "--lang", "en", "--journey-kpi", "csat",
                              "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert res.output.split()[0] == str(out / "en-csat" / "report.html")
    assert '<html lang="en">' in (out / "en-csat" / "report.html").read_text(encoding="utf-8")
    assert {p.name: p.read_bytes() for p in out.glob("*.html")} == cycle_pages
    res = runner.invoke(app, ["report", "-p", PERIOD, "-d", "nope", "--config", str(cfg)])
    assert res.exit_code == 2 and "Invalid value for --department: unknown department 'nope'" in res.output
    res = runner.invoke(app, ["report", "-p", PERIOD, "--journey-kpi", "complaint_rate",
                              "--config", str(cfg)])
    assert res.exit_code == 2 and "the journey map cannot show 'complaint_rate'" in res.output


@pytest.mark.parametrize("journey_kpi", ["nps", "cx_index"])
def test_aggregated_feedback_matches_row_level(engine: Engine, tmp_path: Path, journey_kpi: str) -> None:
    """The pages aggregate the period's rows (month frame) with integer codes; the aggregates equal
    a plain pandas groupby of the rows, pages from the rows or from their summary are the same,
    and each department page counts exactly the rows `department_rows` selects."""
    from cxloop.tasks.report import build_report, department_rows, load_feedback, summarise_feedback

    seeded = seed(engine, tmp_path)
    rows = load_feedback(engine, PERIOD)
    summary = summarise_feedback(engine, seeded.settings, PERIOD, journey_kpi)
    scores = ["nps"] if journey_kpi == "nps" else ["cx_success", "cx_effort", "cx_emotion"]
    keys = ["department", "journey_stage", "touchpoint", "channel", *scores]
    assert _counts(summary.groups, keys, "count") == _counts(rows.assign(count=1), keys, "count")
    negative = (rows["sentiment"] == "negative").fillna(False) | (rows["is_complaint"] == 1)
    neg_keys = ["department", "journey_stage", "touchpoint", "channel", "themes"]
    expected = rows[negative].assign(count=1, first=rows["id"])
    for column, how in (("count", "sum"), ("first", "min")):
        assert _counts(summary.negatives, neg_keys, column, how) == _counts(expected, neg_keys, column, how)
    commented = rows[negative & rows["comment"].notna()]
    assert sorted(summary.comments["response_id"]) == sorted(commented["response_id"])
    for dept in [None, *DEPARTMENTS]:
        from_summary = render_report(seeded.settings, engine, PERIOD, dept, lang="en",
                                     journey_kpi=journey_kpi, feedback=summary)
        from_rows = render_report(seeded.settings, engine, PERIOD, dept, lang="en",
                                  journey_kpi=journey_kpi, feedback=rows)
        assert from_summary == from_rows, dept
        data = build_report(seeded.settings, engine, PERIOD, dept, lang="en", journey_kpi=journey_kpi)
        expected_rows = department_rows(rows, seeded.settings, dept) if dept else rows
        assert data.responses == len(expected_rows) > 0
        assert data.voices and all(v.comments for v in data.voices)
    for topic in ("delivery_delay", "rude_staff", "refund"):  # owned topics, flagged per row
        flagged = summary.groups.loc[summary.groups[f"topic:{topic}"] == 1, "count"].sum()
        assert flagged == rows["themes"].fillna("").str.split(",").map(lambda t, x=topic: x in t).sum() > 0


@pytest.mark.parametrize("journey_kpi", ["nps", "cx_index"])
def test_a_month_summarised_in_parts_is_the_same_summary(engine: Engine, tmp_path: Path, journey_kpi: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A month too large to keep is summarised part by part and the parts merged: groups (and
    their order), negatives, comments and every page equal those of the month at once."""
    import cxloop.tasks.month as month
    from cxloop.tasks.report import summarise_feedback

    seeded = seed(engine, tmp_path)
    start = period_bounds(PERIOD, seeded.settings.tz)[0] + timedelta(days=3)
    with Session(engine) as s:  # empty keys, answers and themes: their groups come last
        s.add_all([Feedback(source="survey", response_id=f"blank{i}", period=PERIOD, submitted_at=start,
                            channel="app", content_hash=f"b{i}", sentiment="negative", comment="?",
                            journey_stage=None if i else "delivery") for i in range(3)])
        s.commit()
    whole = summarise_feedback(engine, seeded.settings, PERIOD, journey_kpi,
                               month.Month(engine, PERIOD, keep=True))  # kept: one part
    monkeypatch.setattr(month, "PART_ROWS", 61)
    assert len(list(month.Month(engine, PERIOD).parts(["id"], clean=True))) > 10
    parts = summarise_feedback(engine, seeded.settings, PERIOD, journey_kpi)
    for name in ("groups", "negatives", "comments"):
        pd.testing.assert_frame_equal(getattr(parts, name), getattr(whole, name), obj=name)
    assert whole.groups["department"].isna().any() and len(whole.negatives) > 20
    assert {k: v.tolist() for k, v in parts.by_theme.items()} == {
        k: v.tolist() for k, v in whole.by_theme.items()}
    for dept in [None, *DEPARTMENTS]:
        pages = [render_report(seeded.settings, engine, PERIOD, dept, lang="en", journey_kpi=journey_kpi,
                               feedback=summary) for summary in (whole, parts)]
        assert pages[0] == pages[1], dept


def _counts(frame: pd.DataFrame, keys: list[str], column: str,
            how: str = "sum") -> dict[tuple[Any, ...], int]:
    """{key values (missing as "-"): sum or min of `column`} of a frame's rows."""
    filled = frame[keys].astype(object).where(frame[keys].notna(), "-").assign(**{column: frame[column]})
    return {k: int(v) for k, v in filled.groupby(keys, sort=False)[column].agg(how).items()}
