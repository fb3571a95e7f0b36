"""Outcomes in the loop (issue 22, item 4): the `[outcomes]` export (GBK, Chinese headers) collected
idempotently into its own table, joined to a month's responses by customer id, and the report's
section with each outcome per NPS group, complaints per 1,000 orders and the worth of one NPS point;
config errors exit 2 naming the key; on SQLite and PostgreSQL.

Planted: 600 customers answer in October 2026; in the 60 days after their answer promoters spend
300, passives 200, detractors 100 (plus noise); detractors churn 40%, others 10%. Rows before the
answer and after the window are noise the join must leave out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, func, select

from cxloop.config import ConfigError, Settings, settings_from_dict
from cxloop.flows.bookkeeping import data_fingerprint, source_fingerprint
from cxloop.models import Outcome
from cxloop.tasks.collect import collect_period
from cxloop.tasks.collect.outcomes import collect_outcomes
from cxloop.tasks.report import build_report, render_report, write_reports
from tests.cli import cxloop

P = "2026-10"
N = 600
SPEND = {"promoter": 300.0, "passive": 200.0, "detractor": 100.0}
CHURN = {"promoter": 0.1, "passive": 0.1, "detractor": 0.4}


def group(nps: int) -> str:
    return "promoter" if nps >= 9 else "passive" if nps >= 7 else "detractor"


def write_data(folder: Path, n: int = N, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    responses = ["id,time,nps,customer,complaint"]
    outcomes = ["会员号,日期,订单数,消费金额,是否流失"]
    for i in range(n):
        nps = int(rng.integers(0, 11))
        day = 1 + i % 28
        responses.append(f"R{i},2026-10-{day:02d} 10:00,{nps},C{i:04d},{'是' if i % 50 == 0 else '否'}")
        g = group(nps)
        outcomes.append(f"C{i:04d},2026-09-{day:02d},1,999,否")  # before the answer: left out
        first = float(np.round(SPEND[g] * 0.6 + rng.normal(0, 20), 2))
        outcomes.append(f"C{i:04d},2026-10-{day:02d} 18:00,1,{first},否")
        churned = "是" if rng.random() < CHURN[g] else "否"
        later = float(np.round(max(SPEND[g] * 0.4 + rng.normal(0, 10), 0.0), 2))
        outcomes.append(f"C{i:04d},2026-11-{day:02d},1,{later},{churned}")
        outcomes.append(f"C{i:04d},2027-02-{day:02d},3,5000,否")  # after the 60-day window: left out
    (folder / "responses.csv").write_text("\n".join(responses) + "\n", encoding="utf-8")
    (folder / "orders.csv").write_bytes(("\n".join(outcomes) + "\n").encode("gbk"))


OUTCOMES: dict[str, Any] = {
    "kind": "csv", "path": "data/orders.csv", "window_days": 60, "min_customers": 100, "currency": "CNY",
    "columns": {"customer_id": "会员号", "date": "日期", "orders": "订单数", "spend": "消费金额",
                "churned": "是否流失"},
}


def config(tmp_path: Path, outcomes: dict[str, Any] | None = OUTCOMES, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "project": {"timezone": "Asia/Shanghai", "language": "en"},
        "sources": [{"name": "web", "kind": "csv", "path": "data/responses.csv", "channel": "web",
                     "columns": {"response_id": "id", "submitted_at": "time", "nps": "nps",
                                 "customer_id": "customer", "is_complaint": "complaint"},
                     "values": {"is_complaint": {"是": True, "否": False}}}],
        **extra,
    }
    if outcomes is not None:
        data["outcomes"] = outcomes
    return data


def settings_for(tmp_path: Path, **kw: Any) -> Settings:
    return settings_from_dict(config(tmp_path, **kw), tmp_path, env={})


def outcome_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Outcome)).scalar() or 0)


@pytest.mark.parametrize(("outcomes", "key"), [
    ({**OUTCOMES, "columns": {**OUTCOMES["columns"], "spendd": "x"}}, "outcomes.columns"),
    ({**OUTCOMES, "columns": {"date": "日期", "spend": "消费金额"}}, "outcomes.columns"),
    ({**OUTCOMES, "columns": {"customer_id": "会员号", "date": "日期"}}, "outcomes.columns"),
    ({**OUTCOMES, "windw_days": 30}, "outcomes.windw_days"),
    ({**OUTCOMES, "kind": "json"}, "outcomes.kind"),
    ({**OUTCOMES, "window_days": 0}, "outcomes.window_days"),
])
def test_a_bad_outcomes_key_names_it(tmp_path: Path, outcomes: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        settings_for(tmp_path, outcomes=outcomes)
    assert f"  {key}" in str(exc.value)


def test_cxloop_collect_exits_2_naming_a_missing_outcomes_column(
        tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    write_data(tmp_path / "data", n=20)
    cfg = tmp_path / "cxloop.toml"
    columns = {**OUTCOMES["columns"], "spend": "金额"}
    cols = ", ".join(f'{k} = "{v}"' for k, v in columns.items())
    cfg.write_text(f"""
[database]
url = "{db_url}"
[[sources]]
name = "web"
kind = "csv"
path = "data/responses.csv"
channel = "web"
columns = {{ response_id = "id", submitted_at = "time", nps = "nps", customer_id = "customer" }}
[outcomes]
kind = "csv"
path = "data/orders.csv"
columns = {{ {cols} }}
""", encoding="utf-8")
    code, out, err = cxloop(capsys, monkeypatch, cfg, "collect", "--period", P)
    assert code == 2, (out, err)
    assert "outcomes.columns.spend = '金额'" in err and "data/orders.csv" in err and "Traceback" not in err
    columns["spend"] = "消费金额"
    cols = ", ".join(f'{k} = "{v}"' for k, v in columns.items())
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("金额", "消费金额"), encoding="utf-8")
    code, out, err = cxloop(capsys, monkeypatch, cfg, "collect", "--period", P)
    assert code == 0, (out, err)
    assert "outcomes" in out and "C0001" not in out + err  # customer ids are never printed


def test_outcomes_collect_is_idempotent_and_skips_bad_rows(tmp_path: Path, engine: Engine) -> None:
    write_data(tmp_path / "data", n=50)
    path = tmp_path / "data" / "orders.csv"
    bad = "C9999,not a date,1,5,否\n,2026-10-02,1,5,否\nC0001,2026-10-03,x,5,否\nC0002,2026-10-03,1,5,也许\n"
    path.write_bytes(path.read_bytes() + bad.encode("gbk"))
    settings = settings_for(tmp_path)
    first = collect_period(settings, engine, P)
    assert first.outcomes is not None
    [done] = first.outcomes.files
    assert (done.rows_read, done.stored, done.skipped) == (204, 200, 4)
    assert done.first_skip == "row 202, column '日期': not a date"
    assert any("4 row(s) skipped" in w for w in first.warning_lines)
    assert "C9999" not in " ".join(first.warning_lines)  # customer ids are not quoted
    assert outcome_rows(engine) == 200
    collected, reported = source_fingerprint(settings), data_fingerprint(settings, engine, "outcomes")
    again = collect_outcomes(settings, engine)
    assert again.files[0].unchanged and outcome_rows(engine) == 200
    assert data_fingerprint(settings, engine, "outcomes") == reported
    # A changed file replaces its rows: never duplicated, a removed row is gone; the cycle's collect
    # and report stages see the change (they are redone on a re-run).
    lines = path.read_bytes().decode("gbk").splitlines()
    path.write_bytes(("\n".join(lines[:101]) + "\n").encode("gbk"))
    assert source_fingerprint(settings) != collected
    changed = collect_outcomes(settings, engine)
    assert changed.files[0].stored == 100 and outcome_rows(engine) == 100
    assert data_fingerprint(settings, engine, "outcomes") != reported
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Outcome).where(
            Outcome.customer_id == "C0001")).scalar() == 4  # type: ignore[arg-type]
    # An unreadable file is reported, the sources still load.
    path.write_bytes(b"")
    broken = collect_period(settings, engine, P)
    assert broken.imports[0].error is None and broken.errors == [
        "outcomes: data/orders.csv: the file is empty (no header row)"]


def test_report_shows_outcomes_per_nps_group_joined_by_customer(tmp_path: Path, engine: Engine) -> None:
    write_data(tmp_path / "data")
    settings = settings_for(tmp_path)
    collect_period(settings, engine, P)
    section = build_report(settings, engine, P).outcomes
    assert section is not None and not section.too_few
    assert section.customers == N and section.responses == N and section.incomplete == 0
    spend = next(line for line in section.lines if line.outcome == "spend")
    assert spend.unit == "CNY"
    for cell, truth in zip(spend.cells, (300.0, 200.0, 100.0), strict=True):
        lo, hi = (float(x.replace(",", "")) for x in cell.ci.split("–"))
        assert lo <= truth <= hi, (cell, truth)  # the earlier and later rows were left out
        assert cell.n > 100
    # One NPS point: 100 contribution points separate the groups by 100 CNY: 1 CNY per point.
    lo, hi = (float(x) for x in spend.per_point_ci.split(" – "))
    assert lo <= 1.0 <= hi and hi - lo < 0.2
    churn = next(line for line in section.lines if line.outcome == "churned")
    assert churn.unit == "%" and churn.per_point.endswith(" pp")
    assert float(churn.per_point.removesuffix(" pp")) < 0  # promoters churn less
    orders = next(line for line in section.lines if line.outcome == "orders")
    assert [c.value for c in orders.cells] == ["2.00", "2.00", "2.00"]
    # 12 complaints among October's answers against the 600 orders dated in October: 20 per 1,000.
    assert section.complaints == 12 and section.orders == 600.0 and section.complaint_rate == "20.00"
    [page, *_] = write_reports(settings, engine, P, out_dir=tmp_path / "out")
    html = page.read_text(encoding="utf-8")
    assert 'id="outcomes"' in html and 'data-outcome="spend"' in html
    assert "not proof that raising the score causes it" in html and "C0001" not in html
    zh = render_report(settings, engine, P, lang="zh")
    assert "评分与客户后续行为" in zh and "并不能证明" in zh and "每千笔订单投诉数" in zh


def test_no_outcomes_configured_no_section_and_too_few_one_line(tmp_path: Path, engine: Engine) -> None:
    write_data(tmp_path / "data", n=40)
    plain = settings_for(tmp_path, outcomes=None)
    collect_period(plain, engine, P)
    assert build_report(plain, engine, P).outcomes is None
    assert 'id="outcomes"' not in render_report(plain, engine, P)
    settings = settings_for(tmp_path)
    collect_period(settings, engine, P)
    section = build_report(settings, engine, P).outcomes
    assert section is not None and section.too_few.startswith("Not enough joined customers")
    assert "(n=40, at least 100)" in section.too_few and not section.lines
    html = render_report(settings, engine, P)
    assert 'data-outcomes="too-few"' in html and 'data-outcome="spend"' not in html
    # a window not yet over leaves the answer out rather than counting "no orders yet" as none
    late = settings_for(tmp_path, outcomes={**OUTCOMES, "window_days": 200, "min_customers": 10})
    section = build_report(late, engine, P).outcomes
    assert section is not None and section.incomplete == 40 and section.customers == 0


def test_an_excel_export_with_date_cells_and_numeric_ids(tmp_path: Path, engine: Engine) -> None:
    """Excel keeps member numbers as numbers (1001.0) and dates as date cells: both still join."""
    from datetime import datetime

    from openpyxl import Workbook

    write_data(tmp_path / "data", n=10)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["member", "day", "spend"])
    sheet.append([1001, datetime(2026, 10, 20), 88.5])
    sheet.append([1001.0, datetime(2026, 11, 2), 11.5])
    sheet.append([None, datetime(2026, 11, 2), 1.0])  # no member: skipped
    book.save(tmp_path / "data" / "crm.xlsx")
    settings = settings_for(tmp_path, outcomes={"kind": "excel", "path": "data/crm.xlsx",
                                                "columns": {"customer_id": "member", "date": "day",
                                                            "spend": "spend"}})
    [done] = collect_outcomes(settings, engine).files
    assert (done.stored, done.skipped, done.error) == (2, 1, None)
    assert done.first_skip == "row 4, column 'member': no customer id"
    with engine.connect() as conn:
        rows = conn.execute(select(Outcome.customer_id, Outcome.spend).order_by(Outcome.row)).all()  # type: ignore[call-overload]
    assert [tuple(r) for r in rows] == [("1001", 88.5), ("1001", 11.5)]
