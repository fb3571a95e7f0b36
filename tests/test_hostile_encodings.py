"""Issue 21, item 9: random bytes named `.csv`, a file that mixes encodings, a ragged CSV.

Each must fail its own file with one line naming the source, the file and the line (exit code 1,
never a traceback), while the other sources are still collected. The files are in `tests/hostile/`.
"""

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
GOOD = "id,time,comment\ng1,2026-10-02 08:00,fine\n"
SOURCES = """
[[sources]]
name = "web"
kind = "csv"
path = "web.csv"
channel = "web"
[sources.columns]
response_id = "id"
submitted_at = "time"

[[sources]]
name = "shop"
kind = "csv"
path = "shop.csv"
channel = "web"
[sources.columns]
response_id = "id"
submitted_at = "time"
comment = "comment"
"""
CASES = [
    ("random_bytes.csv", "line 1: cannot detect the text encoding"),
    ("mixed_encodings.csv", "line 4: not UTF-8 like the lines before it"),  # the GBK line
    ("ragged.csv", "line 3: not a readable CSV"),
]


def _settings(tmp_path: Path, engine: Engine) -> object:
    columns = {"response_id": "id", "submitted_at": "time"}
    return settings_from_dict({
        "database": {"url": engine.url.render_as_string(hide_password=False)},
        "sources": [{"name": "web", "kind": "csv", "path": "web.csv", "channel": "web", "columns": columns},
                    {"name": "shop", "kind": "csv", "path": "shop.csv", "channel": "web",
                     "columns": {**columns, "comment": "comment"}}],
    }, base_dir=tmp_path, env={})


def _files(tmp_path: Path, hostile: str) -> None:
    shutil.copy(HOSTILE / hostile, tmp_path / "web.csv")
    (tmp_path / "shop.csv").write_text(GOOD, encoding="utf-8")


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(("hostile", "words"), CASES)
def test_unreadable_file_names_source_file_and_line(hostile: str, words: str, chunked: bool,
                                                    engine: Engine, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _files(tmp_path, hostile)
    if chunked:  # the big-file path: read in chunks by a worker process
        import cxloop.tasks.collect.chunked as chunked_mod

        monkeypatch.setattr(chunked_mod, "wanted", lambda source, path: path.name == "web.csv")
    summary = collect_period(_settings(tmp_path, engine), engine, P)  # type: ignore[arg-type]
    [error] = summary.errors
    assert error.startswith(f"source 'web': web.csv: {words}"), error
    assert "\n" not in error and "Traceback" not in error
    with engine.connect() as conn:
        ids = set(conn.execute(select(Feedback.response_id)).scalars())  # type: ignore[call-overload]
        [stored] = conn.execute(select(ImportRecord.error).where(  # type: ignore[call-overload]
            ImportRecord.source == "web")).scalars()
    assert ids == {"g1"}  # the other source still loads
    assert stored is not None and stored.startswith(f"web.csv: {words}")


@pytest.mark.parametrize(("hostile", "words"), CASES)
def test_unreadable_file_through_the_cli(hostile: str, words: str, db_url: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _files(tmp_path, hostile)
    cfg = tmp_path / "cxloop.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n{SOURCES}', encoding="utf-8")
    code, out, err = cxloop(capsys, monkeypatch, cfg, "collect", "--period", P)
    assert code == 1, (out, err)
    assert "Traceback" not in err and f"source 'web': web.csv: {words}" in " ".join(err.split())
