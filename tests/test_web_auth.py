"""Sign-in links and accounts on both databases: a link works once, only until it expires, only
with its signature, and only while its account is active; disable and reset end sessions."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cxloop.models import AuditEntry, WebLink, utcnow
from cxloop.web.auth import (
    LinkRefused,
    consume_link,
    mint_link,
    new_session,
    secret_key,
    session_user,
    verify_password,
)
from cxloop.web.users import UserError, add_user, authenticate, disable_user, head_account, reset_user
from tests.web_setup import PASSWORD, Workspace, seed


@pytest.fixture
def ws(engine: Engine, db_url: str, tmp_path: Path) -> Workspace:
    return seed(engine, db_url, tmp_path)


def _wang(ws: Workspace) -> int:
    user = head_account(ws.engine, "logistics")
    assert user is not None and user.name == "wang"
    return user.id or 0


def test_a_link_signs_in_once(ws: Workspace) -> None:
    key = secret_key(ws.settings)
    token = mint_link(ws.engine, key, _wang(ws), ws.logistics_action, hours=72)
    user, action_id = consume_link(ws.engine, key, token, spend=False)  # the landing page only looks
    assert (user.name, action_id) == ("wang", ws.logistics_action)
    user, _ = consume_link(ws.engine, key, token)
    assert user.name == "wang"
    with pytest.raises(LinkRefused, match="already used"):
        consume_link(ws.engine, key, token)
    with Session(ws.engine) as s:  # only a keyed hash of the token is stored
        stored = s.exec(select(WebLink)).one()
    assert token.split(".")[0] not in stored.token_hash and stored.used_at is not None


def test_expired_forged_and_foreign_links_are_refused(ws: Workspace) -> None:
    key = secret_key(ws.settings)
    minted = utcnow() - timedelta(hours=73)
    old = mint_link(ws.engine, key, _wang(ws), ws.logistics_action, hours=72, now=minted)
    with pytest.raises(LinkRefused, match="expired"):
        consume_link(ws.engine, key, old)
    good = mint_link(ws.engine, key, _wang(ws), ws.logistics_action, hours=72)
    nonce, signature = good.rsplit(".", 1)
    for forged in (nonce + "." + signature[::-1], nonce[::-1] + "." + signature, "x", ""):
        with pytest.raises(LinkRefused, match="not valid"):
            consume_link(ws.engine, key, forged)
    with pytest.raises(LinkRefused, match="not valid"):  # signed with another key
        consume_link(ws.engine, b"another-key" * 4, good)
    consume_link(ws.engine, key, good)  # none of the attempts spent it


def test_disable_ends_sessions_and_links_reset_re_enables(ws: Workspace) -> None:
    key = secret_key(ws.settings)
    anna = authenticate(ws.engine, "anna", PASSWORD)
    assert anna is not None and authenticate(ws.engine, "anna", "wrong password") is None
    session = new_session(anna)
    token = mint_link(ws.engine, key, anna.id or 0, ws.service_action, hours=72)
    assert session_user(ws.engine, session) is not None
    disable_user(ws.engine, "anna")
    assert session_user(ws.engine, session) is None
    assert authenticate(ws.engine, "anna", PASSWORD) is None
    with pytest.raises(LinkRefused, match="disabled"):
        consume_link(ws.engine, key, token)
    reset = reset_user(ws.engine, "anna", "a brand new password")
    assert session_user(ws.engine, session) is None  # the old session stays ended
    assert reset.active and verify_password(reset.password_hash, "a brand new password")
    assert authenticate(ws.engine, "anna", "a brand new password") is not None
    with Session(ws.engine) as s:
        verbs = [e.verb for e in s.exec(select(AuditEntry)).all()]
    assert {"user_add", "user_disable", "user_reset"} <= set(verbs)


def test_accounts_are_checked(ws: Workspace) -> None:
    with pytest.raises(UserError, match="already exists"):
        add_user(ws.settings, ws.engine, "wang", "head", "logistics")
    with pytest.raises(UserError, match="unknown role"):
        add_user(ws.settings, ws.engine, "x", "boss")
    with pytest.raises(UserError, match="needs --department"):
        add_user(ws.settings, ws.engine, "x", "head")
    with pytest.raises(UserError, match="unknown department 'nowhere'; known: .*logistics"):
        add_user(ws.settings, ws.engine, "x", "head", "nowhere")  # it was told it needs one
    with pytest.raises(UserError, match="leave out --department"):
        add_user(ws.settings, ws.engine, "x", "viewer", "logistics")
    with pytest.raises(UserError, match="no user"):
        disable_user(ws.engine, "nobody")
    with Session(ws.engine) as s:
        hashes = [u for u in s.exec(select(AuditEntry)).all() if PASSWORD in u.detail]
    assert hashes == []  # no password in the audit log


def test_report_cache_rebuilds_only_when_the_period_changes(ws: Workspace) -> None:
    from cxloop.tasks.actions import change_status
    from cxloop.web.views import ReportCache
    from tests.test_actions import add_result

    cache, built = ReportCache(recheck=0), []

    def build() -> int:
        built.append(1)
        return len(built)

    assert [cache.get(ws.engine, "2026-10", None, "en", build) for _ in range(3)] == [1, 1, 1]
    assert cache.get(ws.engine, "2026-10", "logistics", "en", build) == 2  # another page, its own entry
    add_result(ws.engine, "2026-10", "csat", "channel", "web")  # a stage rewrote the period
    assert cache.get(ws.engine, "2026-10", None, "en", build) == 3
    assert cache.get(ws.engine, "2026-09", None, "en", build) == 4
    assert cache.get(ws.engine, "2026-10", None, "en", build, part="dashboard:full") == 5
    assert cache.get(ws.engine, "2026-10", None, "en", build, part="dashboard:full") == 5
    change_status(ws.settings, ws.engine, ws.logistics_action, "acknowledged", by="wang")  # an action moved
    assert cache.get(ws.engine, "2026-10", None, "en", build, part="dashboard:full") == 6
    slow = ReportCache(recheck=3600)  # between re-checks the entry is served without reading the stamp
    assert slow.get(ws.engine, "2026-10", None, "en", build) == 7
    add_result(ws.engine, "2026-10", "csat", "channel", "app")
    assert slow.get(ws.engine, "2026-10", None, "en", build) == 7
