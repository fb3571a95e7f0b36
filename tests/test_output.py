"""How the CLI's tables reach a pipe or a file."""

from __future__ import annotations

import pytest

from cxloop.output import Format, emit


def test_piped_tables_keep_a_row_on_one_line(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A scheduled run's log must hold whole rows: with no terminal Rich wraps at 80 columns,
    which split every cell of a wide table over several lines. COLUMNS still rules."""
    rows = [{"id": 1, "department": "Logistics and delivery partners", "note": "slow " * 120}]
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr("cxloop.output.os.isatty", lambda fd: False)  # no terminal, as under cron
    capsys.readouterr()
    emit(rows, Format.table)
    lines = capsys.readouterr().out.splitlines()
    assert any("Logistics and delivery partners" in line and "slow " * 120 in line for line in lines)
    monkeypatch.setenv("COLUMNS", "60")
    emit(rows, Format.table)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 5 and max(len(line) for line in lines) <= 60
