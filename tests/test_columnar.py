"""The columnar copy (issue 20): equal to the rows, kept in step by the cycle's writers, and never
read once stale or missing (the relational database is the system of record)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, insert, update
from sqlmodel import Session

import cxloop.tasks.month as month
from cxloop.models import CommentAnalysis, Feedback, ImportRecord, QuarantinedRow
from cxloop.tasks.columnar import Copies

PERIOD = "2026-10"
FB = Feedback.__table__  # type: ignore[attr-defined]


def _seed(engine: Engine, n: int = 5) -> list[int]:
    t = datetime(2026, 10, 3, 6, 5, tzinfo=UTC)
    with Session(engine) as s:
        rows = [Feedback(source="survey", response_id=f"r{k}", period=PERIOD, submitted_at=t,
                         channel=("app", "web")[k % 2], nps=k if k % 3 else None,
                         comment="快递很快" if k % 2 else None, is_complaint=bool(k % 2),
                         quarantined=k == 1, sentiment="positive" if k == 2 else None,
                         sentiment_score=0.9 if k == 2 else None, content_hash=str(k)) for k in range(n)]
        rows.append(Feedback(source="survey", response_id="other", period="2026-09", submitted_at=t,
                             channel="web", content_hash="x"))
        s.add_all(rows)
        s.commit()
        return [int(r.id) for r in rows[:n] if r.id is not None]


def test_a_rebuilt_copy_reads_as_the_database_does(engine: Engine, tmp_path: Path) -> None:
    _seed(engine)
    copies = Copies(tmp_path / "columnar")
    assert not copies.fresh(engine, PERIOD)
    assert copies.rebuild(engine, PERIOD) == 5
    assert copies.fresh(engine, PERIOD)
    whole = month.read_month(engine, PERIOD)
    (copied,) = copies.parts(PERIOD, month.COLUMNS, False, None)
    pd.testing.assert_frame_equal(copied, whole)
    parts = list(copies.parts(PERIOD, ["channel", "nps"], True, 2))
    assert [len(p) for p in parts] == [1, 2, 1]  # rows 0-1 (1 quarantined), 2-3, 4
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True),
                                  month.read_month(engine, PERIOD, ["channel", "nps"], clean=True))
    assert copies.rebuild(engine, "2026-11") == 0 and copies.fresh(engine, "2026-11")
    (empty,) = copies.parts("2026-11", month.COLUMNS, False, None)
    pd.testing.assert_frame_equal(empty, month.read_month(engine, "2026-11"))


def test_rows_having_a_value_are_read_alone_from_the_copy_and_the_database(engine: Engine,
                                                                           tmp_path: Path) -> None:
    """`having`: a stage that skips rows without a comment reads only the others, from the copy
    and from the database alike; a kept month comes whole (its arrays are shared)."""
    ids = _seed(engine)
    commented = [i for k, i in enumerate(ids) if k % 2]
    copies = Copies(tmp_path / "columnar")
    copies.rebuild(engine, PERIOD)
    from_db = month.read_month(engine, PERIOD, ["id", "comment", "nps"], having="comment")
    (from_copy,) = copies.parts(PERIOD, ["id", "comment", "nps"], False, None, "comment")
    assert from_db["id"].tolist() == commented == from_copy["id"].tolist()
    pd.testing.assert_frame_equal(from_copy, from_db)
    whole = month.read_month(engine, PERIOD, ["id", "comment", "nps"])
    pd.testing.assert_frame_equal(from_db, whole[whole["comment"].notna()].reset_index(drop=True))
    kept = month.Month(engine, PERIOD, keep=True)
    assert len(kept.rows(["comment"], having="comment")) == len(ids)
    on_copy = month.Month(engine, PERIOD, copies=copies)
    assert on_copy.rows(["id", "comment"], having="comment")["id"].tolist() == commented


def test_a_rebuilt_copy_holds_the_rows_in_id_order_whatever_order_they_are_read_in(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A range of the copy's rows is a range of the month in id order (validate's partitions list
    failing rows in that order), also when PostgreSQL yields updated rows last: the parts read
    from the database come out of order, and the copy is sorted once."""
    ids = _seed(engine)
    with engine.begin() as conn:  # PostgreSQL writes updated rows anew, after the others
        conn.execute(update(FB).where(FB.c.id.in_(ids[:2])).values(nps=7))
    monkeypatch.setattr(month, "PART_ROWS", 2)
    read = [p["id"].tolist() for p in month._read(engine, PERIOD, ["id"], False, 2)]
    copies = Copies(tmp_path / "columnar")
    assert copies.rebuild(engine, PERIOD) == 5 and copies.fresh(engine, PERIOD)
    assert [copies.part(PERIOD, ["id"], False, s, s + 2)["id"].tolist() for s in (0, 2, 4)] == [
        ids[:2], ids[2:4], ids[4:]]
    (whole,) = copies.parts(PERIOD, month.COLUMNS, False, None)
    pd.testing.assert_frame_equal(whole, month.read_month(engine, PERIOD))
    if engine.dialect.name == "postgresql":
        assert sorted(x for p in read for x in p) == ids and read[0] != ids[:2]  # read out of order
    assert not list(tmp_path.joinpath("columnar").glob(".*"))  # nothing left beside the copy


def test_a_big_month_is_read_from_its_copy_built_once_and_kept_in_step(
        engine: Engine, tmp_path: Path, month_reads: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _seed(engine)
    monkeypatch.setattr(month, "KEEP_ROWS", 1)
    copies = Copies(tmp_path / "columnar")
    run = month.Month(engine, PERIOD, keep=True, copies=copies)
    assert run.rows(["channel"])["channel"].tolist() == ["app", "web", "app", "web", "app"]
    assert copies.fresh(engine, PERIOD)  # built at the first read, from the database
    with engine.begin() as conn:  # the stage writes the database, then tells the month
        conn.execute(update(FB).where(FB.c.id.in_(ids[:1])).values(quarantined=True, sentiment="negative"))
        conn.execute(insert(QuarantinedRow.__table__).values(  # type: ignore[attr-defined]
            period=PERIOD, source="survey", row_key="r0", stage="validate", raw={}, reasons=[],
            created_at=datetime(2026, 11, 1, tzinfo=UTC)))
    run.patch(ids[:1], {"quarantined": True, "sentiment": "negative"})
    assert copies.fresh(engine, PERIOD)  # patched and stamped anew
    got = list(run.parts(["id", "sentiment"], clean=True))
    assert month_reads == []  # never read back from the database
    assert pd.concat(got)["id"].tolist() == ids[2:]
    pd.testing.assert_frame_equal(run.rows(), month.read_month(engine, PERIOD))
    month_reads.clear()
    outside = month.Month(engine, PERIOD, copies=copies)  # e.g. `cxloop comments` on its own
    outside.patch(ids[2:3], {"sentiment": None})
    assert not copies.fresh(engine, PERIOD)  # marked stale: it was not told what changed
    outside.rows()
    assert month_reads == [PERIOD]  # a stale copy is not read outside a run
    run = month.Month(engine, PERIOD, keep=True, copies=copies)
    run.rows(["id"])
    assert copies.fresh(engine, PERIOD)  # a run holds the period: it writes the copy again


@pytest.mark.parametrize("change", ["row", "import", "quarantine", "readmit", "marker", "file", "forget"])
def test_a_change_the_copy_was_not_told_of_makes_it_stale(engine: Engine, tmp_path: Path,
                                                          change: str) -> None:
    _seed(engine)
    copies = Copies(tmp_path / "columnar")
    copies.rebuild(engine, PERIOD)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    qt = QuarantinedRow.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        if change == "row":
            conn.execute(insert(FB).values(source="s", response_id="new", period=PERIOD, content_hash="n",
                                           channel="web", submitted_at=now, quarantined=False))
        elif change == "import":  # a re-import that updated rows in place
            conn.execute(insert(ImportRecord.__table__).values(  # type: ignore[attr-defined]
                source="survey", file="f.csv", content_hash="h", period=PERIOD, started_at=now,
                rows_read=1, loaded=0, updated=1, duplicates=0, rejected=0, out_of_period=0))
        elif change in ("quarantine", "readmit"):
            conn.execute(insert(qt).values(period=PERIOD, source="survey", row_key="r0", stage="validate",
                                           raw={}, reasons=[], created_at=now))
    if change == "readmit":
        copies.rebuild(engine, PERIOD)
        with engine.begin() as conn:
            conn.execute(update(qt).values(readmitted_at=now))
    elif change == "marker":
        with Session(engine) as s:
            s.add(CommentAnalysis(period=PERIOD, fingerprint="f", model="m"))
            s.commit()
    elif change == "file":
        copies.path(PERIOD).unlink()
    elif change == "forget":
        month.Month(engine, PERIOD, copies=copies).forget()
    assert not copies.fresh(engine, PERIOD)
    assert copies.fresh(engine, "2026-09") is False  # never written


def test_cli_rebuild_writes_the_copy(tmp_path: Path, engine: Engine, db_url: str,
                                     capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.cli import cxloop

    _seed(engine)
    config = tmp_path / "cxloop.toml"
    config.write_text('[engine]\ncolumnar_dir = "copies"\n', encoding="utf-8")
    monkeypatch.setenv("CXLOOP_DATABASE_URL", db_url)
    code, out, err = cxloop(capsys, monkeypatch, config, "rebuild", "--period", PERIOD)
    assert code == 0, err
    assert "5 row(s) of 2026-10 written to" in out
    assert Copies(tmp_path / "copies").fresh(engine, PERIOD)
    code, out, err = cxloop(capsys, monkeypatch, config, "rebuild", "--period", "2026-13")
    assert code == 2 and "Traceback" not in err and "2026-13" in err


def test_kpis_counted_on_a_two_worker_dask_cluster_equal_the_local_run(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dask_address: str) -> None:
    """Issue 20: a big month's KPI histograms, one Dask task per partition of its columnar copy on
    a real LocalCluster of two worker processes, give the same KPI rows as counting here."""
    from dataclasses import asdict

    from cxloop.config import settings_from_dict
    from cxloop.tasks.kpis.stage import compute_rows

    _seed(engine, 40)
    monkeypatch.setattr(month, "KEEP_ROWS", 1)
    monkeypatch.setattr(month, "PART_ROWS", 7)  # six partitions
    copies = Copies(tmp_path / "columnar")
    local = settings_from_dict({}, tmp_path)
    here = compute_rows(local, engine, PERIOD,
                        month_rows=month.Month(engine, PERIOD, keep=True, copies=copies))
    remote = settings_from_dict({"engine": {"dask_address": dask_address}}, tmp_path)
    run = month.Month(engine, PERIOD, keep=True, copies=copies)
    assert run.columnar()
    sent: list[int] = []
    import cxloop.tasks.dask_work as dask_work

    kpi_histograms = dask_work.kpi_histograms

    def counted(*args: Any) -> pd.DataFrame:
        sent.append(1)
        return kpi_histograms(*args)

    monkeypatch.setattr(dask_work, "kpi_histograms", counted)
    there = compute_rows(remote, engine, PERIOD, month_rows=run)
    assert sent == [1]  # counted on the cluster
    assert [asdict(r) for r in there] == [asdict(r) for r in here] and here


def test_comments_analysed_on_the_dask_cluster_equal_the_local_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dask_address: str) -> None:
    """Issue 20: with `[engine] dask_address`, many distinct comments are scored and tagged on the
    cluster's workers, with the results of the local analysis, in the same order."""
    import cxloop.tasks.comments as comments
    from cxloop.config import settings_from_dict

    texts = [f"{w}{k}" for k in range(60) for w in ("物流太慢了", "客服很好", "The app keeps crashing ")]
    monkeypatch.setattr(comments, "PARALLEL_TEXTS", 10)
    monkeypatch.setattr(comments, "_in_parallel", lambda *a: None)  # here: one process
    here = comments.analyse_texts(texts, settings_from_dict({}, tmp_path))
    monkeypatch.setattr(comments, "_in_parallel", lambda *a: pytest.fail("not on the cluster"))
    there = comments.analyse_texts(texts, settings_from_dict({"engine": {"dask_address": dask_address}},
                                                             tmp_path))
    assert there == here and len({r.sentiment for r in here}) >= 2
    assert any(r.themes for r in here)


@pytest.mark.parametrize("chunks", [4, None])
def test_collect_writes_the_copy_of_a_big_new_month_without_reading_it_back(
        engine: Engine, tmp_path: Path, month_reads: list[str], monkeypatch: pytest.MonkeyPatch,
        chunks: int | None) -> None:
    """Issue 20: the copy is written by collect. A big file read in chunks (`chunks`) hands the
    rows past `KEEP_ROWS` over on disk (a spill) and the month's copy is made of them; a file read
    whole (a month not kept because a Dask cluster works on it) from the frame collect hands over.
    Neither reads the month back from the database, and the copy equals the stored rows."""
    from tests.test_collect_chunked import collect, write

    monkeypatch.setattr(month, "KEEP_ROWS", 5)
    write(tmp_path / "export.csv", [f"R{k},2026-10-{1 + k % 28:02d} 09:00,线上,{k % 11},评价{k},否"
                                    for k in range(23)])
    summary = collect(tmp_path, engine, chunks)
    assert summary.ok and summary.total("loaded") == 23
    spilled = [i for i in summary.inserted() if not isinstance(i, pd.DataFrame)]
    assert len(spilled) == (1 if chunks else 0)
    monkeypatch.setattr(month, "_read", lambda *a, **k: pytest.fail("read back from the database"))
    copies = Copies(tmp_path / "columnar")
    run = month.Month(engine, PERIOD, keep=True, copies=copies, keep_rows=None if chunks else 0)
    assert run.seed(summary.inserted()) is False  # not kept in memory: in its copy
    assert copies.fresh(engine, PERIOD)
    assert not list((tmp_path / "columnar").glob(".spill-*"))  # the spill is gone once used
    assert run.columnar()
    got = pd.concat(list(run.parts(["id", "response_id", "nps"], rows=10)), ignore_index=True)
    assert month_reads == []
    monkeypatch.undo()
    pd.testing.assert_frame_equal(got, month.read_month(engine, PERIOD, ["id", "response_id", "nps"]))
    (whole,) = copies.parts(PERIOD, month.COLUMNS, False, None)
    pd.testing.assert_frame_equal(whole, month.read_month(engine, PERIOD))


def test_a_spill_nobody_uses_is_removed(tmp_path: Path) -> None:
    """A collect outside a cycle run hands its spill to nobody: the file goes with the object."""
    import gc

    from cxloop.tasks.columnar import Spill

    spill = Spill(tmp_path)
    spill.append(pd.DataFrame({"source": ["s"], "response_id": ["r"]}))
    assert len(spill) == 1 and spill.keys([0]) == [("s", "r")]
    path = spill.path
    assert path.exists()
    del spill
    gc.collect()
    assert not path.exists()


def test_repeated_texts_read_from_a_copy_come_with_their_codes(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy hands repeated text columns over coded (one object per distinct value): each
    frame's codes are those `pd.factorize` gives its column - order of first appearance in that
    frame, -1 for missing, blanks and spaced variants values of their own - and the stages' next
    factorisation of the column is not computed again."""
    from cxloop.tasks import codes

    t = datetime(2026, 10, 3, 6, 5, tzinfo=UTC)
    stages = ["buy", None, "use", " buy", "", "use", None, "buy", "售后", "use"]
    with Session(engine) as s:
        s.add_all([Feedback(source="survey", response_id=f"r{k}", period=PERIOD, submitted_at=t,
                            channel="web", journey_stage=c, department="客服" if k > 3 else None,
                            quarantined=k in (0, 8), content_hash=str(k)) for k, c in enumerate(stages)])
        s.commit()
    copies = Copies(tmp_path / "columnar")
    assert copies.rebuild(engine, PERIOD) == len(stages)
    frames = [copies.part(PERIOD, ["journey_stage", "department", "segment"], clean, 3, 9)
              for clean in (False, True)]
    frames += list(copies.parts(PERIOD, ["journey_stage", "department", "segment"], True, 4))
    frames += list(copies.parts(PERIOD, ["journey_stage", "department", "segment"], False, None))

    def computed(values: pd.Series) -> Any:
        raise AssertionError("factorised again")

    monkeypatch.setattr(codes, "_factorize", computed)
    for frame in frames:
        for column in ("journey_stage", "department"):
            expected = pd.factorize(frame[column].to_numpy(dtype=object), use_na_sentinel=True)
            got = codes.factorize(frame[column])
            assert got[0].tolist() == expected[0].tolist() and list(got[1]) == list(expected[1])
            assert frame[column].dtype == "str"
        assert frame["segment"].isna().all()  # a column without values in the copy: read as text
    pd.testing.assert_frame_equal(frames[-1], month.read_month(engine, PERIOD, ["journey_stage", "department",
                                                                             "segment"]))


def test_a_spill_write_that_fails_is_raised_not_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spill writes on a thread of its own: its failure reaches the import (which then rolls
    back), at the next append or at the latest when the spill is closed for the copy."""
    from cxloop.tasks.columnar import Spill

    spill = Spill(tmp_path)
    spill.append(pd.DataFrame({"source": ["s"], "response_id": ["r"]}))

    def broken(frame: pd.DataFrame) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(spill, "_write", broken)
    spill.append(pd.DataFrame({"source": ["s"], "response_id": ["q"]}))
    with pytest.raises(OSError, match="disk full"):
        spill.flush()  # collect's last call before its import commits
    spill.append(pd.DataFrame({"source": ["s"], "response_id": ["p"]}))
    with pytest.raises(OSError, match="disk full"):
        spill.close()
    spill.discard()
    assert not spill.path.exists()


def test_a_text_column_of_many_values_is_read_as_text_and_a_reader_left_open_blocks_no_write(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A column with more values than `_CODED_VALUES` is read as plain text (rebuilding its
    categories for every part would cost more than it saves), with the same frames; a parts
    reader the caller has not finished holds no file, so the copy can still be patched."""
    import cxloop.tasks.columnar as columnar
    from cxloop.tasks import codes

    ids = _seed(engine, 6)
    copies = Copies(tmp_path / "columnar")
    copies.rebuild(engine, PERIOD)
    coded = list(copies.parts(PERIOD, ["channel", "comment"], False, None))
    monkeypatch.setattr(columnar, "_CODED_VALUES", 1)  # channel has two values
    plain = list(copies.parts(PERIOD, ["channel", "comment"], False, None))
    pd.testing.assert_frame_equal(plain[0], coded[0])
    computed: list[int] = []
    real = codes._factorize

    def counted(values: pd.Series) -> Any:
        computed.append(1)
        return real(values)

    monkeypatch.setattr(codes, "_factorize", counted)
    codes.factorize(coded[0]["channel"])
    assert computed == []  # coded: remembered as read
    codes.factorize(plain[0]["channel"])
    assert computed == [1]
    reading = copies.parts(PERIOD, ["channel"], False, 2)
    first = next(reading)
    assert len(first) == 2
    copies.patch(engine, PERIOD, ids[:1], {"channel": "store"})  # while the reader waits
    assert copies.fresh(engine, PERIOD)
    assert [len(p) for p in reading] == [2, 2]
