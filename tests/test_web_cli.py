"""`cxloop users ...` and `cxloop web` as an admin runs them: exit codes, one-line errors, and no
password ever printed or stored in clear."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cxloop.models import WebUser
from tests.cli import cxloop
from tests.web_setup import seed

NEW_PASSWORD = "a-long-enough-password"


def test_users_add_list_disable_reset(engine: Engine, db_url: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ws = seed(engine, db_url, tmp_path)
    monkeypatch.setenv("CXLOOP_PASSWORD", NEW_PASSWORD)
    code, out, _ = cxloop(capsys, monkeypatch, ws.config, "users", "add", "li@example.com", "--role",
                          "member", "--department", "logistics", "--password")
    assert (code, out.strip()) == (0, "user li@example.com: member of logistics")
    code, _, err = cxloop(capsys, monkeypatch, ws.config, "users", "add", "x", "--role", "head",
                          "--department", "nowhere")
    assert code == 1 and "unknown department 'nowhere'" in err and len(err.strip().splitlines()) == 1
    code, out, _ = cxloop(capsys, monkeypatch, ws.config, "users", "list", "--format", "json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["li@example.com"]["password"] is True and rows["wang"]["password"] is False
    assert NEW_PASSWORD not in out and "argon2" not in out
    assert cxloop(capsys, monkeypatch, ws.config, "users", "disable", "li@example.com")[0] == 0
    assert cxloop(capsys, monkeypatch, ws.config, "users", "disable", "nobody")[0] == 1
    monkeypatch.setenv("CXLOOP_PASSWORD", "short")
    code, _, err = cxloop(capsys, monkeypatch, ws.config, "users", "reset", "li@example.com", "--password")
    assert code == 1 and "at least 10 characters" in err
    monkeypatch.setenv("CXLOOP_PASSWORD", NEW_PASSWORD)
    assert cxloop(capsys, monkeypatch, ws.config, "users", "reset", "li@example.com", "--password")[0] == 0
    with Session(engine) as s:
        li = s.exec(select(WebUser).where(WebUser.name == "li@example.com")).one()
    assert li.active and li.session_version == 3 and (li.password_hash or "").startswith("$argon2id$")


def test_bad_web_config_and_a_taken_port(engine: Engine, db_url: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ws = seed(engine, db_url, tmp_path)
    good = ws.config.read_text(encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text(good.replace('base_url = "http://127.0.0.1:1"', 'base_url = "javascript:alert(1)"'),
                   encoding="utf-8")
    code, _, err = cxloop(capsys, monkeypatch, bad, "web")
    assert code == 2 and "web.base_url" in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = cxloop(capsys, monkeypatch, ws.config, "web", "--port", str(port))
    assert code == 1 and "Traceback" not in err
