"""Hostile values on their way out: CSV exports a spreadsheet opens (issue 21, item 13).

The inputs come from `tests/hostile/`, the corpus of bad inputs the hardening issue lists.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest
from sqlalchemy import Engine

from config import load_settings
from output import Format, emit
from tasks.actions import open_actions
from tests.cli import cxloop
from tests.test_actions import add_result
from tests.test_actions_cli import CONFIG

HOSTILE = Path(__file__).parent / "hostile"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _assert_no_formula(rows: list[dict[str, str]]) -> None:
    """No cell a spreadsheet would evaluate, except plain numbers."""
    for row in rows:
        for key, cell in row.items():
            if cell and cell.startswith(FORMULA_STARTS):
                float(cell)  # only a number may start like a formula
            assert not key.startswith(FORMULA_STARTS), key


def test_csv_writer_neutralises_formulas_but_keeps_negative_numbers(
        capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"kpi": "=HYPERLINK(\"http://evil.example\",\"x\")", "scope": "+1+cmd", "value": -3.5,
             "text": "-3.5", "who": "@SUM(A1)", "tab": "\t=1", "cr": "\r=1", "dash": "-2+3",
             "plain": "fine", "list": ["=1"], "exp": "-1e-3", "n": -2}]
    emit(rows, Format.csv)
    [out] = _csv_rows(capsys.readouterr().out)
    assert out["kpi"] == "'=HYPERLINK(\"http://evil.example\",\"x\")"
    assert (out["scope"], out["who"], out["tab"], out["cr"], out["dash"]) == (
        "'+1+cmd", "'@SUM(A1)", "'\t=1", "'\r=1", "'-2+3")
    assert (out["value"], out["text"], out["exp"], out["n"], out["plain"]) == ("-3.5", "-3.5", "-1e-3", "-2",
                                                                              "fine")
    assert out["list"] == '["=1"]'  # a JSON cell starts with a bracket: harmless
    _assert_no_formula([out])


def test_quarantine_export_of_a_hostile_file_is_spreadsheet_safe(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(HOSTILE / "formulas.csv", tmp_path / "web.csv")
    cfg = tmp_path / "cxloop.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n\n[[sources]]\nname = "web"\nkind = "csv"\n'
                   'path = "web.csv"\n[sources.columns]\nresponse_id = "id"\nsubmitted_at = "time"\n',
                   encoding="utf-8")
    code, _, err = cxloop(capsys, monkeypatch, cfg, "collect", "--period", "2026-10")
    assert code == 0, err
    code, out, err = cxloop(capsys, monkeypatch, cfg, "quarantine", "export", "--period", "2026-10")
    assert code == 0, err
    rows = {r["row_key"]: r for r in _csv_rows(out)}
    assert set(rows) == {"f1", "f2", "f3"}  # unparseable scores: =1+1, @SUM(1), -3.5
    assert rows["f1"]["raw.nps"] == "'=1+1" and rows["f2"]["raw.nps"] == "'@SUM(1)"
    assert rows["f1"]["raw.comment"].startswith("'=HYPERLINK(")
    assert rows["f3"]["raw.nps"] == "-3.5" and rows["f3"]["raw.comment"] == "'+1+cmd"
    _assert_no_formula(list(rows.values()))


def test_actions_list_csv_is_spreadsheet_safe(engine: Engine, db_url: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "cxloop.toml"
    config.write_text(CONFIG.format(url=db_url), encoding="utf-8")
    add_result(engine, "2026-10", "csat", "channel", "=HYPERLINK(\"http://evil.example\")", value=60,
               ci=(55, 65), target=80, n=80)
    open_actions(load_settings(config, env={}), engine, "2026-10")
    code, out, err = cxloop(capsys, monkeypatch, config, "actions", "list", "--format", "csv")
    assert code == 0, err
    [row] = _csv_rows(out)
    assert row["scope_value"] == "'=HYPERLINK(\"http://evil.example\")"
    _assert_no_formula([row])
