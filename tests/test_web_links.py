"""Notice links are minted when the notice is sent, never stored (issue 18, on both databases):
the outbox row and the log carry only a placeholder, the delivered mail a working single-use link,
each retry a fresh one; a preview and a dry run carry plain page addresses; a placeholder made for
another recipient, or naming a disabled account, never becomes a link. `cxloop users link` e-mails
any active account its own link the same way."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cxloop.config import load_settings
from cxloop.models import AuditEntry, OutboxMessage, WebLink
from cxloop.tasks.notify import build_notices, deliver, queue_notices
from cxloop.web.auth import consume_link, secret_key
from cxloop.web.links import placeholder_url, resolve_links
from cxloop.web.users import add_user, disable_user, head_account, list_users
from tests.cli import cxloop
from tests.receivers import SmtpReceiver, free_port
from tests.web_setup import csrf_of, seed, serve

BASE = "http://cx.example.test"
TOKEN = re.compile(r"/link/([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)")


def _tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


def test_the_outbox_and_the_log_hold_no_token(engine: Engine, db_url: str, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with SmtpReceiver() as smtp:
        ws = seed(engine, db_url, tmp_path, base_url=BASE, notify=[smtp.url(to="wang@example.com")])
        queue_notices(ws.settings, engine, "2026-10", held=False)
        assert deliver(ws.settings, engine, "2026-10").sent == 1
        [mail] = smtp.messages
    with Session(engine) as s:
        stored = s.exec(select(OutboxMessage).where(OutboxMessage.recipient == "logistics")).one()
        links = s.exec(select(WebLink)).all()
    assert stored.status == "sent" and "/link/mint-" in stored.body_html + stored.body_text
    assert not _tokens(stored.body_html + stored.body_text + (stored.last_error or ""))
    assert "/link/mint-" in stored.body_text
    sender_log = "\n".join(r.getMessage() for r in caplog.records
                            if not r.name.startswith("mail.log"))  # mail.log: the receiver's own
    assert "Sent Email to wang@example.com" in sender_log and not _tokens(sender_log)
    # the mail carries one link for the action, the same in its HTML and its text, and it works
    sent = set(_tokens(mail.html)) | set(_tokens(mail.text))
    assert len(sent) == 1 and len(links) == 1 and "/link/mint-" not in mail.html + mail.text
    user, action = consume_link(engine, secret_key(ws.settings), sent.pop())
    assert (user.name, action) == ("wang", ws.logistics_action)


def test_a_retry_mints_a_fresh_link(engine: Engine, db_url: str, tmp_path: Path) -> None:
    port = free_port()
    down = SmtpReceiver(port=port)  # not started: the first send fails
    ws = seed(engine, db_url, tmp_path, base_url=BASE, notify=[down.url(to="wang@example.com")])
    queue_notices(ws.settings, engine, "2026-10", held=False)
    assert deliver(ws.settings, engine, "2026-10", retry_delay=0).failed == 1
    with Session(engine) as s:
        tried = len(s.exec(select(WebLink)).all())
    assert tried >= 1  # minted for the attempt, never stored in clear, expires unused
    with SmtpReceiver(port=port) as smtp:
        assert deliver(ws.settings, engine, "2026-10", force=True).sent == 1
        [mail] = smtp.messages
    [token] = set(_tokens(mail.html))
    with Session(engine) as s:
        assert len(s.exec(select(WebLink)).all()) == tried + 1
    assert consume_link(engine, secret_key(ws.settings), token)[0].name == "wang"


def test_preview_and_dry_run_carry_page_addresses(engine: Engine, db_url: str, tmp_path: Path) -> None:
    ws = seed(engine, db_url, tmp_path, base_url=BASE, notify=["json://127.0.0.1:9/hook"])
    [preview] = [d for d in build_notices(ws.settings, engine, "2026-10", held=False, mint_links=False)
                 if d.recipient == "logistics"]
    aid = ws.logistics_action
    assert f"{BASE}/actions/{aid}" in preview.body_text and "/link/" not in preview.body_html
    queue_notices(ws.settings, engine, "2026-10", held=False)
    summary = deliver(ws.settings, engine, "2026-10", dry_run_dir=tmp_path / "dry")
    written = "".join(p.read_text(encoding="utf-8") for p in summary.files)
    assert f"{BASE}/actions/{aid}" in written and "/link/" not in written
    with Session(engine) as s:
        assert not s.exec(select(WebLink)).all()


def test_a_placeholder_only_mints_in_its_own_message(engine: Engine, db_url: str, tmp_path: Path) -> None:
    ws = seed(engine, db_url, tmp_path, base_url=BASE)
    admin = next(u for u in list_users(engine) if u.role == "admin")
    wang = head_account(engine, "logistics")
    assert admin.id and wang and wang.id
    # a customer's comment quoting an admin's placeholder (made for another recipient) and a
    # placeholder with a made-up signature: neither signs anyone in
    foreign = placeholder_url(ws.settings, "service", admin.id, None)
    made_up = f"{BASE}/link/mint-{admin.id}-0-{'0' * 32}"
    own = placeholder_url(ws.settings, "logistics", wang.id, ws.logistics_action)
    [out] = resolve_links(ws.settings, engine, "logistics", [f"{foreign} {made_up} {own}"])
    tokens = _tokens(out)
    assert out.startswith(f"{BASE}/ {BASE}/ ") and len(tokens) == 1
    assert consume_link(engine, secret_key(ws.settings), tokens[0])[0].name == "wang"
    disable_user(engine, "wang")
    [out] = resolve_links(ws.settings, engine, "logistics", [own])
    assert out == f"{BASE}/actions/{ws.logistics_action}"


def test_users_link_signs_in_a_member_without_a_password(engine: Engine, db_url: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with SmtpReceiver(user="cx", password="smtp-pw") as smtp:
        ws = seed(engine, db_url, tmp_path)
        plain = ws.config.read_text(encoding="utf-8")
        no_mail = tmp_path / "no-mail.toml"
        no_mail.write_text(plain, encoding="utf-8")
        ws.config.write_text(plain.replace(
            "[web]\n", f'[web]\nlink_mail = "mailto://cx:smtp-pw@127.0.0.1:{smtp.port}?from=cx@example.com"\n'),
            encoding="utf-8")
        settings = load_settings(ws.config, env={})
        add_user(settings, engine, "li@example.com", "member", "logistics", display_name="<b>Li</b>")
        add_user(settings, engine, "cfo@example.com", "viewer")
        aid = ws.logistics_action

        code, out, _ = cxloop(capsys, monkeypatch, ws.config, "users", "link", "li@example.com",
                              "--action", str(aid))
        assert code == 0 and "sign-in link sent" in out
        assert cxloop(capsys, monkeypatch, ws.config, "users", "link", "cfo@example.com")[0] == 0
        # refused in one line: a name that is no address, an action the user may not see, a
        # disabled account, no link_mail
        for args, why in ((["wang"], "not an e-mail address"),
                          (["li@example.com", "--action", str(ws.service_action)], "may see"),
                          (["nobody@example.com"], "no user")):
            code, _, err = cxloop(capsys, monkeypatch, ws.config, "users", "link", *args)
            assert code == 1 and why in err and len(err.strip().splitlines()) == 1, err
        code, _, err = cxloop(capsys, monkeypatch, no_mail, "users", "link", "li@example.com")
        assert code == 1 and "[web] link_mail" in err
        mails = list(smtp.messages)
    assert [m.recipients for m in mails] == [["li@example.com"], ["cfo@example.com"]]
    li_mail, cfo_mail = mails
    assert "&lt;b&gt;Li&lt;/b&gt;" in li_mail.html and f"#{aid}" in li_mail.text
    [li_token] = set(_tokens(li_mail.html)) | set(_tokens(li_mail.text))
    [cfo_token] = set(_tokens(cfo_mail.html))
    with Session(engine) as s:
        rows = s.exec(select(OutboxMessage).where(col(OutboxMessage.recipient).startswith("user:"))).all()
        audited = s.exec(select(AuditEntry).where(AuditEntry.verb == "user_link")).all()
    assert [(r.recipient, r.kind, r.status) for r in rows] == [
        ("user:li@example.com", "signin_link:1", "sent"), ("user:cfo@example.com", "signin_link:1", "sent")]
    assert not any(_tokens(r.body_html + r.body_text) for r in rows) and len(audited) == 2
    assert "smtp-pw" not in " ".join(r.route for r in rows)

    with serve(ws.settings, engine) as base:  # the member signs in by the link, lands on the action
        client = httpx.Client(base_url=base)
        page = client.get(f"/link/{li_token}")
        assert page.status_code == 200 and f"#{aid}" in page.text
        r = client.post(f"/link/{li_token}", data={"csrf": csrf_of(page.text), "then": "open"})
        assert r.status_code == 303 and r.headers["location"] == f"/actions/{aid}"
        assert client.get(f"/actions/{aid}").status_code == 200
        viewer = httpx.Client(base_url=base)
        page = viewer.get(f"/link/{cfo_token}")
        r = viewer.post(f"/link/{cfo_token}", data={"csrf": csrf_of(page.text), "then": "open"})
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert viewer.get("/").status_code == 200
