"""The README's first command: `cxloop demo` runs every cycle and tells the story - the same story
on any date (its months are fixed unless `--last` moves them) and across seeds."""

from __future__ import annotations

import re
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlmodel import Session, select

from cxloop.cli import main
from cxloop.models import Action, FollowupCase
from cxloop.tasks.demo import DEMO_LAST_PERIOD, TZ, default_plan


def _days(period: str) -> list[date]:
    first = date.fromisoformat(f"{period}-01")
    return [d for d in (first + timedelta(days=i) for i in range(31)) if d.month == first.month]


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def test_the_demo_months_do_not_depend_on_today() -> None:
    assert DEMO_LAST_PERIOD == "2026-10"
    assert default_plan().periods == ["2026-05", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10"]
    assert default_plan("2031-02", months=3).periods == ["2030-12", "2031-01", "2031-02"]


@pytest.mark.parametrize(("last", "seed"), [("2026-10", 7), ("2024-03", 3)])  # months already past: the
# gate quarantines answers dated after today
def test_demo_runs_every_cycle_and_tells_the_story(prefect_harness: None, db_url: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch, last: str,
                                                   seed: int) -> None:
    monkeypatch.setenv("CXLOOP_DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "250")
    folder = tmp_path / "demo"
    monkeypatch.setattr(sys, "argv", ["cxloop", "demo", "--months", "3", "--rows", "1500",
                                      "--dir", str(folder), "--last", last, "--seed", str(seed)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    assert exc.value.code in (0, None), out.err
    assert "sentiment model trained" in out.out
    assert f"{last}: cycle completed; opened #1 nps of journey_stage delivery -> logistics" in out.out
    assert "Where to look next" in out.out and "report.html" in out.out
    assert "cxloop users add admin --role admin" in out.out and "cxloop web --config" in out.out
    assert list((folder / "notices" / "logistics").iterdir()), "the logistics head got a notice"
    months = sorted(p.name for p in (folder / "reports").iterdir())
    assert months == default_plan(last, months=3).periods
    assert all((folder / "reports" / m / "report.html").exists() for m in months)
    # The survey's attribute ratings and the CRM's orders reach the last month's report.
    html = (folder / "reports" / last / "report.html").read_text(encoding="utf-8")
    assert 'id="drivers"' in html and 'data-driver="delivery_speed"' in html
    assert 'id="outcomes"' in html and 'data-outcome="spend"' in html and 'data-outcome="churned"' in html
    assert 'data-outcomes="too-few"' not in html and 'data-outcomes="complaints"' in html
    assert "评分与客户后续行为" in html and "并不能证明" in html  # the demo company reads Chinese
    assert not re.search(r"M\d{9}", html)  # member numbers are never shown
    # The last month asked for consent: its daily follow-up runs opened cases, and the report counts them.
    story = re.search(r"the daily follow-up run \((\d+) mornings at 07:00\) opened (\d+) cases", out.out)
    assert story, out.out
    # every morning of the month, and on until the open cases' deadlines passed (decided on any date)
    assert len(_days(last)) <= int(story[1]) <= len(_days(last)) + 21 and int(story[2]) > 20
    assert 'id="cases"' in html and "客户闭环跟进" in html
    assert not re.search(r"1[3589]\d{9}", html)  # nor a customer's phone number
    assert f"cxloop cases list --status open --config {folder / 'cxloop.toml'}" in " ".join(out.out.split())
    engine = create_engine(db_url)
    with Session(engine) as session:
        opened = [(a.kpi, a.scope, a.scope_value) for a in session.exec(select(Action))]
        cases = session.exec(select(FollowupCase)).all()
    engine.dispose()
    # Cases only from the month that asked, each opened by the run on the morning after its answer
    assert {c.period for c in cases} == {last}
    runs = {c.id: _aware(c.created_at) for c in cases}
    for c in cases:
        answered = _aware(c.opened_at).astimezone(TZ)
        assert runs[c.id] == datetime.combine(answered.date() + timedelta(days=1), time(7), tzinfo=TZ)
    first_run = datetime.combine(_days(last)[0] + timedelta(days=1), time(7), tzinfo=TZ)
    after_last_run = first_run + timedelta(days=int(story[1]))  # the morning the replay stopped
    assert all(_aware(c.close_due) <= after_last_run for c in cases if c.status in ("new", "contacted"))
    statuses = {c.status for c in cases}
    assert {"resolved", "unreachable"} <= statuses and statuses & {"new", "contacted"}
    # the only planted shortfall in these months; marketing's stages sit at their target
    assert opened == [("nps", "journey_stage", "delivery")]
