"""Collection on a real database (SQLite and PostgreSQL): readers, mapping, upsert, errors."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, select
from sqlmodel import col

from cxloop.config import Settings, settings_from_dict
from cxloop.db import session_scope
from cxloop.models import Feedback, ImportRecord, QuarantinedRow
from cxloop.tasks.collect import CollectSummary, collect_period, read_file, source_files
from cxloop.tasks.mapping import Prepared, prepare
from cxloop.tasks.readers import SourceError, detect_encoding

P = "2026-10"
WEB_COLUMNS = {
    "response_id": "编号",
    "submitted_at": "提交时间",
    "channel": "渠道",
    "csat": "满意度",
    "comment": "评价",
}


def make_settings(tmp_path: Path, sources: list[dict[str, Any]], **extra: Any) -> Settings:
    return settings_from_dict({"sources": sources, **extra}, tmp_path, env={})


def write_csv(path: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def prep(settings: Settings, name: str | None = None, period: str = P) -> Prepared:
    """Read and map a source's single file without a database: for pure mapping behaviour."""
    source = settings.sources[0] if name is None else next(x for x in settings.sources if x.name == name)
    [path] = source_files(settings, source)
    return prepare(settings, source, read_file(settings, source, path, path.name), period, path.name)


def record(p: Prepared, rid: str) -> dict[str, Any]:
    rows = p.records[p.records["response_id"] == rid].to_dict("records")
    assert len(rows) == 1, (rid, p.records)
    return {k: (None if v is None or v is pd.NA or v is pd.NaT else v) for k, v in rows[0].items()}


def feedback(engine: Engine) -> dict[str, Feedback]:
    with session_scope(engine) as s:
        return {f.response_id: f for f in s.execute(select(Feedback)).scalars()}


def quarantine(engine: Engine) -> list[QuarantinedRow]:
    with session_scope(engine) as s:
        return list(s.execute(select(QuarantinedRow).order_by(col(QuarantinedRow.id))).scalars())


def check_sums(summary: CollectSummary) -> None:
    """read = loaded + updated + duplicates + rejected + out_of_period, per file."""
    for i in summary.imports:
        assert i.rows_read == i.loaded + i.updated + i.duplicates + i.rejected + i.out_of_period, i


def one(summary: CollectSummary) -> Any:
    check_sums(summary)
    assert len(summary.imports) == 1, summary.imports
    return summary.imports[0]


# ------------------------------------------------------------------------------------ encodings
def test_detect_encoding_prefers_exact_decodes() -> None:
    text = "编号,评价\n1,物流太慢了\n"
    assert detect_encoding(text.encode("utf-8")) == "utf-8"
    assert detect_encoding(text.encode("utf-8-sig")) == "utf-8-sig"
    assert detect_encoding(text.encode("gbk")) == "gb18030"
    assert detect_encoding("a,b\n1,2\n".encode("ascii")) == "utf-8"


def _web_source(tmp_path: Path, encoding: str) -> Settings:
    write_csv(
        tmp_path / "web.csv",
        [
            "编号,提交时间,渠道,满意度,评价",
            "r1,2026/10/3 14:05,线上,非常满意,客服态度很好",
            "r2,2026-10-04,电话, 2 ,等了很久",
        ],
        encoding,
    )
    return make_settings(
        tmp_path,
        [
            {
                "name": "web",
                "kind": "csv",
                "path": "web.csv",
                "columns": WEB_COLUMNS,
                "values": {"channel": {"线上": "web", "电话": "hotline"}, "csat": {"非常满意": 5, "满意": 4}},
            }
        ],
    )


@pytest.mark.parametrize("encoding", ["gbk", "utf-8-sig", "utf-8", "gb18030"])
def test_csv_encodings_and_value_mapping(tmp_path: Path, encoding: str) -> None:
    p = prep(_web_source(tmp_path, encoding))
    r1, r2 = record(p, "r1"), record(p, "r2")
    assert (r1["channel"], r1["csat"], r1["comment"]) == ("web", 5, "客服态度很好")
    assert (r2["channel"], r2["csat"], r2["comment"]) == ("hotline", 2, "等了很久")
    assert p.rejected == [] and p.rows_read == 2


def test_gbk_export_is_stored_with_aware_utc_times(engine: Engine, tmp_path: Path) -> None:
    imp = one(collect_period(_web_source(tmp_path, "gbk"), engine, P))
    assert (imp.loaded, imp.rejected, imp.error) == (2, 0, None)
    fb = feedback(engine)
    assert fb["r1"].channel == "web" and fb["r1"].csat == 5 and fb["r1"].comment == "客服态度很好"
    # 14:05 in Shanghai is 06:05 UTC; stored aware.
    assert fb["r1"].submitted_at == datetime(2026, 10, 3, 6, 5, tzinfo=UTC)
    assert fb["r1"].period == P and fb["r1"].source == "web" and fb["r1"].import_id == imp.import_id


def test_wrong_explicit_encoding_names_file_and_line(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "web.csv", ["id,time,channel,nps", "1,2026-10-03,web,5", "2,2026-10-03,网站,5"], "gbk"
    )
    settings = make_settings(
        tmp_path,
        [{"name": "web", "kind": "csv", "path": "web.csv", "encoding": "utf-8", "columns": WEB_COLUMNS}],
    )
    with pytest.raises(SourceError, match=r"web.csv: line 3: not valid utf-8"):
        prep(settings)


# ------------------------------------------------------------------------------- source kinds
def test_excel_source_with_date_cells_and_numeric_ids(engine: Engine, tmp_path: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "ignored"
    data = wb.create_sheet("survey")
    data.append(["ID", "Date", "CES", "Comment"])
    data.append([1001, datetime(2026, 10, 1, 0, 30), 6, "店员很热情"])
    data.append([1002, "2026/10/15 9:00", 7, None])
    data.append([1003, 46294.5, 2, "排队太久"])  # an unformatted date cell: Excel serial 2026-09-30 12:00
    wb.save(tmp_path / "store.xlsx")
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "store",
                "kind": "excel",
                "path": "store.xlsx",
                "sheet": "survey",
                "channel": "store",
                "columns": {"response_id": "ID", "submitted_at": "Date", "ces": "CES", "comment": "Comment"},
            }
        ],
    )
    imp = one(collect_period(settings, engine, P))
    assert (imp.loaded, imp.out_of_period, imp.error) == (2, 1, None)
    fb = feedback(engine)
    assert set(fb) == {"1001", "1002"}
    assert fb["1001"].submitted_at == datetime(2026, 9, 30, 16, 30, tzinfo=UTC)  # 00:30 Shanghai
    assert fb["1001"].channel == "store" and fb["1001"].ces == 6
    assert fb["1002"].comment is None and fb["1002"].ces == 7


def test_json_array_and_nested_fields(engine: Engine, tmp_path: Path) -> None:
    doc = {
        "responses": [
            {
                "id": "a1",
                "created": "2026-10-02T10:00:00+08:00",
                "channel": "app",
                "scores": {"nps": 9},
                "text": "好用",
            },
            {
                "id": "a2",
                "created": "2026-10-02T10:00:00Z",
                "channel": "app",
                "scores": {"nps": 3},
                "text": None,
            },
        ]
    }
    (tmp_path / "app.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "app",
                "kind": "json",
                "path": "app.json",
                "columns": {
                    "response_id": "id",
                    "submitted_at": "created",
                    "nps": "scores.nps",
                    "comment": "text",
                },
            }
        ],
    )
    imp = one(collect_period(settings, engine, P))
    assert imp.loaded == 2
    fb = feedback(engine)
    assert fb["a1"].submitted_at == datetime(2026, 10, 2, 2, 0, tzinfo=UTC)  # offset kept
    assert fb["a2"].submitted_at == datetime(2026, 10, 2, 10, 0, tzinfo=UTC)
    assert (fb["a1"].nps, fb["a1"].channel, fb["a2"].comment) == (9, "app", None)


def test_jsonl_source_and_bad_line(engine: Engine, tmp_path: Path) -> None:
    good = [
        {"response_id": f"j{i}", "submitted_at": "2026-10-05 12:00", "channel": "wechat", "nps": i}
        for i in range(3)
    ]
    path = tmp_path / "feed" / "a.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(json.dumps(r) for r in good) + "\n\n", encoding="utf-8")
    (tmp_path / "feed" / "b.jsonl").write_text(json.dumps(good[0]) + "\n{not json\n", encoding="utf-8")
    settings = make_settings(tmp_path, [{"name": "wx", "kind": "jsonl", "path": "feed/*.jsonl"}])
    summary = collect_period(settings, engine, P)
    check_sums(summary)
    a, b = summary.imports
    assert (a.file, a.loaded, a.error) == ("feed/a.jsonl", 3, None)  # canonical keys need no mapping
    assert b.error is not None and "feed/b.jsonl" in b.error and "line 2" in b.error
    assert summary.errors and not summary.ok
    assert sorted(feedback(engine)) == ["j0", "j1", "j2"]


def test_sql_source_relative_sqlite_url(engine: Engine, tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "crm.db") as conn:
        conn.execute("create table answers (ticket text, created text, score integer, remark text)")
        conn.executemany(
            "insert into answers values (?, ?, ?, ?)",
            [
                ("t1", "2026-10-09 08:00:00", 4, "ok"),
                ("t2", "2026-11-01 08:00:00", 1, "bad"),
                ("t3", "2026-10-10 08:00:00", None, None),
            ],
        )
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "crm",
                "kind": "sql",
                "url": "sqlite:///crm.db",
                "channel": "ticket",
                "query": "select ticket, created, score, remark from answers order by ticket",
                "columns": {
                    "response_id": "ticket",
                    "submitted_at": "created",
                    "csat": "score",
                    "comment": "remark",
                },
            }
        ],
    )
    imp = one(collect_period(settings, engine, P))
    assert (imp.loaded, imp.out_of_period, imp.rejected) == (1, 1, 1)
    assert imp.file.startswith("sql:sqlite:///")
    assert feedback(engine)["t1"].csat == 4
    [q] = quarantine(engine)
    assert q.row_key == "t3" and q.reasons[0]["check"] == "not_feedback"


def test_sql_source_bad_query_is_an_error(engine: Engine, tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "crm.db").close()
    settings = make_settings(
        tmp_path,
        [{"name": "crm", "kind": "sql", "url": "sqlite:///crm.db", "query": "select * from nowhere"}],
    )
    imp = one(collect_period(settings, engine, P))
    assert imp.error and "query failed" in imp.error and "nowhere" in imp.error


# ------------------------------------------------------------------- constants and departments
def test_constants_fill_whole_source_and_blank_cells(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "h.csv",
        ["id,time,stage,score,region", "h1,2026-10-03 10:00,,5,", "h2,2026-10-03 11:00,配送,3,north"],
    )
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "hotline",
                "kind": "csv",
                "path": "h.csv",
                "channel": "hotline",
                "journey_stage": "after_sales",
                "constants": {"region": "east"},
                "columns": {
                    "response_id": "id",
                    "submitted_at": "time",
                    "journey_stage": "stage",
                    "nps": "score",
                    "region": "region",
                },
                "values": {"journey_stage": {"配送": "delivery"}},
            }
        ],
    )
    p = prep(settings)
    h1, h2 = record(p, "h1"), record(p, "h2")
    assert (h1["channel"], h1["journey_stage"], h1["region"]) == ("hotline", "after_sales", "east")
    assert (h2["channel"], h2["journey_stage"], h2["region"]) == ("hotline", "delivery", "north")


def test_department_from_owns_stage_then_touchpoint_then_channel(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "f.csv",
        [
            "response_id,submitted_at,channel,journey_stage,touchpoint,department,nps",
            "d1,2026-10-03,web,delivery,checkout,,5",  # stage wins over touchpoint and channel
            "d2,2026-10-03,web,awareness,checkout,,5",  # stage unowned -> touchpoint
            "d3,2026-10-03,hotline,,,,5",  # only the channel is owned
            "d4,2026-10-03,web,delivery,,finance,5",  # an explicit department is kept
            "d5,2026-10-03,email,,,,5",  # nobody owns it
        ],
    )
    departments = {
        "logistics": {"name": "物流", "owns": {"journey_stage": ["delivery"]}},
        "ecommerce": {"name": "E-com", "owns": {"touchpoint": ["checkout"], "channel": ["web"]}},
        "service": {"name": "客服", "owns": {"channel": ["hotline"]}},
    }
    settings = make_settings(
        tmp_path, [{"name": "f", "kind": "csv", "path": "f.csv"}], departments=departments
    )
    p = prep(settings)
    got = {rid: record(p, rid)["department"] for rid in ("d1", "d2", "d3", "d4", "d5")}
    assert got == {"d1": "logistics", "d2": "ecommerce", "d3": "service", "d4": "finance", "d5": None}


# ---------------------------------------------------------------------------------- time zones
@pytest.mark.parametrize(
    ("zone", "value", "expected_utc", "in_october"),
    [
        ("Asia/Shanghai", "2026-10-01 00:10", datetime(2026, 9, 30, 16, 10, tzinfo=UTC), True),
        ("Asia/Shanghai", "2026-09-30 23:59", None, False),
        ("Asia/Shanghai", "2026-10-31 23:59:59", datetime(2026, 10, 31, 15, 59, 59, tzinfo=UTC), True),
        ("Asia/Shanghai", "2026-10-31T20:00:00Z", None, False),  # = 1 Nov 04:00 in Shanghai
        ("Asia/Shanghai", "2026-09-30T20:00:00Z", datetime(2026, 9, 30, 20, 0, tzinfo=UTC), True),
        ("Europe/Berlin", "2026-10-01 00:30", datetime(2026, 9, 30, 22, 30, tzinfo=UTC), True),  # CEST
        ("Europe/Berlin", "2026-10-31 23:30", datetime(2026, 10, 31, 22, 30, tzinfo=UTC), True),  # CET
        ("America/New_York", "10/31/2026 11:30 PM", datetime(2026, 11, 1, 3, 30, tzinfo=UTC), True),
    ],
)
def test_naive_times_are_project_time_at_month_edges(
    tmp_path: Path, zone: str, value: str, expected_utc: datetime | None, in_october: bool
) -> None:
    write_csv(tmp_path / "t.csv", ["response_id,submitted_at,channel,nps", f"x,{value},web,9"])
    settings = make_settings(
        tmp_path, [{"name": "t", "kind": "csv", "path": "t.csv"}], project={"timezone": zone}
    )
    p = prep(settings)
    assert (len(p.records), p.out_of_period) == ((1, 0) if in_october else (0, 1))
    if expected_utc:
        assert record(p, "x")["submitted_at"] == expected_utc


def test_spreadsheet_date_formats(tmp_path: Path) -> None:
    values = [
        "2026/10/3 14:05",
        "2026-10-03",
        "2026年10月3日 14:05",
        "2026.10.03 14:05",
        "10/3/2026 2:05 PM",
        "03.10.2026 14:05",
        "2026-10-03T14:05:00.250",
        "２０２６/１０/３ １４:０５",
        "20261003",
    ]
    write_csv(
        tmp_path / "d.csv",
        ["response_id,submitted_at,channel,nps", *[f"v{i},{v},web,9" for i, v in enumerate(values)]],
    )
    settings = make_settings(tmp_path, [{"name": "d", "kind": "csv", "path": "d.csv"}])
    p = prep(settings)
    assert len(p.records) == len(values), p.rejected
    local = {f"v{i}": record(p, f"v{i}")["submitted_at"].astimezone(settings.tz) for i in range(len(values))}
    assert local["v0"].strftime("%Y-%m-%d %H:%M") == "2026-10-03 14:05"
    assert local["v4"].strftime("%Y-%m-%d %H:%M") == "2026-10-03 14:05"
    assert local["v7"].strftime("%Y-%m-%d %H:%M") == "2026-10-03 14:05"
    assert local["v1"].strftime("%Y-%m-%d %H:%M") == "2026-10-03 00:00"


def test_offset_pretest_leaves_every_possibly_aware_text_to_the_regex(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Only texts that cannot have an offset skip the offset regex: the times are the same as
    with the regex run on every text."""
    import cxloop.tasks.mapping as tm

    texts = ["2026-10-03 14:05:09", "2026-10-03T14:05:09Z", "2026-10-03T14:05:09z", "2026-10-03 14:05+08",
             "2026-10-03 14:05+0800", "2026-10-03 14:05:09+08:00", "2026-10-03 14:05:09.5-05:00",
             "2026-10-03 14:05:09 Z", "2026-10-03", "2026/10/3 14:05", "2026-1-3 4:5:9", "10/3/2026 2:05 PM",
             "2026-03-29 02:30:00", "2026-10-25 02:30:00", "2026-02-30 00:00:00", "junk", "20261003",
             "２０２６-10-03 14:05:09", "2026-10-03  14:05:09", "2026-10-03 14:05:09 +08:00"]
    s = pd.Series([*texts, None, *texts], dtype=object)  # repeated: parsed once each
    zone = ZoneInfo("Europe/Berlin")
    fast = tm.parse_datetimes(s, zone)
    monkeypatch.setattr(tm, "_may_have_offset", lambda t: np.ones(len(t), dtype=bool))
    general = tm.parse_datetimes(s, zone)
    pd.testing.assert_series_equal(fast[0], general[0])
    assert fast[1].tolist() == general[1].tolist()
    assert str(fast[0].dtype) == "datetime64[us, UTC]"
    assert fast[0][0] == pd.Timestamp("2026-10-03 12:05:09", tz="UTC")  # project time (CEST)
    assert fast[0][5] == pd.Timestamp("2026-10-03 06:05:09", tz="UTC")  # its own offset
    assert fast[0][1] == pd.Timestamp("2026-10-03 14:05:09", tz="UTC")
    unread = {texts[i] for i in np.flatnonzero(fast[1][:len(texts)])}  # None is not a failure
    assert unread == {"2026-10-03T14:05:09z", "2026-02-30 00:00:00", "junk", "2026-10-03  14:05:09"}


def test_blank_cells_become_none_and_other_values_keep_their_type() -> None:
    import cxloop.tasks.mapping as tm

    cells = [" a ", "a", "", " N/A ", "-", None, float("nan"), 1, 1.0, True, ["x"], "NULL", "b "]
    out = tm._blank_to_none(pd.Series(cells * 3, dtype=object)).tolist()
    expected = ["a", "a", None, None, None, None, None, 1, 1.0, True, ["x"], None, "b"] * 3
    assert out == expected
    assert [type(v) for v in out] == [type(v) for v in expected]  # 1, 1.0 and True stay apart
    distinct = [f" id{i} " for i in range(3_000)]  # mostly distinct: cleaned cell by cell
    assert tm._blank_to_none(pd.Series(distinct, dtype=object)).tolist() == [t.strip() for t in distinct]


def test_scores_and_flags_are_parsed_per_distinct_value() -> None:
    import cxloop.tasks.mapping as tm

    scores = pd.Series(["3", " 4 ", "１０", None, "3.5", "x", 7, 2.0, "3"], dtype=object)
    ints, bad, messages = tm.to_int(scores)
    assert ints.astype(object).where(ints.notna(), None).tolist() == [3, 4, 10, None, None, None, 7, 2, 3]
    assert str(ints.dtype) == "Int64" and bad.tolist() == [False] * 4 + [True, True] + [False] * 3
    assert messages == ["is not a whole number", "is not a number"]
    flags, bad = tm.to_bool(pd.Series(["yes", "否", None, "maybe", True], dtype=object))
    assert flags.tolist() == [True, False, None, None, True]
    assert bad.tolist() == [False, False, False, True, False]


# ------------------------------------------------------------------------- duplicates, updates
def test_recollect_is_idempotent_and_changes_are_updates(engine: Engine, tmp_path: Path) -> None:
    header = "response_id,submitted_at,channel,nps,comment"
    write_csv(
        tmp_path / "e.csv",
        [header, "u1,2026-10-03,web,9,good", "u2,2026-10-04,web,3,slow", "u2,2026-10-04,web,4,slow (edited)"],
    )
    settings = make_settings(tmp_path, [{"name": "e", "kind": "csv", "path": "e.csv"}])
    first = one(collect_period(settings, engine, P))
    assert (first.loaded, first.duplicates) == (2, 1)  # u2 twice in one export: the last row wins
    assert feedback(engine)["u2"].nps == 4
    with session_scope(engine) as s:  # the comments stage has run
        for f in s.execute(select(Feedback)).scalars():
            f.sentiment, f.themes = "neutral", ""
    again = one(collect_period(settings, engine, P))
    assert (again.loaded, again.updated, again.duplicates) == (0, 0, 3)
    write_csv(
        tmp_path / "e.csv",
        [header, "u1,2026-10-03,web,9,good", "u2,2026-10-04,web,4,fixed now", "u3,2026-10-05,web,10,"],
    )
    third = one(collect_period(settings, engine, P))
    assert (third.loaded, third.updated, third.duplicates) == (1, 1, 1)
    fb = feedback(engine)
    assert fb["u2"].comment == "fixed now" and fb["u2"].updated_at is not None
    assert fb["u2"].sentiment is None and fb["u1"].sentiment == "neutral"  # changed rows are re-analysed
    assert len(fb) == 3
    with session_scope(engine) as s:
        records = list(s.execute(select(ImportRecord).order_by(col(ImportRecord.id))).scalars())
    assert [(r.loaded, r.updated, r.duplicates) for r in records] == [(2, 0, 1), (0, 0, 3), (1, 1, 1)]
    assert records[0].content_hash == records[1].content_hash != records[2].content_hash


def test_big_load_with_a_quote_in_the_source_name(engine: Engine, tmp_path: Path) -> None:
    """A load of CHUNK rows or more takes the bulk path; the source name, written into the INSERT
    as a literal on SQLite, is stored as given."""
    from cxloop.tasks.collect.bulk import CHUNK

    n = CHUNK + 5
    lines = ["response_id,submitted_at,channel,nps,comment"]
    lines += [f"b{i},2026-10-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{i % 47:02d},web,{i % 11},"
              + ("" if i % 3 else f"comment {i}") for i in range(n)]
    write_csv(tmp_path / "big.csv", lines)
    name = "o'brien; drop table feedback; --"
    settings = make_settings(tmp_path, [{"name": name, "kind": "csv", "path": "big.csv"}])
    imp = one(collect_period(settings, engine, P))
    assert (imp.loaded, imp.rejected) == (n, 0)
    fb = feedback(engine)
    assert len(fb) == n and {f.source for f in fb.values()} == {name}
    b7 = fb["b7"]
    assert (b7.nps, b7.comment, b7.period, b7.quarantined, b7.import_id) == (7, None, P, False, imp.import_id)
    assert b7.submitted_at == datetime(2026, 10, 7, 23, 7, 7, tzinfo=UTC)  # 07:07:07 in Shanghai
    assert fb["b9"].comment == "comment 9" and b7.loaded_at is not None and b7.updated_at is None
    lines[8] = lines[8].replace(",web,7,", ",web,8,")  # b7 changed
    write_csv(tmp_path / "big.csv", lines)
    again = one(collect_period(settings, engine, P))
    assert (again.loaded, again.updated, again.duplicates) == (0, 1, n - 1)
    b7 = feedback(engine)["b7"]
    assert (b7.nps, b7.source, b7.import_id) == (8, name, again.import_id) and b7.updated_at is not None


@pytest.mark.parametrize("n", [7, 103])
def test_loaded_rows_keep_file_order_nulls_and_flags(engine: Engine, tmp_path: Path, n: int) -> None:
    """Rows go in several per INSERT on SQLite, with empty cells bound as NaN and flags as 0/1:
    the database must still hold real NULLs, 0/1 flags and the rows in file order (ids)."""
    from sqlalchemy import text

    lines = ["response_id,submitted_at,channel,csat,nps,is_complaint,opened_at,comment"]
    lines += [f"o{i},2026-10-{1 + i % 28:02d} 10:00,web,4,{'' if i % 4 == 1 else i % 11},"
              f"{['yes', 'no', ''][i % 3]},{'' if i % 5 else '2026-10-02 09:00'},"
              f"{'' if i % 2 else f'评论 {i}'}" for i in range(n)]
    write_csv(tmp_path / "o.csv", lines)
    settings = make_settings(tmp_path, [{"name": "o", "kind": "csv", "path": "o.csv"}])
    assert one(collect_period(settings, engine, P)).loaded == n
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT response_id, nps, is_complaint, opened_at, comment, sentiment "
                                 "FROM feedback ORDER BY id")).all()
        if engine.dialect.name == "sqlite":
            kinds = set(conn.execute(text(
                "SELECT typeof(nps), typeof(is_complaint), typeof(opened_at), typeof(comment), "
                "typeof(sentiment) FROM feedback")).all())
            assert {k for row in kinds for k in row} <= {"integer", "text", "null"}
    assert [r[0] for r in rows] == [f"o{i}" for i in range(n)]
    for i, (_, nps, flag, opened, comment, sentiment) in enumerate(rows):
        assert nps == (None if i % 4 == 1 else i % 11)
        assert flag == [True, False, None][i % 3] and (flag is None or flag in (0, 1))
        assert (opened is None) == bool(i % 5) and (comment is None) == bool(i % 2)
        assert sentiment is None


def test_overlapping_exports_load_once(engine: Engine, tmp_path: Path) -> None:
    header = "response_id,submitted_at,channel,nps"
    write_csv(
        tmp_path / "exp" / "2026-10a.csv", [header, "o1,2026-09-30 22:00,web,9", "o2,2026-10-01 09:00,web,8"]
    )
    write_csv(
        tmp_path / "exp" / "2026-10b.csv", [header, "o2,2026-10-01 09:00,web,8", "o3,2026-10-20 09:00,web,7"]
    )
    settings = make_settings(tmp_path, [{"name": "x", "kind": "csv", "path": "exp/*.csv"}])
    summary = collect_period(settings, engine, P)
    check_sums(summary)
    assert [(i.loaded, i.duplicates, i.out_of_period) for i in summary.imports] == [(1, 0, 1), (1, 1, 0)]
    september = collect_period(settings, engine, "2026-09")
    assert september.total("loaded") == 1 and feedback(engine)["o1"].period == "2026-09"


# ---------------------------------------------------------------------------------- error paths
def test_missing_file_and_glob_fail_alone(engine: Engine, tmp_path: Path) -> None:
    write_csv(tmp_path / "ok.csv", ["response_id,submitted_at,channel,nps", "k1,2026-10-03,web,9"])
    settings = make_settings(
        tmp_path,
        [
            {"name": "gone", "kind": "csv", "path": "exports/missing.csv"},
            {"name": "none", "kind": "excel", "path": "exports/*.xlsx"},
            {"name": "ok", "kind": "csv", "path": "ok.csv"},
        ],
    )
    summary = collect_period(settings, engine, P)
    check_sums(summary)
    gone, none, ok = summary.imports
    assert gone.error and "exports/missing.csv" in gone.error and "not found" in gone.error
    assert none.error and "exports/*.xlsx" in none.error and "no file matches" in none.error
    assert ok.loaded == 1 and ok.error is None
    assert len(summary.errors) == 2 and summary.counts()["errors"] == 2
    with session_scope(engine) as s:
        errors = [r.error for r in s.execute(select(ImportRecord)).scalars() if r.error]
    assert len(errors) == 2


def test_a_failure_is_current_only_from_its_sources_latest_collect(engine: Engine, tmp_path: Path) -> None:
    """A glob that matched nothing is recorded under the source's path, not a file's name. Once a
    later collect reads the files, that failure leaves the data-quality box; a file the same
    later collect could not read stays. Every record of one collect of a source carries that
    collect's start (`collect_started`, migration 0015)."""
    from sqlmodel import Session

    from cxloop.tasks.report.quality import _quality

    settings = make_settings(tmp_path, [{"name": "web", "kind": "csv", "path": "exports/*.csv"}])

    def box() -> list[str]:
        with Session(engine) as s:
            return _quality(s, P, None, None).import_errors

    collect_period(settings, engine, P)
    assert len(box()) == 1 and "no file matches" in box()[0]
    write_csv(tmp_path / "exports" / "a.csv", ["response_id,submitted_at,channel,nps", "k1,2026-10-03,web,9"])
    write_csv(tmp_path / "exports" / "b.csv", ["id,time", "k2,2026-10-04"])  # no column it needs
    summary = collect_period(settings, engine, P)
    assert [i.error is None for i in summary.imports] == [True, False]
    assert len(box()) == 1 and "b.csv" in box()[0]
    write_csv(tmp_path / "exports" / "b.csv", ["response_id,submitted_at,channel,nps", "k2,2026-10-04,web,7"])
    collect_period(settings, engine, P)
    assert box() == []
    with session_scope(engine) as s:
        records = sorted(s.execute(select(ImportRecord)).scalars(), key=lambda r: r.id or 0)
        starts = [r.collect_started for r in records]
    assert starts[1] == starts[2] != starts[0] and None not in starts  # a.csv and b.csv: one collect


def test_failures_written_before_collects_were_recorded_all_stay(engine: Engine) -> None:
    """Records from before migration 0015 carry no collect: for a source whose newest record is
    one of them, every failure stays in the box as before (else all but its newest would vanish);
    once the source is collected again, only that collect's failures count."""
    from datetime import timedelta

    from sqlmodel import Session

    from cxloop.models import utcnow
    from cxloop.tasks.report.quality import _quality

    def record(file: str, error: str | None, collect: datetime | None = None) -> None:
        with session_scope(engine) as s:
            s.add(ImportRecord(source="web", file=file, content_hash="h" if error is None else "", period=P,
                               rows_read=1, loaded=1 if error is None else 0, error=error,
                               collect_started=collect))

    def box() -> list[str]:
        with Session(engine) as s:
            return _quality(s, P, None, None).import_errors

    record("exports/*.csv", "exports/*.csv: no file matches")
    record("exports/a.csv", "exports/a.csv: cannot be read")
    record("exports/b.csv", None)
    assert box() == ["exports/*.csv: exports/*.csv: no file matches",
                     "exports/a.csv: exports/a.csv: cannot be read"]
    now = utcnow()
    record("exports/a.csv", None, now)
    record("exports/b.csv", None, now)
    assert box() == []
    record("exports/b.csv", "exports/b.csv: cannot be read", now + timedelta(hours=1))
    assert box() == ["exports/b.csv: exports/b.csv: cannot be read"]


def test_missing_mapped_column_names_file_and_column(tmp_path: Path) -> None:
    write_csv(tmp_path / "m.csv", ["编号,提交时间,渠道,评价", "r1,2026-10-03,web,好"])
    settings = make_settings(
        tmp_path, [{"name": "m", "kind": "csv", "path": "m.csv", "columns": WEB_COLUMNS}]
    )
    with pytest.raises(SourceError, match=r"m.csv: mapped column '满意度' \(mapped to csat\) not found"):
        prep(settings)


def test_unmapped_required_field_is_a_source_error(tmp_path: Path) -> None:
    write_csv(tmp_path / "n.csv", ["id,time,nps", "r1,2026-10-03,9"])
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "n",
                "kind": "csv",
                "path": "n.csv",
                "columns": {"response_id": "id", "submitted_at": "time", "nps": "nps"},
            }
        ],
    )
    with pytest.raises(SourceError, match=r"n.csv: no column for required field 'channel'"):
        prep(settings)


def test_unparseable_rows_are_quarantined_with_file_row_column(engine: Engine, tmp_path: Path) -> None:
    write_csv(
        tmp_path / "q.csv",
        [
            "编号,提交时间,渠道,满意度,评价",
            "g1,2026-10-03,web,5,fine",
            "b1,2026-10-03,web,五,score is text",
            "b2,2026-10-03,web,4.5,half a point",
            "b3,yesterday,web,4,bad date",
            ",2026-10-03,web,4,no id",
            "b5,2026-10-03,,4,no channel",
            "b6,2026-10-03,web,,",
            "b7,2026-09-12,web,abc,other month: not this month's problem",
        ],
    )
    settings = make_settings(
        tmp_path, [{"name": "q", "kind": "csv", "path": "q.csv", "columns": WEB_COLUMNS}]
    )
    imp = one(collect_period(settings, engine, P))
    assert (imp.rows_read, imp.loaded, imp.rejected, imp.out_of_period) == (9 - 1, 1, 6, 1)
    got = {q.row_key: q for q in quarantine(engine)}
    assert set(got) == {"b1", "b2", "b3", "q.csv:6", "b5", "b6"}
    assert all(
        q.stage == "collect" and q.period == P and q.source == "q" and q.file == "q.csv" for q in got.values()
    )
    b1 = got["b1"].reasons[0]
    assert (b1["check"], b1["column"], b1["value"]) == ("parse_int", "满意度", "五")
    assert b1["message"].startswith("q.csv row 3: column '满意度' (csat)") and got["b1"].line == 3
    assert "whole number" in got["b2"].reasons[0]["message"]
    b3 = got["b3"].reasons[0]
    assert (b3["check"], b3["column"], b3["value"]) == ("parse_datetime", "提交时间", "yesterday")
    assert "row 5" in b3["message"]
    no_id = got["q.csv:6"]
    assert no_id.response_id is None and no_id.line == 6 and no_id.reasons[0]["column"] == "编号"
    assert no_id.reasons[0]["check"] == "missing_required"
    assert got["b5"].reasons[0]["column"] == "渠道"
    assert got["b6"].reasons[0]["check"] == "not_feedback"
    assert got["b1"].raw == {
        "编号": "b1",
        "提交时间": "2026-10-03",
        "渠道": "web",
        "满意度": "五",
        "评价": "score is text",
    }


def test_fixed_rows_load_and_their_quarantine_is_readmitted(engine: Engine, tmp_path: Path) -> None:
    header = "response_id,submitted_at,channel,csat,comment"
    write_csv(
        tmp_path / "f.csv",
        [header, "f1,2026-10-03,web,5,", "f2,2026-10-03,web,five,", "f3,2026/13/45,web,3,"],
    )
    settings = make_settings(tmp_path, [{"name": "f", "kind": "csv", "path": "f.csv"}])
    first = one(collect_period(settings, engine, P))
    assert (first.loaded, first.rejected) == (1, 2)
    assert one(collect_period(settings, engine, P)).rejected == 2
    assert len(quarantine(engine)) == 2  # re-collecting does not duplicate quarantine entries
    write_csv(
        tmp_path / "f.csv", [header, "f1,2026-10-03,web,5,", "f2,2026-10-03,web,5,", "f3,2026/13/45,web,3,"]
    )
    fixed = one(collect_period(settings, engine, P))
    assert (fixed.loaded, fixed.duplicates, fixed.rejected) == (1, 1, 1)
    state = {q.row_key: q.readmitted_at for q in quarantine(engine)}
    assert state["f2"] is not None and state["f3"] is None
    assert feedback(engine)["f2"].csat == 5


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_bytes(b"")
    write_csv(tmp_path / "header.csv", ["response_id,submitted_at,channel,nps"])
    settings = make_settings(
        tmp_path,
        [
            {"name": "e", "kind": "csv", "path": "empty.csv"},
            {"name": "h", "kind": "csv", "path": "header.csv"},
        ],
    )
    with pytest.raises(SourceError, match="empty.csv: the file is empty"):
        prep(settings, "e")
    assert prep(settings, "h").rows_read == 0


def test_summary_counts_for_the_cycle_record(engine: Engine, tmp_path: Path) -> None:
    write_csv(
        tmp_path / "c.csv",
        ["response_id,submitted_at,channel,nps", "c1,2026-10-03,web,9", "c2,2026-11-03,web,9"],
    )
    settings = make_settings(tmp_path, [{"name": "c", "kind": "csv", "path": "c.csv"}])
    counts = collect_period(settings, engine, P).counts()
    assert counts == {
        "files": 1,
        "rows_read": 2,
        "loaded": 1,
        "updated": 0,
        "duplicates": 0,
        "rejected": 0,
        "out_of_period": 1,
        "errors": 0,
    }


def test_unchanged_files_are_not_parsed_again_but_counted_the_same(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cxloop.tasks.collect.stage as tc

    header = "response_id,submitted_at,channel,nps"
    write_csv(tmp_path / "x" / "a_09.csv", [header, "s1,2026-09-03,web,9", "s2,2026-09-04,web,3"])
    write_csv(tmp_path / "x" / "b_10.csv", [header, "o1,2026-10-03,web,9", "o2,2026-10-04,web,x"])
    settings = make_settings(tmp_path, [{"name": "x", "kind": "csv", "path": "x/*.csv"}])
    first = {i.file: i.row() for i in collect_period(settings, engine, "2026-09").imports}
    assert first["x/a_09.csv"]["loaded"] == 2 and first["x/b_10.csv"]["out_of_period"] == 2
    parsed: list[str] = []
    real = tc.prepare
    def spy(s: Any, src: Any, raw: Any, period: str, label: str) -> Any:
        parsed.append(label)
        return real(s, src, raw, period, label)

    monkeypatch.setattr(tc, "prepare", spy)
    # October: the September file holds no October row and is skipped; the October file is parsed.
    oct1 = collect_period(settings, engine, P)
    check_sums(oct1)
    assert parsed == ["x/b_10.csv"]
    rows = {i.file: i.row() for i in oct1.imports}
    assert rows["x/a_09.csv"] | {"error": ""} == {"source": "x", "file": "x/a_09.csv", "read": 2, "loaded": 0,
                                                  "updated": 0, "duplicates": 0, "rejected": 0,
                                                  "out_of_period": 2, "error": ""}
    assert (rows["x/b_10.csv"]["loaded"], rows["x/b_10.csv"]["rejected"]) == (1, 1)
    # Re-running October parses nothing and counts what a parse would: duplicates, same rejections.
    parsed.clear()
    again = {i.file: i.row() for i in collect_period(settings, engine, P).imports}
    assert parsed == []
    assert again["x/b_10.csv"] | {"error": ""} == {"source": "x", "file": "x/b_10.csv", "read": 2,
                                                   "loaded": 0, "updated": 0, "duplicates": 1,
                                                   "rejected": 1, "out_of_period": 0, "error": ""}
    assert len(quarantine(engine)) == 1
    with session_scope(engine) as s:
        recs = list(s.execute(select(ImportRecord).where(col(ImportRecord.period) == P)
                              .order_by(col(ImportRecord.id))).scalars())
    assert [r.periods["reused"] is not None for r in recs if r.periods] == [True, False, True, True]
    assert recs[1].periods is not None and recs[1].periods["rows"] == {"2026-10": 2}
    # A changed mapping can change the rows: every file is parsed again.
    remapped = make_settings(tmp_path, [{"name": "x", "kind": "csv", "path": "x/*.csv",
                                         "values": {"nps": {"x": 5}}}])
    fixed = {i.file: i.row() for i in collect_period(remapped, engine, P).imports}
    assert parsed == ["x/a_09.csv", "x/b_10.csv"]
    assert (fixed["x/b_10.csv"]["loaded"], fixed["x/b_10.csv"]["rejected"]) == (1, 0)
    assert feedback(engine)["o2"].nps == 5


def test_skipping_keeps_readmission_by_another_file(engine: Engine, tmp_path: Path) -> None:
    header = "response_id,submitted_at,channel,nps"
    write_csv(tmp_path / "x" / "b_10.csv", [header, "o1,2026-10-03,web,9", "o2,2026-10-04,web,x"])
    write_csv(tmp_path / "x" / "c_11.csv", [header, "o2,2026-10-04,web,7", "n1,2026-11-02,web,8"])
    settings = make_settings(tmp_path, [{"name": "x", "kind": "csv", "path": "x/*.csv"}])
    for _ in range(3):
        summary = collect_period(settings, engine, P)
        check_sums(summary)
        [entry] = quarantine(engine)
        assert entry.row_key == "o2" and entry.readmitted_at is not None
        assert feedback(engine)["o2"].nps == 7
    collect_period(settings, engine, "2026-11")
    rows = {i.file: i.row() for i in collect_period(settings, engine, "2026-11").imports}
    assert rows["x/b_10.csv"]["out_of_period"] == 2 and rows["x/c_11.csv"]["duplicates"] == 1


def test_a_column_counts_as_present_if_any_value_is_there() -> None:
    from cxloop.tasks.collect.values import _has_values

    later = [None] * 100 + ["x"]  # past the rows looked at first
    assert _has_values(pd.Series(later, dtype=object))
    assert _has_values(pd.Series(["x"] + [None] * 100, dtype=object))
    assert not _has_values(pd.Series([None, np.nan] * 60, dtype=object))
    assert not _has_values(pd.Series([], dtype=object))
    assert _has_values(pd.Series([pd.NA] * 70 + [3], dtype="Int64"))
