"""Hostile values on their way out: CSV exports a spreadsheet opens (issue 21, item 13).

The inputs come from `tests/hostile/`, the corpus of bad inputs the hardening issue lists.
"""

from __future__ import annotations

import csv
import io
import shutil
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine

from cxloop.config import Settings, load_settings, settings_from_dict
from cxloop.db import session_scope
from cxloop.models import Action, ActionEvent
from cxloop.output import Format, emit
from cxloop.tasks.actions import open_actions
from cxloop.tasks.notify import build_notices
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


# ------------------------------------------------------------------ item 14: Markdown, URLs, terminals

MD_COMMENTS = (HOSTILE / "markdown_comments.txt").read_text(encoding="utf-8").splitlines()
TERMINAL = (HOSTILE / "terminal_escapes.txt").read_text(encoding="utf-8").strip()


def _rendered(markdown_text: str) -> str:
    """The HTML a Markdown chat client (or Apprise's Markdown-to-HTML step) would make of it."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").render(markdown_text)


def _assert_inert(markdown_text: str) -> None:
    html = _rendered(markdown_text).lower()
    for live in ("<img", "<a ", "<script", "javascript:alert(1)\"", "<code", "<strong>bold", "<del"):
        assert live not in html, (live, markdown_text)


def _hostile_settings(tmp_path: Path) -> Settings:
    return settings_from_dict({
        "project": {"language": "en"},
        "departments": {"logistics": {"name": "![x](http://evil.example/x.png) Logistics",
                                      "head": "[click](javascript:alert(1))", "language": "en",
                                      "notify": ["json://127.0.0.1:9/x"]}},
        "actions": {"escalation_notify": ["json://127.0.0.1:9/e"]},
    }, base_dir=tmp_path, env={})


def test_chat_notices_escape_markdown_from_customers_and_config(engine: Engine, tmp_path: Path) -> None:
    with session_scope(engine) as s:
        action = Action(kpi="nps", scope="journey_stage", scope_value="[stage](javascript:alert(1))",
                        department="logistics", severity="high", opened_period="2026-10",
                        due=date(2026, 11, 14), target=30.0, baseline_value=12.0, status="escalated",
                        playbook="call ![p](http://evil.example/p.png)",
                        evidence=[{"period": "2026-10", "value": 12.0, "n": 220, "target": 30.0,
                                   "comments": MD_COMMENTS}])
        s.add(action)
        s.flush()
        s.add(ActionEvent(action_id=action.id or 0, period="2026-10", from_status="open",
                          to_status="escalated", by="cx", note="see ![n](http://evil.example/n.png)"))
    drafts = {d.kind: d for d in build_notices(_hostile_settings(tmp_path), engine, "2026-10", held=False)}
    assert set(drafts) == {"digest", "escalation"}
    for draft in drafts.values():
        _assert_inert(draft.body_text)
        assert "evil.example/x.png" in draft.body_text  # shown as text, not loaded
    digest = drafts["digest"].body_text
    assert r"!\[x\](http://evil.example/x.png) 送货太慢" in digest
    assert r"\<script\>alert(1)\</script\>" in digest and "<script>" not in digest
    assert "\n[ref]:" not in digest  # a comment's line break cannot start a link definition
    assert "&lt;img" in drafts["digest"].body_html  # the HTML twin stays HTML-escaped


def test_data_quality_notice_escapes_markdown_in_samples() -> None:
    from cxloop.tasks.rendering import render

    check = {"expectation": "nps_in_scale", "column": "<b>nps</b>", "gating": True, "level": "row",
             "severity": "critical", "unexpected_count": 3, "observed": "[o](javascript:alert(1))",
             "sample": "![s](http://evil.example/s.png) 13812345678"}
    text = render("data_quality.md", "en", period="2026-10", checks=[check], critical=1, subject="s",
                  project="p", sources=["[src](http://evil.example)"])
    _assert_inert(text)
    assert "13812345678" not in text


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,<script>x</script>",
                                 "JavaScript://cx.example.com/%0aalert(1)", "cx.example.com/reports"])
def test_report_base_url_must_be_a_web_address(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cxloop.toml"
    cfg.write_text(f'[notify]\nreport_base_url = "{url}"\n', encoding="utf-8")
    code, _, err = cxloop(capsys, monkeypatch, cfg, "outbox")
    assert code == 2 and "notify.report_base_url" in err and "Traceback" not in err


def test_report_base_url_accepts_https(tmp_path: Path) -> None:
    settings = settings_from_dict({"notify": {"report_base_url": "https://cx.example.com/reports"}},
                                  base_dir=tmp_path, env={})
    assert settings.notify.report_base_url == "https://cx.example.com/reports"


def test_actions_show_strips_terminal_codes(engine: Engine, db_url: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "cxloop.toml"
    config.write_text(CONFIG.format(url=db_url), encoding="utf-8")
    with session_scope(engine) as s:
        action = Action(kpi="nps", scope="journey_stage", scope_value="delivery" + TERMINAL,
                        department="logistics", severity="high", opened_period="2026-10",
                        due=date(2026, 11, 14), target=30.0, baseline_value=12.0,
                        evidence=[{"period": "2026-10", "value": 12.0, "n": 220, "target": 30.0,
                                   "worst_comments": [{"text": TERMINAL}]}])
        s.add(action)
    code, out, err = cxloop(capsys, monkeypatch, config, "actions", "show", str(action.id))
    assert code == 0, err
    assert "red" in out and "click" in out and "end" in out  # the words stay
    for code_point in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert code_point not in out, repr(code_point)
