"""The month frame: typed the same on both databases, shared inside `keeping`, patched by writers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session

import tasks.month as month
from config import Settings, settings_from_dict
from models import Feedback
from tasks.collect import collect_period

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
    df = month.month_rows(engine, PERIOD)
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
    assert month.month_rows(engine, PERIOD, ["response_id"], clean=True)["response_id"].tolist() == ["a"]
    assert len(month.month_rows(engine, "2026-11")) == 0


def test_kept_rows_are_read_once_and_patched_by_writers(engine: Engine) -> None:
    ids = _seed(engine)
    with month.keeping(engine, PERIOD):
        first = month.month_rows(engine, PERIOD)
        first.loc[0, "channel"] = "changed by a caller"  # callers get their own frame
        with engine.begin() as conn:  # a write the kept frame is not told about
            conn.execute(update(Feedback.__table__).values(channel="store"))  # type: ignore[attr-defined]
        assert month.month_rows(engine, PERIOD)["channel"].tolist() == ["app", "web"]
        month.patch(engine, PERIOD, [ids[0]], {"quarantined": True, "sentiment": "negative",
                                               "sentiment_score": 0.1, "themes": None})
        kept = month.month_rows(engine, PERIOD)
        assert kept["quarantined"].tolist() == [True, True]
        assert kept["sentiment"].tolist() == ["negative", "positive"]
        assert kept["sentiment_score"].tolist() == [0.1, 0.9]
        assert str(kept["sentiment"].dtype) == "str"
        month.forget(engine, PERIOD)  # e.g. collect loaded rows: read them again
        assert month.month_rows(engine, PERIOD)["channel"].tolist() == ["store", "store"]
    assert month.month_rows(engine, PERIOD)["quarantined"].tolist() == [False, True]  # not kept now


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
    assert not month.seed(engine, PERIOD, [frame])  # nothing is kept outside a cycle run
    with month.keeping(engine, PERIOD):
        assert month.seed(engine, PERIOD, [frame.iloc[:1], frame.iloc[1:]])
        pd.testing.assert_frame_equal(month.month_rows(engine, PERIOD), month.read_month(engine, PERIOD))


def test_a_month_with_other_rows_is_read_instead(engine: Engine) -> None:
    frame = _loaded(engine)
    with month.keeping(engine, PERIOD):
        assert not month.seed(engine, PERIOD, [frame.iloc[1:]])  # row "a" was there before
        assert month.month_rows(engine, PERIOD)["response_id"].tolist() == ["a", "b"]
        swapped = frame.iloc[::-1]
        assert not month.seed(engine, PERIOD, [swapped])  # not in insertion order
        assert month.month_rows(engine, PERIOD)["response_id"].tolist() == ["a", "b"]


def test_outside_a_cycle_run_only_the_asked_columns_are_read(engine: Engine) -> None:
    _seed(engine)
    df = month.month_rows(engine, PERIOD, ["nps", "id", "submitted_at"], clean=True)
    assert list(df.columns) == ["nps", "id", "submitted_at"]
    assert df["nps"].tolist() == [9.0] and str(df["submitted_at"].dtype) == "datetime64[us, UTC]"
    with month.keeping(engine, PERIOD):
        pd.testing.assert_frame_equal(month.month_rows(engine, PERIOD, ["nps", "id", "submitted_at"],
                                                       clean=True), df)


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
    with month.keeping(engine, PERIOD):
        summary = collect_period(settings, engine, PERIOD)
        assert month.seed(engine, PERIOD, summary.inserted())
        kept = month.month_rows(engine, PERIOD)
    assert reads == []
    stored = month.month_rows(engine, PERIOD)
    assert reads == [PERIOD]
    pd.testing.assert_frame_equal(kept, stored)
    assert kept["response_id"].tolist() == ["r1", "r2", "x1", "x2"]
    assert kept["department"].tolist()[0] == "logistics"
    with month.keeping(engine, PERIOD):  # a second collect stores nothing new: read, not seeded
        assert not month.seed(engine, PERIOD, collect_period(settings, engine, PERIOD).inserted())
