"""A big CSV file read in chunks by a worker process (`cxloop.tasks.chunked`) against the same file read
whole: identical stored rows, quarantine entries, import records and counts, on SQLite and
PostgreSQL. The chunk size is a few rows here, so repeats, rejections and quoted line breaks
fall on both sides of chunk boundaries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, Table, select

import cxloop.tasks.collect.big as tc
import cxloop.tasks.collect.chunked as chunked
import cxloop.tasks.workers as workers
from cxloop.config import Settings, settings_from_dict
from cxloop.db import fresh_pg_schema, open_db
from cxloop.models import Feedback, ImportRecord, QuarantinedRow
from cxloop.tasks.collect import CollectSummary, collect_period
from tests.conftest import PG_URL

P = "2026-10"
COLUMNS = {"response_id": "编号", "submitted_at": "提交时间", "channel": "渠道", "nps": "推荐",
           "comment": "评价", "is_complaint": "投诉"}
HEADER = "编号,提交时间,渠道,推荐,评价,投诉"
ROWS = [  # 19 records; chunks of 4 rows split them into five pieces
    "R1,2026-10-01 08:00,线上,9,很好,否",
    "R2,2026-10-02 09:30,电话,x,差评,是",  # unparseable score: quarantined
    "R3,2026-09-30 23:00,门店,7,,",  # another month
    'R4,2026-10-03 10:00,线上,3,"第一行\n第二行, 有逗号",是',  # a quoted line break
    "R5,2026-10-04 11:00,APP,10,,",
    "R1,2026-10-05 12:00,线上,6,改了主意,否",  # R1 again, in a later chunk: this copy wins
    "R6,,线上,8,,",  # undated: rejected
    "R7,2026-10-06 13:00,线上,,,",  # neither score nor comment
    "R5,2026-10-04 11:00,APP,10,,",  # R5 again, the same content
    "R2,2026-10-07 14:00,电话,4,好了,否",  # R2 fixed further down
    "R8,2026-11-01 00:30,线上,5,,",  # next month (Asia/Shanghai)
    ",2026-10-08 15:00,线上,5,,",  # no id: keyed by file and row
    "R9,2026-10-09 16:00,门店,2,慢,是",
    "R10,2026-10-10 17:00,线上,9,,",
    "R11,2026-10-11 18:00,电话,8,,",
    "R9,2026-10-09 16:00,门店,1,很慢,是",  # R9 changed in a later chunk
    "R12,10/12/2026 7:05 PM,线上,0,,",
    "R13,2026年10月13日,线上,6,,",
    "R14,2026-10-14 08:00,线上,bad,,",
]
VALUES = {"channel": {"线上": "web", "电话": "hotline", "门店": "store", "APP": "app"}}


@pytest.fixture
def twin(db_url: str, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """Two empty databases of the same kind: one collects in chunks, the other whole."""
    with ExitStack() as stack:
        if db_url.startswith("sqlite"):
            other = f"sqlite:///{tmp_path / 'whole.db'}"
        else:
            other = stack.enter_context(fresh_pg_schema(PG_URL))
        engines = open_db(db_url), open_db(other)
        yield engines
        for e in engines:
            e.dispose()


def settings_for(tmp_path: Path, **source: Any) -> Settings:
    return settings_from_dict({
        "project": {"timezone": "Asia/Shanghai"},
        "sources": [{"name": "web", "kind": "csv", "path": "export.csv", "columns": COLUMNS,
                     "values": VALUES, **source}],
    }, tmp_path, env={})


def write(path: Path, rows: list[str], encoding: str = "utf-8", sep: str = ",", bom: bool = False,
          newline: str = "\n") -> None:
    text = newline.join([HEADER.replace(",", sep), *(r.replace(",", sep) if sep != "," else r
                                                      for r in rows)]) + newline
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding))


PIECES: list[int] = []  # the rows of each chunk the last chunked collect stored


def collect(tmp_path: Path, engine: Engine, chunks: int | None, **source: Any) -> CollectSummary:
    """Collect P with the file read in chunks of `chunks` rows, or whole (None)."""
    big, rows, add = chunked.BIG_FILE_BYTES, chunked.CHUNK_ROWS, tc._ChunkedImport.add
    chunked.BIG_FILE_BYTES = 0 if chunks else 1 << 40
    chunked.CHUNK_ROWS = chunks or rows
    if chunks:
        PIECES.clear()

    def counted(self: tc._ChunkedImport, piece: chunked.Piece) -> None:
        PIECES.append(piece.rows_read)
        add(self, piece)

    tc._ChunkedImport.add = counted  # type: ignore[method-assign]
    try:
        return collect_period(settings_for(tmp_path, **source), engine, P)
    finally:
        chunked.BIG_FILE_BYTES, chunked.CHUNK_ROWS = big, rows
        tc._ChunkedImport.add = add  # type: ignore[method-assign]


def table(engine: Engine, t: Any, key: str, leave: tuple[str, ...]) -> list[dict[str, Any]]:
    tab: Table = t.__table__
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(tab))]
    rows.sort(key=lambda r: (str(r[key]), r["id"]))
    return [{k: v for k, v in r.items() if k not in leave} for r in rows]


def stored(engine: Engine) -> dict[str, Any]:
    """What a collect leaves, without clock times and ids (two runs differ in those only: on
    PostgreSQL a rolled-back attempt uses up sequence numbers)."""
    return {
        "feedback": table(engine, Feedback, "response_id", ("id", "import_id", "loaded_at", "updated_at")),
        "quarantine": table(engine, QuarantinedRow, "row_key", ("id", "created_at", "readmitted_at")),
        "readmitted": sorted(str(r["row_key"]) for r in table(engine, QuarantinedRow, "row_key", ())
                             if r["readmitted_at"] is not None),
        "imports": [{k: v for k, v in r.items() if k != "id"}
                    for r in table(engine, ImportRecord, "id", ("started_at", "collect_started"))],
    }


def summary(s: CollectSummary) -> list[dict[str, Any]]:
    return [{**i.row(), "encoding": i.encoding} for i in s.imports]


def same_both_ways(tmp_path: Path, twin: tuple[Engine, Engine], chunks: int = 4, **source: Any
                   ) -> tuple[CollectSummary, CollectSummary]:
    a = collect(tmp_path, twin[0], chunks, **source)
    b = collect(tmp_path, twin[1], None, **source)
    assert summary(a) == summary(b)
    assert stored(twin[0]) == stored(twin[1])
    return a, b


# ----------------------------------------------------------------------------------- differential
@pytest.mark.parametrize("encoding, bom, sep, newline", [
    ("utf-8", False, ",", "\n"),
    ("utf-8", True, ";", "\r\n"),
    ("gb18030", False, ",", "\n"),
    ("gb18030", False, "\t", "\r\n"),
])
def test_chunks_store_what_the_whole_file_stores(twin: tuple[Engine, Engine], tmp_path: Path,
                                                 encoding: str, bom: bool, sep: str, newline: str) -> None:
    write(tmp_path / "export.csv", ROWS, encoding, sep, bom, newline)
    a, _ = same_both_ways(tmp_path, twin)
    assert PIECES == [4, 4, 4, 4, 3]
    imp = a.imports[0]
    assert (imp.rows_read, imp.loaded, imp.duplicates, imp.out_of_period) == (19, 9, 3, 2)
    assert imp.encoding == ("utf-8-sig" if bom else encoding)
    # R1 and R9 were inserted from an earlier chunk and rewritten: the month is read back.
    assert imp.inserted is None
    rows = {f["response_id"]: f for f in stored(twin[0])["feedback"]}
    assert rows["R1"]["nps"] == 6 and rows["R9"]["nps"] == 1
    assert rows["R4"]["comment"].startswith("第一行\n第二行")
    lines = {q["row_key"]: q["line"] for q in stored(twin[0])["quarantine"]}
    assert lines["R14"] == 20 and lines["R6"] == 8  # spreadsheet rows, quoted line breaks aside
    # Unchanged: recorded without parsing, in both.
    again, _ = same_both_ways(tmp_path, twin)
    assert again.imports[0].rows_read == 19 and again.imports[0].loaded == 0


def test_inserted_frame_is_the_whole_files(twin: tuple[Engine, Engine], tmp_path: Path) -> None:
    """Without repeats across chunks, the rows handed to `month.seed` are the whole file's, each
    way in the order the database numbered them: a chunk's rows are inserted in key order (its
    unique index is then written page after page), the whole file's in file order."""
    rows = [r for k, r in enumerate(ROWS) if k not in (5, 8, 15)]  # the later copies of R1, R5, R9
    write(tmp_path / "export.csv", rows)
    a, b = same_both_ways(tmp_path, twin, chunks=3)
    assert PIECES == [3] * 5 + [1]
    fa, fb = a.imports[0].inserted, b.imports[0].inserted
    assert isinstance(fa, pd.DataFrame) and isinstance(fb, pd.DataFrame)
    pd.testing.assert_frame_equal(fa.sort_values("response_id").reset_index(drop=True),
                                  fb.sort_values("response_id").reset_index(drop=True))
    for engine, frame in zip(twin, (fa, fb), strict=True):
        with engine.connect() as conn:
            t = Feedback.__table__  # type: ignore[attr-defined]
            numbered = conn.execute(select(t.c.response_id).order_by(t.c.id)).scalars().all()
        assert frame["response_id"].tolist() == numbered
    assert fa["response_id"].tolist() != fb["response_id"].tolist()  # "R10" before "R9" in its chunk


SAID = [f"R{k},2026-10-{1 + k % 28:02d} 09:00,线上,{k % 11},{c},否" for k, c in enumerate(
    ["送货很快，包装完好", "送货很快，包装完好", "Great service", "  ", "Great service", "慢",
     "送货很快，包装完好", "", "  ", "客服态度很差", "Great service", "客服态度很差", "只说一次"])]
SAID.append("R0,2026-10-01 09:00,线上,3,改主意了，很失望,否")  # R0 again, in the last chunk: it wins


def feedback_rows(engine: Engine) -> dict[str, tuple[Any, ...]]:
    with engine.connect() as conn:
        return {r.response_id: (r.comment, r.sentiment, r.sentiment_score, r.themes)
                for r in conn.execute(select(Feedback.__table__))}  # type: ignore[attr-defined]


def test_repeated_comments_are_analysed_as_they_are_inserted(twin: tuple[Engine, Engine], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A comment repeated in a chunk (or analysed for an earlier one) gets its analysis with the
    row; the comments stage then analyses the rest, and both ways end with the same rows."""
    from cxloop.tasks.comments import MARK, InsertAnalysis, analyse_comments

    monkeypatch.setattr(InsertAnalysis, "REPEATS", 2)  # in chunks of four rows

    write(tmp_path / "export.csv", SAID)
    same = collect(tmp_path, twin[0], 4), collect(tmp_path, twin[1], None)
    assert summary(same[0]) == summary(same[1])
    rows = feedback_rows(twin[0])
    analysed = {k for k, (_, sentiment, _, _) in rows.items() if sentiment is not None}
    # Chunks R0-R3, R4-R7, R8-R11, R12-R0: a repeat in its chunk (R0, R1; R9, R11), or a comment
    # analysed for an earlier chunk (R6); "Great service" is never twice in one chunk. R0's later
    # copy rewrote it.
    assert analysed == {"R1", "R6", "R9", "R11"}
    assert all(r[1] is None for r in feedback_rows(twin[1]).values())  # the whole file: none
    settings = settings_for(tmp_path)
    assert rows["R0"] == ("改主意了，很失望", None, None, None)  # rewritten: its analysis cleared
    stage = [{**analyse_comments(settings, e, P).counts(), "seconds": 0} for e in twin]
    assert stage[0] == stage[1]
    assert feedback_rows(twin[0]) == feedback_rows(twin[1])
    assert rows["R1"] == feedback_rows(twin[1])["R1"]  # what collect wrote, left as it was
    for e in twin:
        with e.connect() as conn:
            assert conn.execute(select(MARK.c.fingerprint).where(MARK.c.period == P)).scalar_one()


def _trained(tmp_path: Path) -> Settings:
    """Settings whose sentiment model is trained on the demo's labelled set (analysed in collect)."""
    from cxloop.tasks.demo import write_training_set
    from cxloop.tasks.sentiment import read_labelled, save_model, train

    write_training_set(tmp_path / "labelled.csv")
    settings = settings_for(tmp_path)
    save_model(train(*read_labelled(tmp_path / "labelled.csv"), source="test").model,
               settings.resolve(settings.comments.model_path))
    return settings


def _collected_and_analysed(tmp_path: Path, twin: tuple[Engine, Engine], settings: Settings
                            ) -> tuple[dict[str, Any], set[str]]:
    """SAID collected in chunks (twin[0]) and whole (twin[1]): collect analysed every comment but
    the rewritten one, and after the stage both hold the same rows. -> the chunked rows as collect
    left them, and the ids it analysed."""
    from cxloop.tasks.comments import analyse_comments

    write(tmp_path / "export.csv", SAID)
    same = collect(tmp_path, twin[0], 4), collect(tmp_path, twin[1], None)
    assert summary(same[0]) == summary(same[1])
    rows = feedback_rows(twin[0])
    analysed = {k for k, (_, sentiment, _, _) in rows.items() if sentiment is not None}
    commented = {k for k, (comment, _, _, _) in rows.items() if comment and comment.strip()}
    assert analysed == commented - {"R0"}  # R0's later copy rewrote it: its analysis cleared
    stage = [analyse_comments(settings, e, P) for e in twin]
    assert (stage[0].analysed, stage[1].analysed) == (len(commented), len(commented))
    assert feedback_rows(twin[0]) == feedback_rows(twin[1])
    return rows, analysed


def test_with_a_trained_model_the_reader_analyses_every_comment(twin: tuple[Engine, Engine], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """With a trained model the chunks' reading process analyses each chunk's comments, written
    with its rows (with 2 cores every chunk's, as here; here it does all of them, as if the main
    process never waited). The stage then has only the rewritten row left, and both ways end with
    the same rows as the whole file analysed by the stage."""
    settings = _trained(tmp_path)
    monkeypatch.setattr(chunked.workers, "cores", lambda: 2)  # the rule's machine (2 cores)
    monkeypatch.setattr(chunked, "MAIN_WAITED", 1e9)  # the main process never analyses
    rows, analysed = _collected_and_analysed(tmp_path, twin, settings)
    assert {k: v for k, v in feedback_rows(twin[0]).items() if k in analysed} == {
        k: v for k, v in rows.items() if k in analysed}  # what collect wrote, left as it was


def test_a_waiting_main_process_analyses_the_chunks_itself(twin: tuple[Engine, Engine], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """When the main process waited for chunks, the reader leaves their analysis to it (here: every
    chunk, as if it always waited). What it writes equals the stage's analysis of the whole file;
    and a chunk whose analysis fails there is left to the stage, the load going on."""
    from cxloop.tasks.comments import InsertAnalysis, analyse_comments

    settings = _trained(tmp_path)
    monkeypatch.setattr(chunked.workers, "cores", lambda: 2)  # every chunk analysed in collect
    monkeypatch.setattr(chunked, "MAIN_WAITED", -1.0)  # read by the main process, passed to the reader
    analysed_here: list[bool] = []
    insert = tc._ChunkedImport._insert

    def watched(self: tc._ChunkedImport, records: Any, times: Any, new: list[int], analysed: Any,
                every: bool = False) -> None:
        analysed_here.append(every and analysed is None)
        insert(self, records, times, new, analysed, every)

    monkeypatch.setattr(tc._ChunkedImport, "_insert", watched)
    _collected_and_analysed(tmp_path, twin, settings)
    assert len(analysed_here) > 1 and all(analysed_here[:len(PIECES)])

    def broken(self: InsertAnalysis, records: Any, every: bool = False) -> None:
        raise RuntimeError("model file gone")

    monkeypatch.setattr(InsertAnalysis, "columns", broken)
    write(tmp_path / "export.csv", [r.replace("R", "S", 1) for r in SAID])
    done = collect(tmp_path, twin[0], 4)
    assert not done.imports[0].error and done.imports[0].loaded
    assert "left to the comments stage" in caplog.text

    def new_rows() -> dict[str, Any]:
        return {k: v for k, v in feedback_rows(twin[0]).items() if k.startswith("S")}

    commented = {k for k, (comment, _, _, _) in new_rows().items() if comment and comment.strip()}
    assert commented and not any(v[1] for v in new_rows().values())  # no analysis written
    monkeypatch.undo()
    analyse_comments(settings, twin[0], P)
    assert {k for k, v in new_rows().items() if v[1]} == commented  # the stage analysed them


def test_a_period_analysed_by_another_model_gets_no_analysis_from_collect(
        twin: tuple[Engine, Engine], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage will analyse such a period again, all of it: collect leaves its marker alone."""
    from cxloop.tasks.comments import InsertAnalysis, _marker, _set_marker

    monkeypatch.setattr(InsertAnalysis, "REPEATS", 2)

    write(tmp_path / "export.csv", SAID)
    with twin[0].begin() as conn:
        _set_marker(conn, P, "another model", "trained")
    collect(tmp_path, twin[0], 4)
    assert all(r[1] is None for r in feedback_rows(twin[0]).values())
    with twin[0].connect() as conn:
        assert _marker(conn, P) == "another model"


def test_the_first_chunk_is_small(twin: tuple[Engine, Engine], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The main process has nothing to do until the first chunk arrives; then chunks grow by a
    quarter (at least a row) up to the full size."""
    rows = [r for k, r in enumerate(ROWS) if k not in (5, 8, 15)]
    write(tmp_path / "export.csv", rows)
    monkeypatch.setattr(chunked, "FIRST_CHUNK_ROWS", 2)
    same_both_ways(tmp_path, twin, chunks=4)
    assert PIECES == [2, 3, 4, 4, 3]


def test_a_month_too_big_to_keep_is_not_handed_over(twin: tuple[Engine, Engine], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Past `month.KEEP_ROWS` inserted rows the chunks stop holding them (memory stays bounded):
    they are handed over on disk instead, for the month's columnar copy (issue 20)."""
    from cxloop.tasks.columnar import Spill

    rows = [r for k, r in enumerate(ROWS) if k not in (5, 8, 15)]
    write(tmp_path / "export.csv", rows)
    monkeypatch.setattr(tc.month, "KEEP_ROWS", 4)
    a, b = same_both_ways(tmp_path, twin, chunks=3)
    spill = a.imports[0].inserted
    assert a.imports[0].loaded > 4 and isinstance(spill, Spill)  # chunked
    assert len(spill) == a.imports[0].loaded and spill.keys([0]) == [("web", "R1")]
    assert b.imports[0].inserted is not None  # whole file: `month.seed` refuses it itself


def test_recollect_updates_readmits_and_repeats_across_chunks(twin: tuple[Engine, Engine],
                                                              tmp_path: Path) -> None:
    write(tmp_path / "export.csv", ROWS)
    same_both_ways(tmp_path, twin)
    changed = [
        "R14,2026-10-14 08:00,线上,7,,",  # fixed: loaded, its quarantine entry readmitted
        "R10,2026-10-10 17:00,线上,9,,",  # unchanged
        "R11,2026-10-11 18:00,电话,3,,",  # changed
        "R5,2026-10-04 11:00,APP,10,,",
        "R10,2026-10-10 17:00,线上,2,,",  # unchanged first, changed by a later copy
        "R11,2026-10-11 18:00,电话,4,,",  # changed twice
        "R20,2026-10-20 08:00,线上,5,,",
        "R12,10/12/2026 7:05 PM,线上,0,,",
        "R20,2026-10-20 08:00,线上,6,,",  # a new row rewritten by a later copy
    ]
    write(tmp_path / "export.csv", changed)
    a, _ = same_both_ways(tmp_path, twin, chunks=2)
    assert PIECES == [2, 2, 2, 2, 1]
    imp = a.imports[0]
    assert (imp.loaded, imp.updated, imp.duplicates) == (2, 2, 5)
    assert stored(twin[0])["readmitted"] == ["R14"]


def test_a_later_copy_that_restores_a_stored_row_reads_the_file_whole(twin: tuple[Engine, Engine],
                                                                     tmp_path: Path) -> None:
    write(tmp_path / "export.csv", ROWS)
    same_both_ways(tmp_path, twin)
    write(tmp_path / "export.csv", ["R10,2026-10-10 17:00,线上,1,,", "R13,2026年10月13日,线上,6,,",
                                    "R10,2026-10-10 17:00,线上,9,,"])
    a, _ = same_both_ways(tmp_path, twin, chunks=2)
    assert (a.imports[0].updated, a.imports[0].duplicates) == (0, 3)


@pytest.mark.parametrize("rows, encoding, source", [
    (ROWS[:6] + ['R30,2026-10-02 09:30,"线上,9'], "utf-8", {}),  # an unclosed quote at the end
    (ROWS[:9] + ["R31,2026-10-02 09:30,线上,9,,,extra,fields"], "utf-8", {}),  # too many fields
    (ROWS, "gb18030", {"encoding": "utf-8"}),  # a declared encoding that does not fit
    (ROWS, "utf-8", {"columns": {**COLUMNS, "region": "区域"}}),  # a mapped column missing
    (ROWS, "utf-16", {}),  # found by a guess: read whole
])
def test_failures_are_the_whole_files(twin: tuple[Engine, Engine], tmp_path: Path, rows: list[str],
                                      encoding: str, source: dict[str, Any]) -> None:
    write(tmp_path / "export.csv", rows, encoding)
    a, _ = same_both_ways(tmp_path, twin, **source)
    assert len(a.errors) == (0 if encoding == "utf-16" else 1)


def test_a_bad_byte_late_in_the_file(twin: tuple[Engine, Engine], tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    write(path, ROWS, "gb18030")
    path.write_bytes(path.read_bytes() + b"R40,2026-10-01 08:00,\xff\xfe,9,,\n")
    a, _ = same_both_ways(tmp_path, twin, encoding="gb18030")
    assert "line 22: not valid gb18030 text" in a.errors[0]


def test_seen_ids_find_what_was_added() -> None:
    from cxloop.tasks.collect.big import _id_hashes, _SeenIds

    seen = _SeenIds()
    added: list[str] = []
    for k in range(7):
        keys = [f"R{k}-{i}" for i in range(k * 3 + 1)]
        before = seen.may_hold(_id_hashes(keys + added[:2]))
        assert not before[:len(keys)].any() and before[len(keys):].all()
        seen.add(_id_hashes(keys))
        added += keys
    assert seen.may_hold(_id_hashes(added)).all()
    assert len(seen._levels) <= 3
    # Past a quarter of its filter's buckets the filter grows, and keeps every hash added before.
    buckets = len(seen._flags)
    more = [f"S{i}" for i in range(buckets // 2)]
    seen.add(_id_hashes(more[:buckets // 4]))
    seen.add(_id_hashes(more[buckets // 4:]))
    assert len(seen._flags) > buckets and seen._flags.mean() <= 0.25
    assert seen.may_hold(_id_hashes(added + more)).all()
    assert not seen.may_hold(_id_hashes([f"T{i}" for i in range(buckets)])).any()


def test_no_worker_outlives_a_failed_store(twin: tuple[Engine, Engine], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """An error in the main process (here a stand-in for a database error) ends the worker and
    removes its files; the import is rolled back and the error propagates, as for a whole file."""
    import multiprocessing as mp
    import tempfile

    write(tmp_path / "export.csv", ROWS)
    folders: list[str] = []
    mkdtemp = tempfile.mkdtemp

    def recorded(**kwargs: Any) -> str:
        folders.append(mkdtemp(**kwargs))
        return folders[-1]

    monkeypatch.setattr(chunked.tempfile, "mkdtemp", recorded)
    calls: list[int] = []

    def failing(self: tc._ChunkedImport, piece: chunked.Piece) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")

    monkeypatch.setattr(tc._ChunkedImport, "add", failing)
    monkeypatch.setattr(chunked, "BIG_FILE_BYTES", 0)
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 2)
    with pytest.raises(RuntimeError, match="disk full"):
        collect_period(settings_for(tmp_path), twin[0], P)
    assert not mp.active_children()
    ours = [f for f in folders if "cxloop-chunks-" in f]
    assert len(ours) == 1 and not Path(ours[0]).exists()
    assert stored(twin[0]) == {"feedback": [], "quarantine": [], "readmitted": [], "imports": []}


def test_the_fork_server_preloads_the_project_found_only_through_sys_path(tmp_path: Path) -> None:
    """Without site (`-S`: no editable install), the project is importable only through the
    parent's `sys.path`, which Python 3.11's fork server does not take: the worker would import
    it itself. A worker reports whether `cxloop.tasks.collect` was loaded before its target ran."""
    import subprocess
    import sys
    import sysconfig

    root = Path(workers.__file__).resolve().parent.parent
    (tmp_path / "path").mkdir()
    (tmp_path / "path" / "cxloop").symlink_to(root)  # the checkout, under the package's name
    seen = tmp_path / "seen.txt"
    probe = f"import sys; open({str(seen)!r}, 'w').write(str('cxloop.tasks.collect' in sys.modules))"
    script = (f"import sys; sys.path.insert(0, {str(tmp_path / 'path')!r})\n"
              "from cxloop.tasks import workers\n"
              "workers.start_server()\n"
              f"p = workers.context().Process(target=exec, args=({probe!r},))\n"
              "p.start(); p.join(); sys.exit(p.exitcode)\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    done = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert seen.read_text() == "True"


def test_the_fork_server_can_start_early() -> None:
    workers.start_server()
    workers.start_server()
