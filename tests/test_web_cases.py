"""Follow-up cases in the workspace (issue 19, item 4) over real HTTP (uvicorn on loopback), on
both databases: who sees which case and its contact details (a guessed URL of another
department's case is 403, a viewer sees the contacts masked and cannot act), working a case
through the lifecycle with its history and the audit log, CSRF, escaping, and the SLA marks
counted on the app's clock (never today's date)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cxloop.models import AuditEntry, CaseEvent, FollowupCase
from tests.web_setup import (
    CASES_OPENED,
    HOSTILE,
    OTHER_PHONE,
    PASSWORD,
    PHONE,
    Cases,
    Workspace,
    csrf_of,
    seed,
    seed_cases,
    serve,
)

LATE = datetime(2026, 10, 30, 2, 0, tzinfo=UTC)  # after every deadline of the seeded cases


@pytest.fixture
def site(engine: Engine, db_url: str, tmp_path: Path) -> Iterator[tuple[Workspace, Cases, str]]:
    ws = seed(engine, db_url, tmp_path)
    cases = seed_cases(ws)
    with serve(ws.settings, engine, clock=lambda: CASES_OPENED) as base:
        yield ws, cases, base


def signed_in(base: str, name: str) -> httpx.Client:
    client = httpx.Client(base_url=base)
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"name": name, "password": PASSWORD, "csrf": token, "next": "/cases"})
    assert r.status_code == 303 and r.headers["location"] == "/cases", r.text[-500:]
    return client


def listed(client: httpx.Client, query: str = "") -> set[int]:
    r = client.get(f"/cases{query}")
    assert r.status_code == 200, r.text[-300:]
    return {int(i) for i in re.findall(r'data-case="(\d+)"', r.text)}


def test_who_sees_which_case_and_its_contact_details(site: tuple[Workspace, Cases, str]) -> None:
    ws, cases, base = site
    anon = httpx.Client(base_url=base)
    r = anon.get(f"/cases/{cases.logistics}")
    assert r.status_code == 303 and r.headers["location"] == f"/login?next=%2Fcases%2F{cases.logistics}"

    wang = signed_in(base, "wang")  # head of logistics
    assert listed(wang) == {cases.logistics}  # default: his department's open cases
    assert listed(wang, "?status=closed") == {cases.closed}
    assert listed(wang, "?status=") == {cases.logistics, cases.closed}
    assert wang.get("/cases?department=service").status_code == 403
    assert wang.get(f"/cases/{cases.service}").status_code == 403  # a guessed URL
    assert wang.get("/cases/99999").status_code == 404
    assert wang.get("/cases?status=bogus").status_code == 400
    page = wang.get(f"/cases/{cases.logistics}").text
    assert 'href="/cases"' in page  # the nav link
    assert PHONE in page and "zs@example.com" in page and "张三" in page
    assert f'action="/cases/{cases.logistics}/move"' in page
    # a customer's comment is text, never markup
    assert "<script>document.title" not in page and "<img src=x" not in page
    assert "&lt;script&gt;document.title" in page
    lee = signed_in(base, "lee")  # a member of logistics works the case too
    assert PHONE in lee.get(f"/cases/{cases.logistics}").text

    anna = signed_in(base, "anna")  # head of service
    assert listed(anna) == {cases.service}
    assert anna.get(f"/cases/{cases.logistics}").status_code == 403
    assert OTHER_PHONE in anna.get(f"/cases/{cases.service}").text

    admin = signed_in(base, "admin")
    assert listed(admin) == {cases.logistics, cases.service}
    assert listed(admin, "?department=service") == {cases.service}
    assert OTHER_PHONE in admin.get(f"/cases/{cases.service}").text
    assert PHONE in admin.get(f"/cases/{cases.logistics}").text

    viewer = signed_in(base, "viewer")
    assert listed(viewer) == {cases.logistics, cases.service}
    r = viewer.get(f"/cases/{cases.logistics}")
    assert r.status_code == 200 and PHONE not in r.text and "zs@example.com" not in r.text
    assert "张三" not in r.text and r.text.count("[hidden]") == 3
    assert 'action="/cases/' not in r.text  # reads, no forms to act
    token = csrf_of(r.text)
    for path, data in (("move", {"to": "contacted", "note": "x"}), ("note", {"note": "x"}),
                       ("root-cause", {"root_cause": "delivery"})):
        r = viewer.post(f"/cases/{cases.logistics}/{path}", data={**data, "csrf": token})
        assert r.status_code == 403
    token = csrf_of(anna.get(f"/cases/{cases.service}").text)
    assert anna.post(f"/cases/{cases.logistics}/move",  # another department's case, by POST
                     data={"to": "contacted", "csrf": token}).status_code == 403
    with Session(ws.engine) as s:
        assert s.exec(select(CaseEvent).where(col(CaseEvent.by).in_(["viewer", "anna"]))).all() == []


def test_working_a_case_follows_the_lifecycle_and_is_recorded(site: tuple[Workspace, Cases, str]) -> None:
    ws, cases, base = site
    wang, cid = signed_in(base, "wang"), cases.logistics
    token = csrf_of(wang.get(f"/cases/{cid}").text)

    def post(path: str, **data: str) -> httpx.Response:
        return wang.post(f"/cases/{cid}/{path}", data={**data, "csrf": token})

    r = post("move", to="resolved", note="sorted")
    assert r.status_code == 409
    assert f"case {cid} is new: cannot move to resolved (allowed: contacted, declined, unreachable)" in r.text
    assert post("move", to="bogus").status_code == 400
    r = post("move", to="contacted", note=f"called, parcel found {HOSTILE}")
    assert r.status_code == 303 and r.headers["location"] == f"/cases/{cid}?done=contacted"
    assert post("move", to="contacted").status_code == 409  # a form sent twice moves nothing twice
    r = post("move", to="resolved", note="  ")
    assert r.status_code == 400 and "needs a note" in r.text
    assert post("note", note="").status_code == 400
    assert post("note", note="will call again on Monday").status_code == 303
    r = post("root-cause", root_cause="no-such-topic")
    assert r.status_code == 400 and "unknown root cause" in r.text
    assert post("root-cause", root_cause="delivery").status_code == 303
    assert post("root-cause", root_cause="delivery").status_code == 303  # the same again: nothing new
    assert post("move", to="resolved", note="re-delivered, customer satisfied").status_code == 303

    page = wang.get(f"/cases/{cid}").text
    assert 'data-status="resolved"' in page and 'id="move-' not in page  # closed: no moves left
    assert "&lt;script&gt;document.title" in page and "<script>document.title" not in page
    with Session(ws.engine) as s:
        case = s.get(FollowupCase, cid)
        assert case is not None and case.status == "resolved" and case.root_cause == "delivery"
        assert case.contacted_at is not None and case.closed_at is not None
        events = [(e.by, e.from_status, e.to_status) for e in s.exec(
            select(CaseEvent).where(CaseEvent.case_id == cid).order_by(col(CaseEvent.id))).all()]
        audit = [(e.actor, e.verb, e.target, e.detail) for e in s.exec(
            select(AuditEntry).where(AuditEntry.actor == "wang").order_by(col(AuditEntry.id))).all()]
    assert events == [("cxloop", None, "new"), ("wang", "new", "contacted"), ("wang", None, None),
                      ("wang", None, None), ("wang", "contacted", "resolved")]
    assert audit == [("wang", "sign_in", "password", ""),
                     ("wang", "contacted", f"case:{cid}", "new -> contacted"),
                     ("wang", "note", f"case:{cid}", ""),
                     ("wang", "root_cause", f"case:{cid}", "- -> delivery"),
                     ("wang", "resolved", f"case:{cid}", "contacted -> resolved")]
    # the admin works any department's case
    admin = signed_in(base, "admin")
    token = csrf_of(admin.get(f"/cases/{cases.service}").text)
    r = admin.post(f"/cases/{cases.service}/move", data={"to": "declined", "note": "does not want a call",
                                                          "csrf": token})
    assert r.status_code == 303


def test_every_case_form_needs_the_csrf_token(site: tuple[Workspace, Cases, str]) -> None:
    ws, cases, base = site
    wang, cid = signed_in(base, "wang"), cases.logistics
    good = csrf_of(wang.get(f"/cases/{cid}").text)
    other = csrf_of(httpx.Client(base_url=base).get("/login").text)  # another browser's token
    for path, data in (("move", {"to": "contacted"}), ("note", {"note": "n"}),
                       ("root-cause", {"root_cause": "delivery"})):
        for token in (None, "", other, good[:-1]):
            sent = data if token is None else {**data, "csrf": token}
            r = wang.post(f"/cases/{cid}/{path}", data=sent)
            assert r.status_code == 403 and "did not come from this site" in r.text, (path, token)
    with Session(ws.engine) as s:
        assert s.exec(select(CaseEvent).where(CaseEvent.by == "wang")).all() == []


def test_breached_deadlines_are_marked_and_filtered(engine: Engine, db_url: str, tmp_path: Path) -> None:
    ws = seed(engine, db_url, tmp_path)
    cases = seed_cases(ws)
    for now, breached in ((CASES_OPENED, set()), (LATE, {cases.logistics, cases.service})):
        with serve(ws.settings, engine, clock=lambda now=now: now) as base:  # type: ignore[misc]
            admin = signed_in(base, "admin")
            # the case closed as unreachable before its deadlines missed none of them
            assert listed(admin, "?status=&breached=1") == breached
            page = admin.get(f"/cases/{cases.logistics}").text
            assert ('id="contact-due" class="breached"' in page) is bool(breached)
            assert 'id="contact-due" class="breached"' not in admin.get(f"/cases/{cases.closed}").text


def test_case_pages_speak_zh_and_en() -> None:
    from types import SimpleNamespace

    from cxloop.tasks.rendering import render
    from cxloop.web.case_views import CaseFilters

    user = SimpleNamespace(display_name="王丽", name="wang", role="head", department="logistics")
    common: dict[str, object] = dict(user=user, csrf="x", project="p", departments={}, request_path="/cases",
                                     filters=CaseFilters(), total=0, page_size=50, rows=[],
                                     statuses=[("open", "Open (new or contacted)"), ("resolved", "Resolved")],
                                     may_filter_departments=False, timezone="Asia/Shanghai")
    zh, en = render("web/cases.html", "zh", **common), render("web/cases.html", "en", **common)
    assert "客户回访个案" in zh and "未结案（新建或已联系）" in zh and "已解决" in zh and "仅看超时个案" in zh
    assert "Follow-up cases" in en and "Open (new or contacted)" in en and "SLA breached only" in en
