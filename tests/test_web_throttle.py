"""Password guessing is limited (issue 18), over real HTTP on both databases, with an injected
clock (no sleeping): after `login_attempts` failures for one account, or `login_attempts_per_client`
from one address, within the window, sign-in is refused with 429 until the window has passed -
for an unknown name exactly as for a known one, across a restart, each lockout in the audit log."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cxloop.models import AuditEntry, LoginAttempt
from cxloop.tasks.rendering import render
from cxloop.web.throttle import Limits, locked, record_failure
from tests.web_setup import PASSWORD, csrf_of, seed, serve

START = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def _try(client: httpx.Client, name: str, password: str) -> httpx.Response:
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"name": name, "password": password, "csrf": token})


def _answer(r: httpx.Response) -> tuple[int, str]:
    """What a guesser learns: the status and the page without the per-session token."""
    return r.status_code, re.sub(r'name="csrf" value="[^"]+"', "", r.text)


def test_five_failures_lock_the_account_until_the_window_passes(engine: Engine, db_url: str,
                                                                 tmp_path: Path) -> None:
    ws = seed(engine, db_url, tmp_path)
    clock = Clock()
    with serve(ws.settings, engine, clock=clock) as base:
        client = httpx.Client(base_url=base)
        known = [_answer(_try(client, "anna", f"guess {i}")) for i in range(5)]
        unknown = [_answer(_try(client, "nobody", f"guess {i}")) for i in range(5)]
        assert [s for s, _ in known] == [401, 401, 401, 401, 429]
        assert known == unknown  # no telling which accounts exist
        assert "too many failed sign-ins; wait 15 minutes" in known[-1][1]
        r = _try(client, "anna", PASSWORD)  # even the right password, while locked
        assert r.status_code == 429 and r.headers["retry-after"] == "900"
        assert client.get("/actions").status_code == 303  # not signed in
        assert _try(client, "admin", PASSWORD).status_code == 303  # another account is not held up
    clock.now += timedelta(minutes=14)
    with serve(ws.settings, engine, clock=clock) as base:  # a restart (or another worker) remembers
        assert _try(httpx.Client(base_url=base), "anna", PASSWORD).status_code == 429
        clock.now += timedelta(minutes=1, seconds=1)
        assert _try(httpx.Client(base_url=base), "anna", PASSWORD).status_code == 303
    with Session(engine) as s:
        locks = s.exec(select(AuditEntry).where(AuditEntry.verb == "sign_in_locked")
                       .order_by(col(AuditEntry.id))).all()
        left = s.exec(select(LoginAttempt).where(LoginAttempt.account == "anna")).all()
    assert [(e.actor, e.detail) for e in locks] == [("anna", "account locked for 15 minutes"),
                                                   ("nobody", "account locked for 15 minutes")]
    assert not left  # the right password cleared the account's failures


def test_one_address_guessing_many_accounts_is_stopped(engine: Engine, db_url: str, tmp_path: Path) -> None:
    ws = seed(engine, db_url, tmp_path)
    ws.settings.web.login_attempts_per_client = 3
    clock = Clock()
    with serve(ws.settings, engine, clock=clock) as base:
        client = httpx.Client(base_url=base)
        codes = [_try(client, name, "guess").status_code for name in ("a", "b", "c")]
        assert codes == [401, 401, 429]
        assert _try(client, "admin", PASSWORD).status_code == 429
        clock.now += timedelta(minutes=15)
        assert _try(client, "admin", PASSWORD).status_code == 303
    with Session(engine) as s:
        [lock] = s.exec(select(AuditEntry).where(AuditEntry.verb == "sign_in_locked")).all()
    assert lock.detail == "client locked for 15 minutes (client 127.0.0.1)"


def test_the_count_and_the_message(engine: Engine, db_url: str, tmp_path: Path) -> None:
    limits = Limits(per_account=2, per_client=10, window=timedelta(minutes=15))
    assert record_failure(engine, limits, " Wang ", "10.0.0.1", START) is None
    assert record_failure(engine, limits, "wang", "10.0.0.2", START + timedelta(minutes=1)) == "account"
    # held for a whole window from the failure that reached the limit
    assert locked(engine, limits, "WANG", "10.0.0.3", START + timedelta(minutes=15, seconds=59)) == "account"
    assert locked(engine, limits, "wang", "10.0.0.3", START + timedelta(minutes=16)) is None
    # two failures further apart than the window never lock
    assert record_failure(engine, limits, "lee", "", START) is None
    assert record_failure(engine, limits, "lee", "", START + timedelta(minutes=15)) is None
    message = "too many failed sign-ins; wait %(minutes)s minutes and try again"
    for lang, words in (("en", "wait 15 minutes"), ("zh", "请等待 15 分钟")):
        html = render("web/login.html", lang, user=None, csrf="x", project="p", departments={},
                      request_path="/login", next="/", error=message, minutes="15")
        assert words in html
