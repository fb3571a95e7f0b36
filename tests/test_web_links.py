"""Notice links are minted when the notice is sent, never stored (issue 18, on both databases):
the outbox row and the log carry only a placeholder, the delivered mail a working single-use link,
each retry a fresh one; a preview and a dry run carry plain page addresses; a placeholder made for
another recipient, or naming a disabled account, never becomes a link."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cxloop.models import OutboxMessage, WebLink
from cxloop.tasks.notify import build_notices, deliver, queue_notices
from cxloop.web.auth import consume_link, secret_key
from cxloop.web.links import placeholder_url, resolve_links
from cxloop.web.users import disable_user, head_account, list_users
from tests.receivers import SmtpReceiver, free_port
from tests.web_setup import seed

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
