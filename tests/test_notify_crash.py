"""Issue 21 item 2: a run killed while sending notices leaves nothing stuck and nothing doubled.

The crash is real: a child process claims the outbox row (as a run does before it sends) and is
killed with SIGKILL, so the row stays `sending` in its name. The next run, `cxloop notify
--retry`, or the next month's cycle must send it, exactly once, with the notice's idempotency key.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, update
from sqlmodel import col

from cxloop.db import session_scope
from cxloop.models import OutboxMessage, utcnow
from cxloop.tasks import claims
from cxloop.tasks.notify import IDEMPOTENCY_HEADER, NOTICE_HEADER, deliver, notice_key, queue_notices
from tests.receivers import HttpReceiver, SmtpReceiver
from tests.test_notify import P, make_settings, outbox, seed

NEXT = "2026-11"
ROOT = Path(__file__).resolve().parent.parent


def killed_holder(db_url: str, message_id: int) -> str:
    """Claim the row from a child process, then SIGKILL it: the token a dead run leaves behind."""
    code = ("import sys, time\nfrom cxloop.db import open_db\n"
            "from cxloop.models import OutboxMessage, utcnow\n"
            "from sqlmodel import Session\nfrom cxloop.tasks.notify.delivery import _claim\n"
            "engine = open_db(sys.argv[1])\n"
            "with Session(engine) as s: m = s.get(OutboxMessage, int(sys.argv[2])); s.expunge(m)\n"
            "assert _claim(engine, m, utcnow()); print('claimed', flush=True); time.sleep(600)\n")
    child = subprocess.Popen([sys.executable, "-c", code, db_url, str(message_id)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "claimed"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    [row] = [m for m in outbox_rows(db_url) if m.id == message_id]
    assert row.status == "sending" and row.claimed_by is not None
    assert claims.parse(row.claimed_by) is not None and claims.is_gone(row.claimed_by)
    return row.claimed_by


def outbox_rows(db_url: str) -> list[OutboxMessage]:
    from cxloop.db import open_db

    eng = open_db(db_url)
    try:
        return outbox(eng)
    finally:
        eng.dispose()


def logistics(engine: Engine, period: str = P) -> OutboxMessage:
    [row] = [m for m in outbox(engine) if m.recipient == "logistics" and m.period == period]
    return row


def test_killed_sender_is_taken_over_at_once_and_sent_once_with_its_key(engine: Engine, db_url: str,
                                                                        tmp_path: Path) -> None:
    seed(engine)
    with HttpReceiver() as hook:
        settings = make_settings(tmp_path, [hook.url("/lg")], [])
        queue_notices(settings, engine, P, held=False)
        row = logistics(engine)
        killed_holder(db_url, row.id or 0)
        # The lease (10 minutes) is far from over, but the holder is gone: no wait.
        summary = deliver(settings, engine, None, force=True)  # what `cxloop notify --retry` runs
        assert summary.sent == 1 and summary.counts()["waiting"] == 0
        assert deliver(settings, engine, None, force=True).sent == 0
        assert len(hook.requests) == 1
        headers = hook.requests[0].headers
        assert headers[IDEMPOTENCY_HEADER] == headers[NOTICE_HEADER] == notice_key(row)
    done = logistics(engine)
    assert done.status == "sent" and done.claimed_by == str(claims.this_process())


def test_next_months_run_takes_over_an_expired_claim_from_another_machine(engine: Engine,
                                                                          tmp_path: Path) -> None:
    seed(engine)
    with HttpReceiver() as hook:
        settings = make_settings(tmp_path, [hook.url("/lg")], [])
        queue_notices(settings, engine, P, held=False)
        row = logistics(engine)
        claimed_at = utcnow() - timedelta(hours=2)
        with session_scope(engine) as s:  # a run on another machine died mid-send two hours ago
            s.execute(update(OutboxMessage).where(col(OutboxMessage.id) == row.id).values(
                status="sending", claimed_by="elsewhere:4242:99",
                next_attempt_at=claimed_at + timedelta(minutes=10)))
        queue_notices(settings, engine, NEXT, held=False)
        summary = deliver(settings, engine, NEXT)  # the next month's cycle (or `serve`)
        assert summary.sent == 2
        assert sorted(r.json()["title"].split()[1] for r in hook.requests) == [P, NEXT]
        assert deliver(settings, engine, NEXT, force=True).sent == 0
        assert len(hook.requests) == 2
    assert logistics(engine).status == "sent"


def test_a_live_claim_elsewhere_is_left_alone_until_its_lease_ends(engine: Engine, tmp_path: Path) -> None:
    seed(engine)
    with HttpReceiver() as hook:
        settings = make_settings(tmp_path, [hook.url("/lg")], [])
        queue_notices(settings, engine, P, held=False)
        row = logistics(engine)
        with session_scope(engine) as s:  # another machine is sending it right now
            s.execute(update(OutboxMessage).where(col(OutboxMessage.id) == row.id).values(
                status="sending", claimed_by="elsewhere:4242:99",
                next_attempt_at=utcnow() + timedelta(minutes=10)))
        assert deliver(settings, engine, None, force=True).sent == 0
        assert deliver(settings, engine, NEXT).sent == 0
        assert hook.requests == []
        assert deliver(settings, engine, None, now=utcnow() + timedelta(minutes=11)).sent == 1
        assert len(hook.requests) == 1


def test_a_copy_sent_before_the_crash_carries_the_same_key(engine: Engine, db_url: str,
                                                           tmp_path: Path) -> None:
    """The at-least-once window the README documents: killed after the receiver accepted but
    before `sent` was stored. The second copy has the first one's key, so the receiver can drop it."""
    seed(engine)
    with HttpReceiver() as hook:
        settings = make_settings(tmp_path, [hook.url("/lg")], [])
        queue_notices(settings, engine, P, held=False)
        assert deliver(settings, engine, P).sent == 1
        row = logistics(engine)
        with session_scope(engine) as s:  # as if the run died before it stored the success
            s.execute(update(OutboxMessage).where(col(OutboxMessage.id) == row.id).values(
                status="pending", delivered=[], sent_at=None, attempts=0))
        killed_holder(db_url, row.id or 0)
        assert deliver(settings, engine, P).sent == 1
        assert [r.headers[IDEMPOTENCY_HEADER] for r in hook.requests] == [notice_key(row)] * 2


def test_email_notices_carry_the_key_in_a_header(engine: Engine, tmp_path: Path) -> None:
    seed(engine)
    with SmtpReceiver() as smtp:
        settings = make_settings(tmp_path, [smtp.url(to="wang@example.com")], [])
        queue_notices(settings, engine, P, held=False)
        assert deliver(settings, engine, P).sent == 1
        [mail] = smtp.messages
        assert mail.message[NOTICE_HEADER] == notice_key(logistics(engine))
        assert mail.message[IDEMPOTENCY_HEADER] is None
