"""Bad environment, database and paths give one line and a documented exit code, never a traceback,
and error text is printed as written, never as Rich markup (issue 21, item 11)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.cli import cxloop

SOURCE = '[[sources]]\nname = "web"\nkind = "csv"\npath = "{path}"\n'


def _config(tmp_path: Path, db_url: str, path: str = "web.csv") -> Path:
    cfg = tmp_path / "cxloop.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n\n' + SOURCE.format(path=path), encoding="utf-8")
    return cfg


def _one_line(err: str) -> None:
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(("var", "words"), [
    ("CXLOOP_SOURCES__5__ENCODING", "a list index past its end"),
    ("CXLOOP_SOURCES__X__ENCODING", "a list index that is not a number"),
    ("CXLOOP_SOURCES__0__NAME__X", "a key inside a value that is not a table"),
])
def test_bad_environment_list_index_exits_2_naming_the_variable(
        var: str, words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, f"sqlite:///{tmp_path / 'cx.db'}")
    monkeypatch.setenv(var, "gbk")
    code, _, err = cxloop(capsys, monkeypatch, cfg, "imports")
    assert code == 2 and var in err and words in err
    _one_line(err)


@pytest.mark.parametrize("url", ["postgres ql://x", "nosuchdb://host/db", "sqlite:////no-such-dir-[x]/cx.db"])
def test_invalid_database_url_exits_2_naming_the_key(
        url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, url)
    code, _, err = cxloop(capsys, monkeypatch, cfg, "imports")
    if url.startswith("sqlite"):  # parses; the file cannot be opened: a database error, exit 1
        assert code == 1 and "database error" in err
        _one_line(err)
    else:
        assert code == 2 and "database.url" in err and "Traceback" not in err


def _read_only(db_url: str) -> str:
    """The same database, opened so that it cannot be written."""
    if db_url.startswith("sqlite"):
        return "sqlite:///file:" + db_url.removeprefix("sqlite:///") + "?mode=ro&uri=true"
    return db_url + "%20-cdefault_transaction_read_only%3Don"


def test_read_only_database_is_one_line(engine: Engine, db_url: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "web.csv").write_text("response_id,submitted_at,channel,nps\na,2026-10-02,web,9\n",
                                      encoding="utf-8")
    cfg = _config(tmp_path, _read_only(db_url))
    code, _, err = cxloop(capsys, monkeypatch, cfg, "collect", "--period", "2026-10")
    assert code == 1 and "database error" in err and "read" in err.lower(), err
    _one_line(err)


def test_fresh_read_only_database_is_one_line(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, _read_only(db_url))  # not migrated: the schema cannot be created
    code, _, err = cxloop(capsys, monkeypatch, cfg, "imports")
    assert code == 1 and "database error" in err
    _one_line(err)


def test_error_text_keeps_its_brackets(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, db_url, path="exports[bold]/[/web].csv")
    code, _, err = cxloop(capsys, monkeypatch, cfg, "collect", "--period", "2026-10")
    assert code == 1 and "exports[bold]/[/web].csv" in err, err
    cfg.write_text(f'[database]\nurl = "{db_url}"\n[project]\ntimezone = "Mars/[red]Base"\n',
                   encoding="utf-8")
    code, _, err = cxloop(capsys, monkeypatch, cfg, "imports")
    assert code == 2 and "Mars/[red]Base" in err, err
