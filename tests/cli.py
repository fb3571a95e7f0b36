"""Run the real `cxloop` entry point in-process, as a user's shell would."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cxloop.cli import main


def cxloop(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, config: Path,
           *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `cxloop ARGS --config CONFIG`."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["cxloop", *args, "--config", str(config)])
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 1), out.out, out.err
