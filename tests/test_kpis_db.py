"""The KPI stage against real databases (SQLite and PostgreSQL): load, compute, store, re-run,
signals from stored history, and the `cxloop kpis` command."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, extract, func, insert, select
from typer.testing import CliRunner

from cxloop.config import Settings, settings_from_dict
from cxloop.models import AppliedTarget, Feedback, KpiResult
from cxloop.tasks import kpis

BASE = datetime(2026, 10, 5, 8, 0, tzinfo=UTC)


def make_settings(tmp_path: Path, db_url: str = "", **extra: Any) -> Settings:
    data: dict[str, Any] = {
        "database": {"url": db_url},
        "kpis": {"crossings": [["department", "region"]], "bootstrap_resamples": 199},
        "targets": [{"kpi": "nps", "scope": "department", "value": 0},
                    {"kpi": "nps", "scope": "department", "match": "sales", "value": -90, "min_n": 10}],
    }
    data.update(extra)
    return settings_from_dict(data, tmp_path, env={})


def feedback(i: int, period: str = "2026-10", **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "source": "test", "response_id": f"{period}-{i}", "period": period, "submitted_at": BASE,
        "channel": "web", "content_hash": "h", "quarantined": False,
        "department": "logistics" if i % 2 else "sales", "region": "east" if i % 3 else "west",
        "nps": i % 11, "csat": 1 + i % 5, "ces": 1 + i % 7, "cx_success": 1 + i % 7,
        "cx_effort": 1 + (i + 3) % 7, "cx_emotion": 1 + (i + 5) % 7, "is_complaint": i % 4 == 0,
        "opened_at": BASE, "first_response_at": BASE + timedelta(hours=i % 9),
        "resolved_at": BASE + timedelta(hours=20 + i), "comment": "slow delivery" if i % 3 == 0 else None,
        "themes": "delivery" if i % 3 == 0 else "", "sentiment": "negative" if i % 6 == 0 else "neutral",
    }
    row.update(fields)
    return row


def insert_rows(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(Feedback.__table__), rows)  # type: ignore[attr-defined]


def stored(engine: Engine, period: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    t = KpiResult.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        recs = conn.execute(select(t).where(t.c.period == period)).mappings().all()
    return {(r["kpi"], r["scope"], r["scope_value"]): dict(r) for r in recs}


def test_load_responses_selects_clean_rows_and_derives_columns(engine: Engine, tmp_path: Path) -> None:
    rows = [feedback(i) for i in range(20)]
    rows[0]["quarantined"] = True
    rows.append(feedback(99, period="2026-09"))
    insert_rows(engine, rows)
    s = make_settings(tmp_path)
    df = kpis.load_responses(s, engine, "2026-10")
    assert len(df) == 19
    assert set(kpis.KPI_COLUMNS) <= set(df.columns)
    one = df.sort_values("first_response_hours").iloc[-1]
    assert one["first_response_hours"] == pytest.approx(8.0)
    assert df["has_comment"].sum() == sum(1 for i in range(1, 20) if i % 3 == 0)
    few = kpis.load_responses(s, engine, "2026-10", columns=["nps", "department"])
    assert list(few.columns) == ["nps", "department"]
    times = kpis.load_responses(s, engine, "2026-10", columns=["opened_at", "is_complaint", "comment"])
    assert (times["opened_at"] == BASE).all()
    assert times["is_complaint"].sum() == sum(1 for i in range(1, 20) if i % 4 == 0)
    assert kpis.kpi_value("first_response_hours", times.assign(first_response_at=BASE)) == (0.0, 19)
    assert kpis.load_responses(s, engine, "2030-01").empty
    with pytest.raises(ValueError, match="unknown column"):
        kpis.load_responses(s, engine, "2026-10", columns=["nope"])


def test_derived_columns_are_the_databases_own_arithmetic(engine: Engine, tmp_path: Path) -> None:
    """Durations and has_comment come from the month frame, computed as the database did: on SQLite
    bit for bit its julianday difference (a few nanoseconds off, which decides bins at their edges),
    on PostgreSQL extract(epoch)/3600 (exact; its numeric division may round the last bit apart)."""
    rng = random.Random(7)
    rows = []
    for i in range(300):
        opened = BASE + timedelta(microseconds=rng.randrange(10**11))
        step = rng.choice([timedelta(minutes=3), timedelta(seconds=1), timedelta(microseconds=1)])
        first = step * (rng.randrange(10**5) if i % 10 else -rng.randrange(1, 100))  # negative: NaN
        rows.append(feedback(i, opened_at=opened, first_response_at=opened + first,
                             resolved_at=None if i % 7 == 0 else opened + step * rng.randrange(10**5),
                             comment=rng.choice([None, "", " ", "  \t", "\n", " ok ", "好"])))
    insert_rows(engine, rows)
    t = Feedback.__table__  # type: ignore[attr-defined]
    if engine.dialect.name == "sqlite":
        hours = (func.julianday(t.c.first_response_at) - func.julianday(t.c.opened_at)) * 24.0
    else:
        hours = extract("epoch", t.c.first_response_at - t.c.opened_at) / 3600.0
    has = func.length(func.trim(func.coalesce(t.c.comment, ""))) > 0
    with engine.connect() as conn:
        expected = conn.execute(select(hours, has).order_by(t.c.id)).all()
    df = kpis.load_responses(make_settings(tmp_path), engine, "2026-10")
    want = np.array([np.nan if h is None or h < 0 else float(h) for h, _ in expected])
    got = df["first_response_hours"].to_numpy()
    assert (np.isnan(got) == np.isnan(want)).all() and np.isnan(want).any()
    if engine.dialect.name == "sqlite":
        assert (got[~np.isnan(got)] == want[~np.isnan(want)]).all()
    else:
        assert got[~np.isnan(got)] == pytest.approx(want[~np.isnan(want)], rel=1e-15, abs=0)
    assert (kpis.time_codes(got) == kpis.time_codes(want)).all()
    assert df["has_comment"].tolist() == [bool(h) for _, h in expected]
    assert df["resolution_hours"].isna().sum() == 300 // 7 + 1


def test_compute_store_and_rerun_is_idempotent(engine: Engine, tmp_path: Path) -> None:
    insert_rows(engine, [feedback(i) for i in range(120)])
    s = make_settings(tmp_path)
    rows = kpis.compute_kpis(s, engine, "2026-10")
    first = stored(engine, "2026-10")
    assert len(first) == len(rows) == len({r.key for r in rows})
    nps = first[("nps", "overall", "all")]
    direct, n = kpis.kpi_value("nps", kpis.load_responses(s, engine, "2026-10"))
    assert (nps["value"], nps["n"]) == (pytest.approx(direct), n) and n == 120
    assert nps["stats"]["family"] == "nps" and sum(nps["stats"]["counts"]) == 120
    assert nps["method"] == "adjusted_wald" and nps["ci_low"] < nps["value"] < nps["ci_high"]
    logistics = first[("nps", "department", "logistics")]
    assert logistics["target"] == 0 and logistics["status"] in ("missed", "at_risk", "met")
    sales = first[("nps", "department", "sales")]
    assert (sales["target"], sales["min_n"], sales["status"]) == (-90, 10, "met")
    assert ("nps", "department x region", "logistics | east") in first
    assert first[("theme_share", "topic", "delivery")]["value"] == pytest.approx(100.0)
    # Re-running changes nothing and duplicates nothing (same ids, same values).
    again = kpis.compute_kpis(s, engine, "2026-10")
    second = stored(engine, "2026-10")
    assert len(again) == len(rows)
    assert {k: (v["id"], v["value"], v["ci_low"], v["status"]) for k, v in second.items()} == \
           {k: (v["id"], v["value"], v["ci_low"], v["status"]) for k, v in first.items()}
    with engine.connect() as conn:
        targets = conn.execute(select(AppliedTarget.__table__)).mappings().all()  # type: ignore[attr-defined]
    assert sorted((t["scope"], t["match"], t["value"], t["min_n"]) for t in targets) == [
        ("department", "", 0.0, 30), ("department", "sales", -90.0, 10)]
    # A config edit and a data fix: results that no longer exist are removed, the rest updated.
    s2 = make_settings(tmp_path, targets=[{"kpi": "nps", "scope": "overall", "value": 50}],
                       kpis={"bootstrap_resamples": 199})
    kpis.compute_kpis(s2, engine, "2026-10")
    third = stored(engine, "2026-10")
    assert not any(k[1] == "department x region" for k in third)
    assert third[("nps", "overall", "all")]["id"] == first[("nps", "overall", "all")]["id"]
    assert third[("nps", "overall", "all")]["target"] == 50
    assert third[("nps", "department", "logistics")]["target"] is None
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(AppliedTarget.__table__)).scalar() == 1  # type: ignore[attr-defined]


def test_a_month_counted_in_parts_stores_the_same_results(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A month too large to keep is read and counted part by part; every stored result (value,
    interval, histogram) equals the one computed from the month at once."""
    import cxloop.tasks.month as month

    rng = random.Random(3)
    rows = []
    for i in range(150):  # values that differ in spaces, empty ones, several topics, every time tier
        opened = BASE + timedelta(minutes=rng.randrange(10**4))
        rows.append(feedback(
            i, department=rng.choice(["sales", " sales", "logistics", "", None]),
            region=rng.choice(["east", "west ", None]), quarantined=i % 17 == 0,
            nps=rng.choice([None, *range(11)]), csat=rng.choice([None, 1, 3, 5]),
            cx_effort=rng.choice([None, 2, 6]), is_complaint=rng.choice([None, True, False]),
            opened_at=opened, first_response_at=opened + timedelta(hours=rng.expovariate(0.2)),
            resolved_at=rng.choice([None, opened + timedelta(hours=rng.expovariate(0.002))]),
            comment=rng.choice([None, " ", "slow", "late and rude"]),
            themes=rng.choice(["", "delivery", "delivery, price", "price,service"]),
            sentiment=rng.choice(["negative", "neutral", None])))
    insert_rows(engine, rows)
    s = make_settings(tmp_path)

    def results(rows: month.Month | None = None) -> dict[tuple[str, str, str], dict[str, Any]]:
        kpis.compute_kpis(s, engine, "2026-10", month_rows=rows)
        return {k: {c: v for c, v in r.items() if c != "id"} for k, r in stored(engine, "2026-10").items()}

    whole = results(month.Month(engine, "2026-10", keep=True))  # the kept month: one part
    monkeypatch.setattr(month, "PART_ROWS", 8)
    parts = list(kpis.response_parts(s, engine, "2026-10"))
    assert len(parts) == 18 and sum(map(len, parts)) == 141
    assert results() == whole
    assert whole[("responses", "overall", "all")]["n"] == 141
    assert {k[2] for k in whole if k[1] == "topic"} == {"delivery", "price", "service"}
    assert {k[2] for k in whole if k[1] == "department"} == {"sales", "logistics"}


def test_signals_come_from_stored_non_provisional_history(engine: Engine, tmp_path: Path) -> None:
    s = make_settings(tmp_path)
    t = KpiResult.__table__  # type: ignore[attr-defined]
    history = [30.0, 33.0, 29.0, 32.0, 31.0, 28.0, 32.0, 30.0]
    periods = [f"2026-{m:02d}" for m in range(2, 10)]
    with engine.begin() as conn:
        conn.execute(insert(t), [
            {"period": p, "kpi": "nps", "scope": "overall", "scope_value": "all", "n": 400, "value": v,
             "method": "adjusted_wald", "status": "no_target", "provisional": False, "stats": {}}
            for p, v in zip(periods, history, strict=True)])
        # A provisional month with a wild value must not enter the limits.
        conn.execute(insert(t), [{"period": "2026-01", "kpi": "nps", "scope": "overall",
                                  "scope_value": "all", "n": 400, "value": -90.0, "method": "",
                                  "status": "no_target", "provisional": True, "stats": {}}])
    # This month: NPS far below the history (mostly detractors).
    insert_rows(engine, [feedback(i, nps=2 if i % 5 else 10) for i in range(200)])
    rows = {r.key: r for r in kpis.compute_kpis(s, engine, "2026-10")}
    nps = rows[("nps", "overall", "all")]
    assert nps.signal == "signal_low"
    chart = stored(engine, "2026-10")[("nps", "overall", "all")]["stats"]["chart"]
    assert chart["history_points"] == 8 and chart["center"] == pytest.approx(sum(history) / 8)
    assert stored(engine, "2026-10")[("nps", "overall", "all")]["signal"] == "signal_low"
    # No history for the CSAT: no signal.
    assert rows[("csat", "overall", "all")].signal is None


def test_provisional_results_are_stored_as_such(engine: Engine, tmp_path: Path) -> None:
    insert_rows(engine, [feedback(i) for i in range(40)])
    s = make_settings(tmp_path)
    kpis.compute_kpis(s, engine, "2026-10", provisional=True)
    assert all(r["provisional"] for r in stored(engine, "2026-10").values())
    kpis.compute_kpis(s, engine, "2026-10")
    assert not any(r["provisional"] for r in stored(engine, "2026-10").values())
    assert kpis.counts(kpis.stored_rows(engine, "2026-10"))["results"] == len(stored(engine, "2026-10"))


def _write_config(tmp_path: Path, db_url: str) -> Path:
    cfg = tmp_path / "cxloop.toml"
    cfg.write_text(
        f'[project]\nlanguage = "en"\n[database]\nurl = "{db_url}"\n'
        '[kpis]\ncrossings = [["department", "region"]]\n'
        '[[targets]]\nkpi = "nps"\nscope = "department"\nvalue = 0\n', encoding="utf-8")
    return cfg


def test_cli_json_table_and_csv(engine: Engine, db_url: str, tmp_path: Path) -> None:
    from cxloop.cli import app

    insert_rows(engine, [feedback(i) for i in range(80)])
    cfg = _write_config(tmp_path, db_url)
    runner = CliRunner()
    # Nothing stored yet: computed on the fly, shown as provisional, nothing written.
    res = runner.invoke(app, ["kpis", "--period", "2026-10", "--config", str(cfg), "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data and all(row["provisional"] for row in data)
    assert stored(engine, "2026-10") == {}
    res = runner.invoke(app, ["kpis", "-p", "2026-10", "-c", str(cfg), "--recompute", "-f", "json",
                              "--scope", "department"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    need = {"kpi", "scope", "scope_value", "n", "value", "ci_low", "ci_high", "target", "status", "signal"}
    assert all(need <= set(row) for row in data)
    assert {row["scope"] for row in data} == {"department"}
    nps = next(r for r in data if r["kpi"] == "nps" and r["scope_value"] == "logistics")
    assert nps["target"] == 0 and nps["n"] == 40
    assert len(stored(engine, "2026-10")) > len(data)
    res = runner.invoke(app, ["kpis", "-p", "2026-10", "-c", str(cfg), "-k", "nps", "-f", "csv"])
    assert res.exit_code == 0
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("kpi,scope,scope_value,n,value,ci_low,ci_high,target,status,signal")
    assert all(line.startswith("nps,") for line in lines[1:])
    res = runner.invoke(app, ["kpis", "-p", "2026-10", "-c", str(cfg), "--scope", "overall"],
                        env={"COLUMNS": "160"})
    assert res.exit_code == 0 and "NPS" in res.stdout and "95% CI" in res.stdout
    res = runner.invoke(app, ["kpis", "-p", "2026-10", "-c", str(cfg), "--scope", "planet"])
    assert res.exit_code == 2 and "unknown scope 'planet'" in res.output  # bad usage, as README says
    res = runner.invoke(app, ["kpis", "-p", "2026-10", "-c", str(cfg), "-k", "joy"])
    assert res.exit_code == 2 and "unknown KPI joy" in res.output
    res = runner.invoke(app, ["kpis", "-p", "2026-13", "-c", str(cfg)])
    assert res.exit_code == 2 and "month 13 is not 01-12" in res.output
