"""The README's first command: `cxloop demo` runs every cycle and tells the story."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cli import main


def test_demo_runs_every_cycle_and_tells_the_story(prefect_harness: None, db_url: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXLOOP_DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "250")
    folder = tmp_path / "demo"
    monkeypatch.setattr(sys, "argv", ["cxloop", "demo", "--months", "3", "--rows", "1500",
                                      "--dir", str(folder)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    assert exc.value.code in (0, None), out.err
    assert "sentiment model trained" in out.out
    assert "opened #1 nps of journey_stage delivery -> logistics" in out.out
    assert "Where to look next" in out.out and "report.html" in out.out
    assert list((folder / "notices" / "logistics").iterdir()), "the logistics head got a notice"
    months = sorted(p.name for p in (folder / "reports").iterdir())
    assert len(months) == 3 and all((folder / "reports" / m / "report.html").exists() for m in months)
