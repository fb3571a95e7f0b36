"""The month frame: typed the same on both databases, shared inside `keeping`, patched by writers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session

import cxloop.tasks.month as month
from cxloop.config import Settings, load_settings, settings_from_dict
from cxloop.db import fresh_pg_schema, open_db
from cxloop.models import Feedback
from cxloop.tasks.actions import open_actions
from cxloop.tasks.collect import collect_period
from cxloop.tasks.comments import analyse_comments
from cxloop.tasks.demo import DemoPlan, Truth, write_demo
from cxloop.tasks.kpis import compute_kpis
from cxloop.tasks.remeasure import remeasure_actions
from cxloop.tasks.report import build_report, summarise_feedback
from cxloop.tasks.validate import validate_period

PERIOD = "2026-10"


def _seed(engine: Engine) -> list[int]:
    t = datetime(2026, 10, 3, 6, 5, tzinfo=UTC)
    with Session(engine) as s:
        rows = [
            Feedback(source="survey", response_id="a", period=PERIOD, submitted_at=t, channel="app",
                     nps=9, comment="快递很快", is_complaint=True, opened_at=t, content_hash="1"),
            Feedback(source="survey", response_id="b", period=PERIOD, submitted_at=t, channel="web",
                     csat=4, quarantined=True, sentiment="positive", sentiment_score=0.9, content_hash="2"),
            Feedback(source="survey", response_id="c", period="2026-09", submitted_at=t, channel="web",
                     csat=2, content_hash="3"),
        ]
        s.add_all(rows)
        s.commit()
        return [int(r.id) for r in rows if r.id is not None]


def test_rows_are_typed_alike_on_every_database(engine: Engine) -> None:
    _seed(engine)
    df = month.Month(engine, PERIOD).rows()
    assert list(df.columns) == list(month.COLUMNS)
    assert df["response_id"].tolist() == ["a", "b"]  # ordered by id, only the period
    assert df["id"].dtype == np.int64 and df["quarantined"].tolist() == [False, True]
    assert str(df["submitted_at"].dtype) == "datetime64[us, UTC]"
    assert df["submitted_at"].iloc[0] == pd.Timestamp("2026-10-03 06:05", tz="UTC")
    assert df["opened_at"].isna().tolist() == [False, True]
    assert df["nps"].iloc[0] == 9.0 and np.isnan(df["nps"].iloc[1])
    assert df["is_complaint"].iloc[0] == 1.0 and np.isnan(df["is_complaint"].iloc[1])
    assert df["comment"].iloc[0] == "快递很快" and pd.isna(df["comment"].iloc[1])
    assert df["sentiment_score"].iloc[1] == 0.9
    assert month.Month(engine, PERIOD).rows(["response_id"], clean=True)["response_id"].tolist() == ["a"]
    assert len(month.Month(engine, "2026-11").rows()) == 0


def test_kept_rows_are_read_once_and_patched_by_writers(engine: Engine) -> None:
    ids = _seed(engine)
    shared = month.Month(engine, PERIOD, keep=True)
    first = shared.rows()
    first.loc[0, "channel"] = "changed by a caller"  # callers get their own frame
    with engine.begin() as conn:  # a write the kept frame is not told about
        conn.execute(update(Feedback.__table__).values(channel="store"))  # type: ignore[attr-defined]
    assert shared.rows()["channel"].tolist() == ["app", "web"]
    shared.patch([ids[0]], {"quarantined": True, "sentiment": "negative",
                            "sentiment_score": 0.1, "themes": None})
    kept = shared.rows()
    assert kept["quarantined"].tolist() == [True, True]
    assert kept["sentiment"].tolist() == ["negative", "positive"]
    assert kept["sentiment_score"].tolist() == [0.1, 0.9]
    assert str(kept["sentiment"].dtype) == "str"
    shared.forget()  # e.g. collect loaded rows: read them again
    assert shared.rows()["channel"].tolist() == ["store", "store"]
    assert month.Month(engine, PERIOD).rows()["quarantined"].tolist() == [False, True]  # not kept


def _loaded(engine: Engine, gap: bool = False) -> pd.DataFrame:
    """Rows as collect inserts them: canonical values, None for empty, in insertion order."""
    t = datetime(2026, 10, 3, 6, 5, tzinfo=UTC)
    frame = pd.DataFrame({
        "source": ["survey", "survey"], "response_id": ["a", "b"],
        "submitted_at": pd.Series([t, t], dtype="datetime64[us, UTC]"), "channel": ["app", "web"],
        "nps": pd.array([9, None], dtype="Int64"), "comment": ["快递很快", None],
        "is_complaint": pd.Series([True, None], dtype=object),
    })
    with Session(engine) as s:
        for r in frame.to_dict("records"):
            values: dict[str, Any] = {k: (None if pd.isna(v) else v) for k, v in r.items()}
            s.add(Feedback(period=PERIOD, content_hash="h", **values))
            s.commit()
            if gap:  # another month's row between them: the ids have a gap
                s.add(Feedback(period="2026-09", content_hash="h", **{**values, "response_id": "sep"}))
                s.commit()
                gap = False
    return frame


@pytest.mark.parametrize("gap", [False, True])
def test_a_new_month_is_kept_from_what_collect_inserted(engine: Engine, gap: bool) -> None:
    frame = _loaded(engine, gap)
    assert not month.Month(engine, PERIOD).seed([frame])  # nothing is kept outside a cycle run
    shared = month.Month(engine, PERIOD, keep=True)
    assert shared.seed([frame.iloc[:1], frame.iloc[1:]])
    pd.testing.assert_frame_equal(shared.rows(), month.read_month(engine, PERIOD))


@pytest.mark.parametrize("flags", [(True, False, False), (False, False, True), (True, True, True)])
def test_the_period_ids_count_quarantined_rows_at_either_end(engine: Engine,
                                                            flags: tuple[bool, ...]) -> None:
    """`_ids` finds the first and last id per quarantine flag: a quarantined first or last row
    still bounds the period, and another month's row between them still makes a gap."""
    with Session(engine) as s:
        for k, flag in enumerate(flags):
            s.add(Feedback(period=PERIOD, source="s", response_id=f"r{k}", channel="web",
                           submitted_at=datetime(2026, 10, 3, tzinfo=UTC), content_hash="h",
                           quarantined=flag))
            s.commit()
    with engine.connect() as conn:
        ids = month._ids(conn, PERIOD)
        assert len(ids) == 3 and ids.tolist() == list(range(ids[0], ids[0] + 3))
        with Session(engine) as s:
            s.add(Feedback(period="2026-09", source="s", response_id="x", channel="web",
                           submitted_at=datetime(2026, 9, 3, tzinfo=UTC), content_hash="h"))
            s.add(Feedback(period=PERIOD, source="s", response_id="r9", channel="web",
                           submitted_at=datetime(2026, 10, 3, tzinfo=UTC), content_hash="h"))
            s.commit()
        ids = month._ids(conn, PERIOD)
        assert len(ids) == 4 and ids[-1] == ids[2] + 2  # the gap is kept


def test_a_month_with_other_rows_is_read_instead(engine: Engine) -> None:
    frame = _loaded(engine)
    shared = month.Month(engine, PERIOD, keep=True)
    assert not shared.seed([frame.iloc[1:]])  # row "a" was there before
    assert shared.rows()["response_id"].tolist() == ["a", "b"]
    swapped = frame.iloc[::-1]
    assert not shared.seed([swapped])  # not in insertion order
    assert shared.rows()["response_id"].tolist() == ["a", "b"]


def test_outside_a_cycle_run_only_the_asked_columns_are_read(engine: Engine) -> None:
    _seed(engine)
    df = month.Month(engine, PERIOD).rows(["nps", "id", "submitted_at"], clean=True)
    assert list(df.columns) == ["nps", "id", "submitted_at"]
    assert df["nps"].tolist() == [9.0] and str(df["submitted_at"].dtype) == "datetime64[us, UTC]"
    shared = month.Month(engine, PERIOD, keep=True)
    pd.testing.assert_frame_equal(shared.rows(["nps", "id", "submitted_at"], clean=True), df)


def _two_sources(tmp_path: Path) -> Settings:
    (tmp_path / "a.csv").write_text(
        "response_id,submitted_at,channel,journey_stage,nps,comment,is_complaint,opened_at\n"
        "r1,2026-10-03 14:05,app,delivery,9,快递很快,是,2026-10-03 14:00\n"
        "r2,2026/10/4 9:00,web,,7,  ,否,\n"
        "r3,2026-09-30 23:00,web,delivery,3,,,\n", encoding="utf-8")  # September: not this month
    (tmp_path / "b.csv").write_text(
        "id,time,csat\nx1,2026-10-05T10:00:00+08:00,4\nx2,2026-10-06 08:00,2\n", encoding="gb18030")
    return settings_from_dict({
        "sources": [{"name": "survey", "kind": "csv", "path": "a.csv"},
                    {"name": "hotline", "kind": "csv", "path": "b.csv",
                     "columns": {"response_id": "id", "submitted_at": "time"},
                     "constants": {"channel": "hotline"}}],
        "departments": {"logistics": {"name": "Logistics", "owns": {"journey_stage": ["delivery"]}}},
    }, tmp_path, env={})


def test_collect_of_a_new_month_keeps_exactly_what_it_stored(engine: Engine, tmp_path: Path,
                                                            month_reads: list[str]) -> None:
    settings = _two_sources(tmp_path)
    reads = month_reads
    shared = month.Month(engine, PERIOD, keep=True)
    summary = collect_period(settings, engine, PERIOD)
    assert shared.seed(summary.inserted())
    kept = shared.rows()
    assert reads == []
    stored = month.Month(engine, PERIOD).rows()
    assert reads == [PERIOD]
    pd.testing.assert_frame_equal(kept, stored)
    assert kept["response_id"].tolist() == ["r1", "r2", "x1", "x2"]
    assert kept["department"].tolist()[0] == "logistics"
    shared = month.Month(engine, PERIOD, keep=True)  # a second collect stores nothing new: not seeded
    assert not shared.seed(collect_period(settings, engine, PERIOD).inserted())


def test_a_month_above_the_row_budget_is_read_per_call(engine: Engine, month_reads: list[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A large month is not kept: each call reads only its columns, and patches change nothing."""
    ids = _seed(engine)
    monkeypatch.setattr(month, "KEEP_ROWS", 1)
    shared = month.Month(engine, PERIOD, keep=True)
    first = shared.rows(["channel", "nps"])
    shared.patch([ids[0]], {"quarantined": True})  # nothing kept to patch
    clean = shared.rows(["response_id"], clean=True)
    assert month_reads == [PERIOD, PERIOD]
    assert list(first.columns) == ["channel", "nps"] and first["channel"].tolist() == ["app", "web"]
    assert clean["response_id"].tolist() == ["a"]  # the database's flags, not the patched ones
    monkeypatch.setattr(month, "KEEP_ROWS", 2)  # two rows are not above a budget of two
    shared = month.Month(engine, PERIOD, keep=True)
    shared.rows(["channel"])
    shared.rows(["nps"])
    assert month_reads == [PERIOD, PERIOD, PERIOD]


def test_only_a_month_above_the_row_budget_is_collected_after_each_stage(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    _seed(engine)
    collections: list[str] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 2:
            collections.append(phase)

    gc.callbacks.append(note)
    gc.disable()  # only the collections `release` asks for
    try:
        for budget, expected in ((2, []), (1, ["start"])):
            monkeypatch.setattr(month, "KEEP_ROWS", budget)
            collections.clear()
            shared = month.Month(engine, PERIOD, keep=True)
            shared.rows(["channel"])
            shared.release()
            assert collections == expected
        month.Month(engine, PERIOD).release()  # outside a cycle run: nothing to release
        assert collections == ["start"]
    finally:
        gc.enable()
        gc.callbacks.remove(note)


def test_collect_does_not_hand_over_a_month_above_the_row_budget(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = _loaded(engine)
    monkeypatch.setattr(month, "KEEP_ROWS", 1)
    shared = month.Month(engine, PERIOD, keep=True)
    assert not shared.seed([frame])
    assert shared.rows()["response_id"].tolist() == ["a", "b"]


def test_rows_are_read_in_batches_and_text_values_shared(engine: Engine,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches join in id order (quarantined rows come last from the period index); a text value
    repeated within a batch is one object."""
    t = datetime(2026, 10, 3, 6, 5, tzinfo=UTC)
    with Session(engine) as s:
        s.add_all([Feedback(source="survey", response_id=f"r{i}", period=PERIOD, submitted_at=t,
                            channel="app" if i % 2 else "web", nps=i % 11, quarantined=i % 3 == 0,
                            comment=None if i % 4 else f"c{i % 8}", content_hash=str(i))
                   for i in range(2000)])
        s.commit()
    whole = month.read_month(engine, PERIOD)
    monkeypatch.setattr(month, "_BATCH", 300)
    batched = month.read_month(engine, PERIOD)
    pd.testing.assert_frame_equal(batched, whole)
    assert batched["response_id"].tolist() == [f"r{i}" for i in range(2000)]
    assert batched["quarantined"].tolist() == [i % 3 == 0 for i in range(2000)]
    channels = batched["channel"].to_numpy(dtype=object)
    assert channels[1] is channels[5] and channels[2] is channels[4]  # same batch, same object
    assert batched["comment"].isna().sum() == 1500 and batched["comment"].iloc[4] == "c4"


def test_a_month_not_kept_comes_in_parts(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts of at most `rows` rows (fetched a batch at a time) hold every row once, typed as the
    whole month; a kept month is one part; an empty month one empty part."""
    t = datetime(2026, 10, 3, 6, 5, tzinfo=UTC)
    with Session(engine) as s:
        s.add_all([Feedback(source="survey", response_id=f"r{i}", period=PERIOD, submitted_at=t,
                            channel="app" if i % 2 else "web", nps=i % 11, quarantined=i % 3 == 0,
                            content_hash=str(i)) for i in range(23)])
        s.commit()
    monkeypatch.setattr(month, "_BATCH", 4)
    whole = month.read_month(engine, PERIOD, ["response_id", "nps"], clean=True)
    for rows in (5, 8, 15, 16, 100):  # batches fill a part exactly, or the last batch is cut short
        parts = list(month.Month(engine, PERIOD).parts(["response_id", "nps"], clean=True, rows=rows))
        assert [len(p) for p in parts] == [min(rows, 15 - k) for k in range(0, 15, rows)], rows
        assert all(list(p.columns) == ["response_id", "nps"] for p in parts)
        joined = pd.concat(parts, ignore_index=True)
        pd.testing.assert_frame_equal(joined.sort_values("response_id", key=lambda r: r.str[1:].astype(int),
                                                         ignore_index=True), whole)
    monkeypatch.setattr(month, "PART_ROWS", 6)
    assert [len(p) for p in month.Month(engine, PERIOD).parts()] == [6, 6, 6, 5]
    # kept: the shared frame, whole
    (kept,) = month.Month(engine, PERIOD, keep=True).parts(["nps"], clean=True, rows=2)
    pd.testing.assert_frame_equal(kept, whole[["nps"]])
    (empty,) = month.Month(engine, "2030-01").parts(["nps"], rows=2)
    assert empty.empty and list(empty.columns) == ["nps"]


def test_rows_added_after_the_count_are_read_too(engine: Engine) -> None:
    """The rows are counted before they are read; a row committed in between still arrives."""
    _seed(engine)
    filling = month._Columns(["id", "channel", "nps"], rows=1)
    filling.add([(5, "app", 9), (3, "web", None)])
    filling.add([(4, "app", 1)])
    frame = filling.frame(["channel", "nps", "id"])
    assert frame["id"].tolist() == [3, 4, 5] and frame["channel"].tolist() == ["web", "app", "app"]
    assert frame["nps"].tolist()[1:] == [1.0, 9.0] and np.isnan(frame["nps"].iloc[0])
    assert str(frame["channel"].dtype) == "str"


@pytest.fixture
def other_db_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """A second empty database of the same kind as `db_url`."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'other.db'}"
        return
    with fresh_pg_schema(os.environ["CXLOOP_TEST_PG_URL"]) as url:
        yield url


def _three_cycles(config: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Every stage's outcome of three monthly cycles, run as the flow runs them (one kept `Month`
    handed to every stage, seeded by collect), and the stored rows after."""
    monkeypatch.setenv("CXLOOP_DATABASE_URL", url)
    settings = load_settings(config)
    engine = open_db(url)
    now = datetime(2026, 9, 2, tzinfo=UTC)
    out: dict[str, Any] = {}
    for period in ("2026-06", "2026-07", "2026-08"):
        rows = month.Month(engine, period, keep=True)
        kept = rows.seed(collect_period(settings, engine, period).inserted())
        gate = validate_period(settings, engine, period, now=now, month_rows=rows).counts()
        comments = {**analyse_comments(settings, engine, period, month_rows=rows).counts(), "seconds": 0}
        kpis = [asdict(r) for r in compute_kpis(settings, engine, period, month_rows=rows)]
        remeasured = asdict(remeasure_actions(settings, engine, period, month_rows=rows))
        actions = asdict(open_actions(settings, engine, period, month_rows=rows))
        report = build_report(settings, engine, period,
                              feedback=summarise_feedback(engine, settings, period, month_rows=rows))
        out[period] = {"kept": kept, "gate": gate, "comments": comments, "kpis": kpis,
                       "remeasured": remeasured, "actions": actions,
                       "report": [report.headlines, report.score_rows, report.pain_points, report.actions,
                                  report.voices, report.complaints, report.responses]}
        out[period]["rows"] = month.read_month(engine, period)
    engine.dispose()
    return out


def test_a_month_above_the_row_budget_gives_the_same_stage_results(
        tmp_path: Path, db_url: str, other_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kept (read once, handed over by collect, patched by writers) or read column by column per
    stage (in parts where a stage can work on parts): every stage returns and stores the same."""
    plan = DemoPlan(periods=["2026-06", "2026-07", "2026-08"], rows_per_month=500, seed=5)
    plan.stage_truth[("2026-07", "delivery")] = Truth(0.25, 0.45)
    plan.complaint_rate = {"2026-08": 0.32}
    config = write_demo(tmp_path / "demo", plan)
    kept = _three_cycles(config, db_url, monkeypatch)
    monkeypatch.setattr(month, "KEEP_ROWS", 0)
    monkeypatch.setattr(month, "PART_ROWS", 97)  # the stages that can, work on parts of a month
    read = _three_cycles(config, other_db_url, monkeypatch)
    for period, outcome in kept.items():
        assert outcome.pop("kept") and not read[period].pop("kept")
        pd.testing.assert_frame_equal(outcome.pop("rows"), read[period].pop("rows"))
        assert outcome == read[period], period
    # the months exercise every writer: quarantine flags, an action opened, one re-measured
    assert kept["2026-08"]["gate"]["quarantined_validate"] and kept["2026-07"]["actions"]["opened"]
    assert kept["2026-08"]["remeasured"]["measured"] and kept["2026-08"]["comments"]["analysed"]
