"""`cxloop init`, `cxloop collect` and `cxloop imports` through the real entry point (exit codes)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import cxloop.cli
from cxloop.paths import TEMPLATES


def run(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> tuple[int, str, str]:
    """Run `cxloop ARGS` in-process through `cxloop.cli.main` (which maps errors to exit codes)."""
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(sys, "argv", ["cxloop", *args])
    with pytest.raises(SystemExit) as stop:
        cxloop.cli.main()
    out = capsys.readouterr()
    code = stop.value.code
    return (code if isinstance(code, int) else (0 if code is None else 1)), out.out, out.err


def write_config(tmp_path: Path, db_url: str, sources: str) -> Path:
    cfg = tmp_path / "cxloop.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n\n{sources}', encoding="utf-8")
    return cfg


GOOD = """
[[sources]]
name = "web"
kind = "csv"
path = "web.csv"
[sources.columns]
response_id = "id"
submitted_at = "time"
channel = "channel"
nps = "nps"
"""
MISSING = """
[[sources]]
name = "hotline"
kind = "csv"
path = "exports/hotline.csv"
channel = "hotline"
"""


def test_collect_prints_summary_and_exits_0(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "web.csv").write_text("id,time,channel,nps\na,2026-10-02 08:00,web,9\nb,2026-10-03,web,x\n",
                                      encoding="utf-8")
    cfg = write_config(tmp_path, db_url, GOOD)
    code, out, err = run(["collect", "--period", "2026-10", "--config", str(cfg)], monkeypatch, capsys)
    assert code == 0, err
    assert "web.csv" in out and "loaded" in out and "rejected" in out
    code, out, _ = run(["collect", "-p", "2026-10", "-c", str(cfg), "--format", "json"], monkeypatch, capsys)
    assert code == 0
    [row] = json.loads(out)
    assert (row["read"], row["loaded"], row["duplicates"], row["rejected"]) == (2, 0, 1, 1)
    code, out, _ = run(["imports", "-c", str(cfg), "--format", "json"], monkeypatch, capsys)
    assert code == 0
    records = json.loads(out)
    assert [r["loaded"] for r in records] == [0, 1]  # newest first
    assert all(r["file"] == "web.csv" and len(r["content_hash"]) == 64 for r in records)


def test_collect_errors_exit_1_and_other_sources_load(db_url: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "web.csv").write_text("id,time,channel,nps\na,2026-10-02 08:00,web,9\n", encoding="utf-8")
    cfg = write_config(tmp_path, db_url, MISSING + GOOD)
    code, out, err = run(["collect", "--period", "2026-10", "--config", str(cfg)], monkeypatch, capsys)
    assert code == 1
    assert "exports/hotline.csv" in err and "not found" in err and "hotline" in err
    code, out, _ = run(["imports", "-c", str(cfg), "-f", "json", "--source", "web"], monkeypatch, capsys)
    assert [r["loaded"] for r in json.loads(out)] == [1]


def test_bad_period_and_bad_config_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cxloop.toml"
    cfg.write_text('[[sources]]\nname = "x"\nkind = "xml"\npath = "a.xml"\n', encoding="utf-8")
    code, _, err = run(["collect", "--period", "2026-13", "--config", str(cfg)], monkeypatch, capsys)
    assert code == 2 and "YYYY-MM" in err
    code, _, err = run(["collect", "--period", "2026-10", "--config", str(cfg)], monkeypatch, capsys)
    assert code == 2 and "sources[0].kind" in err


def test_init_output_collects_as_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "cx"
    code, out, _ = run(["init", str(target)], monkeypatch, capsys)
    assert code == 0 and "cxloop.toml" in out
    names = sorted(p.name for p in (target / "data").iterdir())
    assert names == sorted(p.name for p in (TEMPLATES / "init" / "data").iterdir())
    hotline = (target / "data" / "hotline_2026-10.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        hotline.decode("utf-8")  # the sample really is a GBK export
    assert (target / "data" / "web_survey_2026-10.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    monkeypatch.delenv("CXLOOP_DATABASE_URL", raising=False)
    cfg = str(target / "cxloop.toml")
    args = ["collect", "--period", "2026-10", "--config", cfg, "-f", "json"]
    code, out, err = run(args, monkeypatch, capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert {r["source"] for r in rows} == {"web_survey", "hotline", "store_survey", "app"}
    assert all(r["error"] == "" for r in rows)
    assert sum(r["loaded"] for r in rows) > 300
    assert sum(r["rejected"] for r in rows) == 2  # the two rows the sample quarantines on purpose
    assert (target / "cxloop.db").exists()  # default database next to the config
    from cxloop.config import load_settings

    settings = load_settings(cfg)  # every gap has a department to go to, the unowned ones too
    assert settings.actions.default_owner in settings.departments
    # Writing over an existing project needs --force.
    code, _, err = run(["init", str(target)], monkeypatch, capsys)
    assert code == 1 and "--force" in err
    code, _, _ = run(["init", str(target), "--force"], monkeypatch, capsys)
    assert code == 0


def test_init_that_cannot_write_fails_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 17, item 2: never "Next: edit ..." with nothing written. The tests run as root, which
    ignores file modes, so the folder cannot be made because a file stands where it should be."""
    (tmp_path / "cx").write_text("not a folder")
    code, out, err = run(["init", str(tmp_path / "cx")], monkeypatch, capsys)
    assert code == 1 and "Next:" not in out
    assert err.startswith("error cannot write ") and str(tmp_path / "cx") in err and "Traceback" not in err


def test_a_missing_shipped_resource_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A broken install (the package without its templates) is said in one line, exit 1."""
    monkeypatch.setattr("cxloop.paths.ROOT", tmp_path / "site-packages" / "cxloop")
    code, out, err = run(["init", str(tmp_path / "cx")], monkeypatch, capsys)
    assert code == 1 and not (tmp_path / "cx").exists() and "Next:" not in out
    assert "cxloop's shipped templates/init is missing or empty" in err and "reinstall cxloop" in err
