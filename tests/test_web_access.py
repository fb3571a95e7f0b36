"""Who may see and do what (web/access.py), and the pure parts of signing in: session cookies,
CSRF tokens, redirect targets. No database, no server."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from cxloop.web import access
from cxloop.web.auth import csrf_ok, csrf_token, dump_session, load_session, new_session
from cxloop.web.routes_auth import safe_next

KEY = b"k" * 40


@dataclass
class U:
    role: str
    department: str | None = None
    id: int | None = 1
    session_version: int = 1


@dataclass
class A:
    department: str
    status: str = "open"


ADMIN, VIEWER = U("admin"), U("viewer")
HEAD, MEMBER, OTHER = U("head", "logistics"), U("member", "logistics"), U("head", "service")


def test_a_department_sees_only_its_own_actions_admins_and_viewers_all() -> None:
    mine = A("logistics")
    assert access.can_see_action(HEAD, mine) and access.can_see_action(MEMBER, mine)
    assert not access.can_see_action(OTHER, mine)
    assert access.can_see_action(ADMIN, mine) and access.can_see_action(VIEWER, mine)
    assert access.department_filter(HEAD) == "logistics" and access.department_filter(ADMIN) is None
    # a head without a department (a broken account) sees no department at all, not every one
    assert access.department_filter(U("head", None)) not in (None, "", "logistics")
    assert not access.can_see_department(U("head", None), "logistics")


def test_moves_follow_role_and_lifecycle() -> None:
    assert access.moves_for(HEAD, A("logistics", "open")) == ["ack", "start", "done"]
    assert access.moves_for(HEAD, A("logistics", "acknowledged")) == ["start", "done"]
    assert access.moves_for(HEAD, A("logistics", "in_progress")) == ["done"]
    assert access.moves_for(HEAD, A("logistics", "cancelled")) == []
    assert access.moves_for(ADMIN, A("logistics", "open")) == ["ack", "start", "done", "cancel"]
    assert access.moves_for(OTHER, A("logistics", "open")) == []
    assert access.moves_for(VIEWER, A("logistics", "open")) == []
    assert access.may_move(HEAD, A("logistics"), "ack")
    assert not access.may_move(HEAD, A("logistics"), "cancel")
    assert not access.may_move(VIEWER, A("logistics"), "ack")


@pytest.mark.parametrize("user, note, assign, quality", [
    (ADMIN, True, True, True), (HEAD, True, False, False), (MEMBER, True, False, False),
    (OTHER, False, False, False), (VIEWER, False, False, False)])
def test_notes_reassign_and_quality(user: U, note: bool, assign: bool, quality: bool) -> None:
    assert access.can_work_on(user, A("logistics")) is note
    assert access.can_assign(user) is assign
    assert access.can_handle_quality(user) is quality


def test_cases_follow_the_department_and_contacts_only_the_owner_and_admins() -> None:
    mine, theirs = A("logistics", "new"), A("service", "new")
    for user, see, work, contact in ((ADMIN, True, True, True), (HEAD, True, True, True),
                                     (MEMBER, True, True, True), (OTHER, False, False, False),
                                     (VIEWER, True, False, False), (U("head", None), False, False, False),
                                     (U("member", "logistics"), True, True, True)):
        assert access.can_see_case(user, mine) is see, user
        assert access.can_work_on_case(user, mine) is work, user
        assert access.can_see_contact(user, mine) is contact, user
    assert not access.can_see_contact(HEAD, theirs) and not access.can_work_on_case(MEMBER, theirs)
    assert access.can_see_contact(ADMIN, theirs) and not access.can_see_contact(VIEWER, theirs)
    # asked of the role: the head of a department that happens to be called "admin" is no admin
    assert not access.can_see_contact(U("head", "admin"), mine)
    assert not access.can_see_contact(U("viewer", "logistics"), mine)  # a viewer with a stray department


def test_case_moves_follow_role_and_case_lifecycle() -> None:
    assert access.case_moves_for(HEAD, A("logistics", "new")) == ["contacted", "unreachable", "declined"]
    assert access.case_moves_for(MEMBER, A("logistics", "contacted")) == [
        "resolved", "unreachable", "declined"]
    assert access.case_moves_for(ADMIN, A("service", "new")) == ["contacted", "unreachable", "declined"]
    for closed in ("resolved", "unreachable", "declined"):
        assert access.case_moves_for(ADMIN, A("logistics", closed)) == []
    assert access.case_moves_for(VIEWER, A("logistics", "new")) == []
    assert access.case_moves_for(OTHER, A("logistics", "new")) == []


def test_session_cookie_round_trip_and_forgery() -> None:
    data = new_session(U("head", "logistics", id=7, session_version=3))  # type: ignore[arg-type]
    cookie = dump_session(KEY, data)
    assert load_session(KEY, cookie, 3600) == data
    assert load_session(b"x" * 40, cookie, 3600) is None  # another key
    assert load_session(KEY, cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1], 3600) is None
    assert load_session(KEY, "garbage", 3600) is None and load_session(KEY, None, 3600) is None
    assert load_session(KEY, cookie, -1) is None  # too old


def test_csrf_token_is_bound_to_the_session() -> None:
    one, two = new_session(), new_session()
    assert csrf_ok(KEY, one, csrf_token(KEY, one))
    assert not csrf_ok(KEY, two, csrf_token(KEY, one))
    assert not csrf_ok(KEY, one, None) and not csrf_ok(KEY, one, "") and not csrf_ok(KEY, None, "x")
    assert not csrf_ok(b"y" * 40, one, csrf_token(KEY, one))


@pytest.mark.parametrize("target, expected", [
    ("/actions/3", "/actions/3"), ("//evil.example/x", "/"), ("https://evil.example", "/"),
    ("/\\evil.example", "/"), (None, "/"), ("", "/"), ("actions", "/")])
def test_only_local_redirects(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_cookies_are_secure_behind_tls_and_web_config_is_checked(tmp_path: Path) -> None:
    from starlette.responses import Response

    from cxloop.config import ConfigError, settings_from_dict
    from cxloop.web.app import Web

    for base, secure in (("https://cx.example.com", True), ("http://127.0.0.1:8000", False)):
        settings = settings_from_dict({"web": {"base_url": base}}, tmp_path, env={})
        web = Web(settings, None, KEY)  # type: ignore[arg-type]  # cookies need no database
        response = Response()
        web.set_session(response, new_session())
        flags = {f.strip().lower() for f in response.headers["set-cookie"].split(";")[1:]}
        assert {"httponly", "samesite=lax"} <= flags and ("secure" in flags) is secure
    for bad, key in (({"base_url": "javascript:alert(1)"}, "web.base_url"),
                     ({"base_url": "https://x.example/\"><script>"}, "web.base_url"),
                     ({"secret_key": "short"}, "web.secret_key"), ({"link_hours": 0}, "web.link_hours"),
                     ({"link_mail": "slack://team/channel"}, "web.link_mail"),
                     ({"link_mail": "mailto://relay.example?to=all@example.com"}, "web.link_mail"),
                     ({"login_attempts": 0}, "web.login_attempts")):
        with pytest.raises(ConfigError, match=re.escape(key)):
            settings_from_dict({"web": bad}, tmp_path, env={})


def test_pages_speak_zh_and_en() -> None:
    from types import SimpleNamespace

    from cxloop.tasks.rendering import render

    user = SimpleNamespace(display_name="王丽", name="wang", role="head", department="logistics")
    common: dict[str, object] = dict(user=None, csrf="x", project="p", departments={}, request_path="/link/t",
                                     token="t", link_user=user, action=SimpleNamespace(id=3), can_ack=True)
    zh, en = render("web/link.html", "zh", **common), render("web/link.html", "en", **common)
    assert "确认改进行动 #3" in zh and "欢迎，王丽" in zh
    assert "Acknowledge action #3" in en and "Welcome, 王丽" in en
