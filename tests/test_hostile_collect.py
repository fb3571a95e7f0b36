"""Hostile files at collection: NUL bytes (issue 21, item 5), on SQLite and PostgreSQL.

The files are in `tests/hostile/`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from cxloop.config import settings_from_dict
from cxloop.models import Feedback, ImportRecord
from cxloop.tasks.collect import collect_period
from tests.cli import cxloop

HOSTILE = Path(__file__).parent / "hostile"
P = "2026-10"
WEB = ('[[sources]]\nname = "web"\nkind = "csv"\npath = "web.csv"\n'
       '[sources.columns]\nresponse_id = "id"\nsubmitted_at = "time"\n')


def _settings(tmp_path: Path, engine: Engine, **source: object) -> object:
    return settings_from_dict({
        "database": {"url": engine.url.render_as_string(hide_password=False)},
        "sources": [{"name": "web", "kind": "csv", "path": "web.csv",
                     "columns": {"response_id": "id", "submitted_at": "time"}, **source}],
    }, base_dir=tmp_path, env={})


def _stored(engine: Engine) -> dict[str, Feedback]:
    from sqlmodel import Session

    with Session(engine) as s:
        return {f.response_id: f for f in s.exec(select(Feedback)).scalars()}  # type: ignore[call-overload]


def _import_warnings(engine: Engine) -> dict[str, object]:
    with engine.connect() as conn:
        return conn.execute(select(ImportRecord.warnings)).scalar_one()  # type: ignore[call-overload]


@pytest.mark.parametrize("chunked", [False, True])
def test_nul_bytes_are_removed_and_counted(chunked: bool, engine: Engine, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(HOSTILE / "nul_bytes.csv", tmp_path / "web.csv")
    if chunked:  # the big-file path: read in chunks by a worker process
        import cxloop.tasks.collect.chunked as chunked_mod

        monkeypatch.setattr(chunked_mod, "wanted", lambda source, path: True)
    summary = collect_period(_settings(tmp_path, engine), engine, P)  # type: ignore[arg-type]
    assert summary.ok, summary.errors
    rows = _stored(engine)
    assert (rows["n1"].comment, rows["n2"].channel, rows["n3"].nps) == ("good service", "web", 8)
    warnings = _import_warnings(engine)
    assert warnings == {"nul_removed": {"cells": 3, "first": ["row 3 column 'channel'", "row 4 column 'nps'",
                                                              "row 2 column 'comment'"]}}
    assert summary.warning_lines == ["source 'web': web.csv: 3 NUL character(s) removed (first: row 3 column "
                                     "'channel', row 4 column 'nps', row 2 column 'comment')"]


def test_nul_bytes_through_the_cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(HOSTILE / "nul_bytes.csv", tmp_path / "web.csv")
    cfg = tmp_path / "cxloop.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n\n{WEB}', encoding="utf-8")
    code, out, err = cxloop(capsys, monkeypatch, cfg, "collect", "--period", P)
    assert code == 0 and "Traceback" not in err and "3 NUL character(s) removed" in err
    code, out, _ = cxloop(capsys, monkeypatch, cfg, "imports", "--format", "json")
    assert code == 0 and '"nul_removed"' in out


@pytest.mark.parametrize("chunked", [False, True])
def test_conflicting_copies_of_a_response_id_are_reported(chunked: bool, engine: Engine, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 21, item 8: d1 and d2 come twice with different answers (the last wins), d3 twice the
    same (a plain duplicate, not a conflict)."""
    shutil.copy(HOSTILE / "conflicting_ids.csv", tmp_path / "web.csv")
    if chunked:
        import cxloop.tasks.collect.chunked as chunked_mod

        monkeypatch.setattr(chunked_mod, "wanted", lambda source, path: True)
        monkeypatch.setattr(chunked_mod, "CHUNK_ROWS", 2)  # each copy of d1 and d2 in its own chunk
        monkeypatch.setattr(chunked_mod, "FIRST_CHUNK_ROWS", 2)
    summary = collect_period(_settings(tmp_path, engine), engine, P)  # type: ignore[arg-type]
    assert summary.ok, summary.errors
    rows = _stored(engine)
    assert (rows["d1"].nps, rows["d2"].nps, rows["d3"].nps) == (2, 8, 5)  # the last row wins
    assert _import_warnings(engine) == {"conflicting_ids": {"count": 2, "first": ["d1", "d2"]}}
    [line] = summary.warning_lines
    assert "2 response_id(s) repeated with different content" in line and "d1, d2" in line


def test_implausible_dates_are_quarantined_not_out_of_period(engine: Engine, tmp_path: Path) -> None:
    """Issue 21, item 7: years such as 2099, 0001, 9999 (and Excel's 1899-12-30) are more than
    20 years from the month collected: quarantined with a reason. Last month's row stays out of
    period; a 2007 row is within 20 years of 2026-10, so another month's answer."""
    shutil.copy(HOSTILE / "implausible_dates.csv", tmp_path / "web.csv")
    summary = collect_period(_settings(tmp_path, engine), engine, P)  # type: ignore[arg-type]
    [imp] = summary.imports
    assert (imp.rows_read, imp.loaded, imp.rejected, imp.out_of_period) == (7, 1, 4, 2)
    from sqlmodel import Session

    from cxloop.models import QuarantinedRow
    with Session(engine) as s:
        quarantined = {q.row_key: q for q in s.exec(select(QuarantinedRow)).scalars()}  # type: ignore[call-overload]
    assert set(quarantined) == {"y1", "y2", "y3", "y4"}
    reason = quarantined["y1"].reasons[0]
    assert reason["check"] == "implausible_date" and reason["value"] == "2099-10-03 10:00"
    assert "more than 20 years from 2026-10" in reason["message"] and "row 2" in reason["message"]


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(("content", "words"), [
    ("x," * 1_500_000, "longer than 1,000,000 characters"),  # one huge line, no header row
    (",".join(f"c{i}" for i in range(3_000)) + "\n" + "1," * 2_999 + "1\n", "has 3,000 fields"),
])
def test_huge_header_is_refused_naming_the_file(content: str, words: str, chunked: bool, engine: Engine,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 21, item 6: a one-line file of millions of fields hung collect at 100% CPU."""
    (tmp_path / "web.csv").write_text(content, encoding="utf-8")
    if chunked:
        import cxloop.tasks.collect.chunked as chunked_mod

        monkeypatch.setattr(chunked_mod, "wanted", lambda source, path: True)
    summary = collect_period(_settings(tmp_path, engine), engine, P)  # type: ignore[arg-type]
    [error] = summary.errors
    assert error.startswith("source 'web': web.csv: line 1 (the header)") and words in error, error
