"""The workspace over real HTTP (uvicorn on loopback), on both databases: sign-in, who sees what
(a guessed URL of another department's action is 403), acting through the lifecycle, CSRF,
escaping, cookie flags and the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cxloop.db import session_scope
from cxloop.models import ActionEvent, AuditEntry, QuarantinedRow
from cxloop.tasks.actions import action_detail
from cxloop.web.users import disable_user
from tests.web_setup import HOSTILE, PASSWORD, Workspace, csrf_of, seed, serve


@pytest.fixture
def site(engine: Engine, db_url: str, tmp_path: Path) -> Iterator[tuple[Workspace, str]]:
    ws = seed(engine, db_url, tmp_path)
    with serve(ws.settings, engine) as base:
        yield ws, base


def signed_in(base: str, name: str) -> httpx.Client:
    client = httpx.Client(base_url=base)
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"name": name, "password": PASSWORD, "csrf": token, "next": "/actions"})
    assert r.status_code == 303 and r.headers["location"] == "/actions", r.text[-500:]
    return client


def test_sign_in_access_and_headers(site: tuple[Workspace, str]) -> None:
    ws, base = site
    anon = httpx.Client(base_url=base)
    r = anon.get(f"/actions/{ws.logistics_action}")
    assert r.status_code == 303 and r.headers["location"] == f"/login?next=%2Factions%2F{ws.logistics_action}"
    token = csrf_of(anon.get("/login").text)
    r = anon.post("/login", data={"name": "anna", "password": "wrong password", "csrf": token})
    assert r.status_code == 401 and "wrong user name or password" in r.text

    r = anon.post("/login", data={"name": "anna", "password": PASSWORD, "csrf": token})
    flags = {f.strip().lower() for f in r.headers["set-cookie"].split(";")[1:]}
    assert r.status_code == 303 and {"httponly", "samesite=lax", "path=/"} <= flags
    assert "secure" not in flags  # plain http here; an https base_url makes it Secure
    anna = signed_in(base, "anna")  # head of service
    page = anna.get("/actions")
    assert page.status_code == 200 and f'data-action="{ws.service_action}"' in page.text
    assert f'data-action="{ws.logistics_action}"' not in page.text  # not in her list ...
    assert anna.get(f"/actions/{ws.logistics_action}").status_code == 403  # ... nor by guessing the URL
    assert anna.get("/actions?department=logistics").status_code == 403
    assert anna.get("/departments/logistics").status_code == 403
    assert anna.get("/departments/service").status_code == 200
    assert anna.get("/quality").status_code == 403
    assert anna.get("/actions/99999").status_code == 404
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert page.headers["x-frame-options"] == "DENY"

    viewer = signed_in(base, "viewer")
    r = viewer.get(f"/actions/{ws.logistics_action}")
    assert r.status_code == 200 and 'action="/actions/' not in r.text  # reads, no forms to act
    r = viewer.post(f"/actions/{ws.logistics_action}/move", data={"move": "ack", "csrf": csrf_of(r.text)})
    assert r.status_code == 403
    admin = signed_in(base, "admin")
    assert admin.get("/").status_code == 200 and admin.get("/quality").status_code == 200

    disable_user(ws.engine, "anna")  # signed out at once
    assert anna.get("/actions").status_code == 303


def test_acting_follows_the_lifecycle_and_is_recorded(site: tuple[Workspace, str]) -> None:
    ws, base = site
    anna, aid = signed_in(base, "anna"), ws.service_action
    page = anna.get(f"/actions/{aid}").text
    evidence = action_detail(ws.engine, aid)["action"].evidence[-1]  # shown: value - target
    assert f"<td>{evidence['value'] - evidence['target']:+,.1f}</td>" in page
    token = csrf_of(page)
    r = anna.post(f"/actions/{aid}/move", data={"move": "cancel", "note": "x", "csrf": token})
    assert r.status_code == 403
    r = anna.post(f"/actions/{aid}/move", data={"move": "done", "note": "", "csrf": token})
    assert r.status_code == 400 and "say what was done" in r.text
    r = anna.post(f"/actions/{aid}/move", data={"move": "start", "csrf": token})
    assert r.status_code == 303
    r = anna.post(f"/actions/{aid}/move", data={"move": "ack", "csrf": token})
    assert r.status_code == 409
    assert "cannot move to acknowledged (allowed: cancelled, done, escalated, verified)" in r.text
    r = anna.post(f"/actions/{aid}/note", data={"note": "called the team", "link": "javascript:alert(1)",
                                                "csrf": token})
    assert r.status_code == 400 and "http:// or https://" in r.text
    r = anna.post(f"/actions/{aid}/note", data={"note": HOSTILE, "link": "https://wiki.example/fix?a=1&b=2",
                                                "csrf": token})
    assert r.status_code == 303
    r = anna.post(f"/actions/{aid}/move", data={"move": "done", "note": "retrained the hotline",
                                                "csrf": token})
    assert r.status_code == 303
    page = anna.get(f"/actions/{aid}").text
    assert HOSTILE not in page and "&lt;script&gt;document.title=" in page  # a user's note is text
    assert 'href="https://wiki.example/fix?a=1&amp;b=2"' in page
    detail = action_detail(ws.engine, aid)
    assert detail["action"].status == "done"
    moves = [(e.by, e.to_status, e.note) for e in detail["events"] if e.by == "anna"]
    assert moves == [("anna", "in_progress", ""), ("anna", None, HOSTILE),
                     ("anna", "done", "retrained the hotline")]
    with Session(ws.engine) as s:
        audit = [(e.actor, e.verb, e.target) for e in s.exec(select(AuditEntry)).all() if e.actor == "anna"]
    assert audit == [("anna", "sign_in", "password"), ("anna", "start", f"action:{aid}"),
                     ("anna", "evidence", f"action:{aid}"), ("anna", "done", f"action:{aid}")]

    admin = signed_in(base, "admin")
    token = csrf_of(admin.get(f"/actions/{ws.logistics_action}").text)
    r = admin.post(f"/actions/{ws.logistics_action}/assign", data={"department": "service", "note": "hotline",
                                                                   "csrf": token})
    assert r.status_code == 303
    assert action_detail(ws.engine, ws.logistics_action)["action"].department == "service"
    assert anna.get(f"/actions/{ws.logistics_action}").status_code == 200  # now hers
    assert anna.post(f"/actions/{ws.logistics_action}/assign",
                     data={"department": "logistics", "csrf": token}).status_code == 403


def test_every_form_needs_the_csrf_token(site: tuple[Workspace, str]) -> None:
    ws, base = site
    anna, aid = signed_in(base, "anna"), ws.service_action
    good = csrf_of(anna.get(f"/actions/{aid}").text)
    other = csrf_of(httpx.Client(base_url=base).get("/login").text)  # another browser's token
    for path, data in ((f"/actions/{aid}/move", {"move": "ack"}), (f"/actions/{aid}/note", {"note": "n"}),
                       (f"/actions/{aid}/assign", {"department": "logistics"}), ("/logout", {})):
        for token in (None, "", other, good[:-1]):
            sent = data if token is None else {**data, "csrf": token}
            r = anna.post(path, data=sent)
            assert r.status_code == 403 and "did not come from this site" in r.text, (path, token)
    with Session(ws.engine) as s:
        assert [e for e in s.exec(select(ActionEvent)).all() if e.by == "anna"] == []
    assert anna.post(f"/actions/{aid}/move", data={"move": "ack", "csrf": good}).status_code == 303


def test_customer_comments_are_text_and_lists_filter(site: tuple[Workspace, str]) -> None:
    ws, base = site
    admin = signed_in(base, "admin")
    for path in (f"/actions/{ws.logistics_action}", "/departments/logistics?period=2026-10"):
        page = admin.get(path)
        assert page.status_code == 200
        assert "<script>document.title" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;document.title" in admin.get(f"/actions/{ws.logistics_action}").text
    rows = admin.get("/actions?kpi=csat").text
    assert f'data-action="{ws.service_action}"' in rows and f'data-action="{ws.logistics_action}"' not in rows
    rows = admin.get("/actions?status=closed").text
    assert "data-action=" not in rows
    assert admin.get("/actions?status=bogus").status_code == 400
    assert admin.get("/?period=2026-13").status_code == 400
    dashboard = admin.get("/?period=2026-10").text
    assert 'id="headline"' in dashboard and 'id="scorecard"' in dashboard
    # the report sections are rendered once per kind of reader, never handed to another kind
    for _ in range(2):
        head = signed_in(base, "anna").get("/?period=2026-10").text
        assert 'id="headline"' in head and 'id="scorecard"' not in head
        assert 'href="/departments/service?period=2026-10"' in head and "/departments/logistics" not in head
        again = admin.get("/?period=2026-10").text
        assert 'id="scorecard"' in again and 'href="/departments/logistics?period=2026-10"' in again


def test_data_owners_see_quarantine_with_reasons(site: tuple[Workspace, str]) -> None:
    ws, base = site
    with session_scope(ws.engine) as s:
        s.add(QuarantinedRow(period="2026-10", source="survey", row_key="r9", response_id="r9",
                             raw={"comment": HOSTILE}, reasons=[{"message": f"nps out of range: {HOSTILE}"}]))
    admin = signed_in(base, "admin")
    page = admin.get("/quality?period=2026-10")
    assert page.status_code == 200 and "nps out of range" in page.text and "r9" in page.text
    assert "<script>document.title" not in page.text
    r = admin.post("/quality/readmit", data={"period": "2026-10"})  # no CSRF token
    assert r.status_code == 403
    with Session(ws.engine) as s:
        assert s.exec(select(QuarantinedRow)).one().readmitted_at is None
