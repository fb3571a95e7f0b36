"""`cxloop quarantine list|show|export|readmit` on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from sqlalchemy import Engine, update
from typer.testing import CliRunner

from cxloop.cli import app
from cxloop.commands.common import CxError
from cxloop.db import session_scope
from cxloop.models import Feedback, QuarantinedRow
from cxloop.tasks import validate as v
from tests.test_validate import NOW, PERIOD, add_rows, good_row, make_settings

runner = CliRunner()


def _setup(engine: Engine, db_url: str, tmp_path: Path) -> Path:
    cfg = tmp_path / "cxloop.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n\n[quality]\nmax_quarantine_share = 1.0\n\n'
                   '[[sources]]\nname = "web"\nkind = "csv"\npath = "web.csv"\n', encoding="utf-8")
    add_rows(engine, [good_row(i) for i in range(4)]
             + [good_row(7, nps=42, channel="fax"), good_row(8, csat=0)])
    with session_scope(engine) as s:
        s.add(QuarantinedRow(period=PERIOD, source="web", row_key="web.csv:12", file="web.csv", line=12,
                             stage="collect", raw={"nps": "ten", "submitted_at": "yesterday"},
                             reasons=[{"check": "parse_int", "column": "nps", "field": "nps",
                                       "value": "ten", "message": "nps: 'ten' is not a number"}]))
    settings = make_settings(tmp_path, quality={"max_quarantine_share": 1.0})
    v.validate_period(settings, engine, PERIOD, now=NOW)
    return cfg


def test_list_show_export_readmit(engine: Engine, db_url: str, tmp_path: Path) -> None:
    cfg = _setup(engine, db_url, tmp_path)
    base = ["--period", PERIOD, "--config", str(cfg)]

    res = runner.invoke(app, ["quarantine", "list", *base, "--format", "json"])
    assert res.exit_code == 0, res.output
    listed = {r["row_key"]: r for r in json.loads(res.stdout)}
    assert set(listed) == {"r7", "r8", "web.csv:12"}
    assert listed["r7"]["reasons"] == 2 and listed["web.csv:12"]["stage"] == "collect"
    table = runner.invoke(app, ["quarantine", "list", *base])
    assert table.exit_code == 0 and "r7" in table.stdout and "web.csv:12" in table.stdout

    shown = runner.invoke(app, ["quarantine", "show", "r7", *base, "--format", "json"])
    assert shown.exit_code == 0, shown.output
    row = json.loads(shown.stdout)
    assert row["raw"]["nps"] == 42 and row["raw"]["channel"] == "fax"
    assert {r["expectation"] for r in row["reasons"]} == {"nps_in_scale", "channel_in_vocabulary"}
    by_id = runner.invoke(app, ["quarantine", "show", str(row["id"]), *base, "--format", "json"])
    assert json.loads(by_id.stdout)["row_key"] == "r7"
    assert "nps_in_scale" in runner.invoke(app, ["quarantine", "show", "web|r7", *base]).stdout
    missing = runner.invoke(app, ["quarantine", "show", "nope", *base])
    assert isinstance(missing.exception, CxError) and "nope" in str(missing.exception)

    out = runner.invoke(app, ["quarantine", "export", *base, "--format", "csv"])
    assert out.exit_code == 0, out.output
    lines = {r["row_key"]: r for r in csv.DictReader(io.StringIO(out.stdout))}
    assert set(lines) == {"r7", "r8", "web.csv:12"}
    assert lines["r7"]["raw.nps"] == "42" and "outside 0 .. 10" in lines["r7"]["reasons"]
    assert lines["web.csv:12"]["raw.nps"] == "ten" and lines["web.csv:12"]["line"] == "12"
    assert lines["web.csv:12"]["expectations"] == "parse_int"  # collect's check (it was empty)
    assert set(lines["r7"]["expectations"].split(",")) == {"nps_in_scale", "channel_in_vocabulary"}
    target = tmp_path / "out" / "q.json"
    res = runner.invoke(app, ["quarantine", "export", *base, "--format", "json", "--out", str(target)])
    assert res.exit_code == 0 and "3 row(s)" in res.stderr
    exported = json.loads(target.read_text(encoding="utf-8"))
    assert {r["row_key"] for r in exported} == {"r7", "r8", "web.csv:12"}
    table = runner.invoke(app, ["quarantine", "export", *base, "--format", "table"])
    assert table.exit_code == 2 and "'table' is not one of 'csv', 'json'" in table.output, table.output
    assert "<csv|json>" in runner.invoke(app, ["quarantine", "export", "--help"]).output  # not table

    with session_scope(engine) as s:
        s.execute(update(Feedback).where(v.FB.response_id == "r8").values(csat=3))
    res = runner.invoke(app, ["quarantine", "readmit", *base, "--format", "json"])
    assert res.exit_code == 0, res.output
    assert f"1 row(s) readmitted: run the cycle again (`cxloop run --period {PERIOD}`)" in res.stderr
    summary = json.loads(res.stdout)[0]
    assert (summary["readmitted"], summary["still_quarantined"], summary["collect_quarantined"]) == (1, 1, 1)
    assert "re-collect" in res.stderr
    after = json.loads(runner.invoke(app, ["quarantine", "list", *base, "--format", "json"]).stdout)
    assert {r["row_key"] for r in after} == {"r7", "web.csv:12"}
    everything = runner.invoke(app, ["quarantine", "list", *base, "--all", "--format", "json"])
    assert {r["row_key"] for r in json.loads(everything.stdout)} == {"r7", "r8", "web.csv:12"}
