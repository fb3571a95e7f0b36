"""Issue 18 in a real browser (headless Chromium from apt, driven by Playwright with the system
executable), on SQLite and PostgreSQL: a head follows the link from a delivered notice,
acknowledges, adds a note, marks the action done, and `cxloop actions show` then shows it; the
head of another department gets 403; a reused, forged or expired link is refused; a POST without
the CSRF token is refused; a `<script>` someone wrote is shown as text; the next notice carries
the note. An admin readmits a corrected quarantined row on the quality page. A head works a
follow-up case (issue 19): sees the customer's phone, marks the case contacted and resolves it;
another head gets 403 and a viewer sees the phone masked."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from cxloop.config import load_settings
from cxloop.db import session_scope
from cxloop.models import AuditEntry, Feedback, QuarantinedRow, utcnow
from cxloop.tasks.notify import build_notices, deliver, queue_notices
from cxloop.web.auth import mint_link, secret_key
from cxloop.web.users import add_user, head_account
from tests.cli import cxloop
from tests.receivers import SmtpReceiver
from tests.test_quarantine_cli import _setup
from tests.test_validate import PERIOD
from tests.web_setup import (
    CASES_OPENED,
    HOSTILE,
    PASSWORD,
    PHONE,
    csrf_of,
    free_port,
    seed,
    seed_cases,
    serve,
)

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
# In CI a missing browser is a failure, not a skip: `.ci/run` installs Debian's chromium.
pytestmark = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                reason="Chromium not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (starting one costs about a second)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


def test_a_head_acts_from_the_notice_link(browser: Any, engine: Engine, db_url: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with SmtpReceiver() as smtp:
        ws = seed(engine, db_url, tmp_path, base_url=base, notify=[smtp.url(to="wang@example.com")])
        queue_notices(ws.settings, engine, "2026-10", held=False)
        assert deliver(ws.settings, engine, "2026-10").failed == 0
        [mail] = smtp.messages
    aid = ws.logistics_action
    link = re.search(rf'href="({re.escape(base)}/link/[^"]+)"', mail.html)
    assert link, "the notice carries a sign-in link"
    url = link.group(1)

    with serve(ws.settings, engine, port):
        head = browser.new_context()
        page = head.new_page()
        page.goto(url)
        page.click("#ack")  # one click from the notice
        page.wait_for_url(f"{base}/actions/{aid}?done=ack")
        assert page.get_attribute("#status", "data-status") == "acknowledged"
        page.fill("#note", HOSTILE)
        page.fill("#link", "https://wiki.example/courier-routing")
        page.click("#add-note")
        page.wait_for_url(f"{base}/actions/{aid}?done=note")
        page.fill("#note-done", "rerouted the courier in the east")
        page.click("#do-done")
        page.wait_for_url(f"{base}/actions/{aid}?done=done")
        assert page.get_attribute("#status", "data-status") == "done"
        history = page.inner_text("#history")
        assert HOSTILE in history and "rerouted the courier in the east" in history  # shown as text
        assert page.title() != "pwned" and page.locator("#history img").count() == 0
        assert page.locator("#history a[href='https://wiki.example/courier-routing']").count() == 1

        # a POST without the CSRF token, from the signed-in browser itself, is refused
        r = page.request.post(f"{base}/actions/{aid}/note", form={"note": "forged"})
        assert r.status == 403

        # the head of another department gets 403 on this action
        other = browser.new_context()
        anna = other.new_page()
        anna.goto(f"{base}/login")
        anna.fill("#name", "anna")
        anna.fill("#password", PASSWORD)
        anna.click("button[type=submit]")
        anna.wait_for_url(f"{base}/")
        assert anna.goto(f"{base}/actions/{aid}").status == 403

        # a reused, a forged and an expired link are refused
        stranger = browser.new_context().new_page()
        key, wang = secret_key(ws.settings), head_account(engine, "logistics")
        assert wang is not None and wang.id is not None
        expired = mint_link(engine, key, wang.id, aid, 72, now=utcnow() - timedelta(hours=80))
        for bad, why in ((url, "already used"), (url[:-3] + "abc", "not valid"),
                         (f"{base}/link/{expired}", "expired")):
            response = stranger.goto(bad)
            assert response.status == 403 and why in stranger.inner_text("#error"), bad
        assert stranger.goto(f"{base}/actions/{aid}").url.startswith(f"{base}/login")

    code, out, _ = cxloop(capsys, monkeypatch, ws.config, "actions", "show", str(aid), "--format", "json")
    shown = json.loads(out)
    assert code == 0 and shown["action"]["status"] == "done"
    assert [(e["by"], e["to_status"]) for e in shown["events"] if e["by"] == "wang"] == [
        ("wang", "acknowledged"), ("wang", None), ("wang", "done")]
    # the next notice says what the head wrote (escaped for its medium)
    [digest] = [d for d in build_notices(ws.settings, engine, "2026-11", held=False, mint_links=False)
                if d.recipient == "logistics"]
    assert "courier-routing" in digest.body_text and "&lt;script&gt;" in digest.body_html
    assert "<script>" not in digest.body_html and f"{base}/actions/{aid}" in digest.body_text


def test_an_admin_readmits_a_corrected_row(browser: Any, engine: Engine, db_url: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The data owner's path end to end: the row fixed at the source, "re-check and readmit" on the
    quality page, and `cxloop quarantine` agrees; a non-admin gets 403 on the page and the form."""
    config = _setup(engine, db_url, tmp_path)  # r7, r8 and a collect row quarantined in PERIOD
    with config.open("a", encoding="utf-8") as fh:
        fh.write('\n[web]\nsecret_key = "test-secret-key-that-is-long-enough-0123456789"\n')
    settings = load_settings(config, env={})
    add_user(settings, engine, "admin", "admin", password=PASSWORD)
    add_user(settings, engine, "viewer", "viewer", password=PASSWORD)
    with session_scope(engine) as s:  # r8 corrected at the source
        s.execute(update(Feedback).where(col(Feedback.response_id) == "r8").values(csat=3))

    with serve(settings, engine) as base:
        page = browser.new_context().new_page()
        page.goto(f"{base}/login?next=/quality%3Fperiod%3D{PERIOD}")
        page.fill("#name", "admin")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/quality?period={PERIOD}")
        assert "r8" in page.inner_text("#quarantine")
        page.click("#readmit")
        page.wait_for_url(f"{base}/quality?period={PERIOD}&readmitted=1")
        rows = page.inner_text("#quarantine tbody")
        assert "r8" not in rows and "r7" in rows and "web.csv:12" in rows

        viewer = httpx.Client(base_url=base)
        token = csrf_of(viewer.get("/login").text)
        viewer.post("/login", data={"name": "viewer", "password": PASSWORD, "csrf": token})
        assert viewer.get(f"/quality?period={PERIOD}").status_code == 403
        token = csrf_of(viewer.get("/").text)
        assert viewer.post("/quality/readmit", data={"period": PERIOD, "csrf": token}).status_code == 403

    code, out, _ = cxloop(capsys, monkeypatch, config, "quarantine", "list", "--period", PERIOD,
                          "--format", "json")
    assert code == 0 and {r["row_key"] for r in json.loads(out)} == {"r7", "web.csv:12"}
    with Session(engine) as s:
        r8 = s.exec(select(QuarantinedRow).where(QuarantinedRow.row_key == "r8")).one()
        [entry] = s.exec(select(AuditEntry).where(AuditEntry.verb == "readmit")).all()
    assert r8.readmitted_at is not None and entry.actor == "admin" and "readmitted=1" in entry.detail


def _sign_in(browser: Any, base: str, name: str, target: str) -> Any:
    page = browser.new_context().new_page()
    page.goto(f"{base}/login?next={target}")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{target}")
    return page


def test_a_head_works_a_follow_up_case(browser: Any, engine: Engine, db_url: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ws = seed(engine, db_url, tmp_path)
    cid = seed_cases(ws).logistics
    with serve(ws.settings, engine, clock=lambda: CASES_OPENED) as base:
        page = _sign_in(browser, base, "wang", "/cases")  # head of logistics
        page.click(f"#cases a[href='/cases/{cid}']")
        page.wait_for_url(f"{base}/cases/{cid}")
        assert page.inner_text("#contact-phone") == PHONE
        page.fill("#note-contacted", "called, the parcel is at the depot")
        page.click("#do-contacted")
        page.wait_for_url(f"{base}/cases/{cid}?done=contacted")
        assert page.get_attribute("#status", "data-status") == "contacted"
        page.fill("#note-resolved", "re-delivered today, customer satisfied")
        page.click("#do-resolved")
        page.wait_for_url(f"{base}/cases/{cid}?done=resolved")
        assert page.get_attribute("#status", "data-status") == "resolved"
        # the customer's comment is text: no script ran, no element was made
        assert "<script>document.title='pwned'</script>" in page.inner_text("#responses")
        assert page.title() != "pwned" and page.locator("#responses img").count() == 0

        other = _sign_in(browser, base, "anna", "/cases")  # head of service
        assert other.goto(f"{base}/cases/{cid}").status == 403

        viewer = _sign_in(browser, base, "viewer", "/cases")
        assert viewer.goto(f"{base}/cases/{cid}").status == 200
        assert viewer.inner_text("#contact-phone") == "[hidden]" and PHONE not in viewer.content()
        assert viewer.locator("#act").count() == 0

    code, out, _ = cxloop(capsys, monkeypatch, ws.config, "cases", "show", str(cid), "--as", "logistics")
    shown = json.loads(out)
    assert code == 0 and shown["case"]["status"] == "resolved"
    assert [(e["by"], e["to"], e["note"]) for e in shown["events"] if e["by"] == "wang"] == [
        ("wang", "contacted", "called, the parcel is at the depot"),
        ("wang", "resolved", "re-delivered today, customer satisfied")]
