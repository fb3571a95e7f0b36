"""Delivering the outbox through Apprise: claim a message, send it to each receiver not yet
served (with its idempotency key), record the outcome, back off after a failure.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Engine, and_, or_, update
from sqlmodel import Session, col, select

from cxloop.config import Settings
from cxloop.db import session_scope
from cxloop.models import OutboxMessage, as_utc, utcnow
from cxloop.tasks import claims
from cxloop.tasks.notify.notices import build_notices
from cxloop.tasks.notify.outbox import message_row
from cxloop.tasks.notify.routes import (
    CASE_ESCALATION,
    DATA_OWNERS,
    ESCALATION_RECIPIENT,
    USER_PREFIX,
    Router,
    Target,
    describe_routes,
    routes_for,
)
from cxloop.tasks.notify.secrets import scrub
from cxloop.tasks.rendering import escape_markdown

log = logging.getLogger(__name__)
SENDABLE = ("pending", "failed")
# While a run sends a message it holds it ("sending", `claimed_by` this process) until this lease
# ends. A run that died mid-send leaves the message to the next run: at once when the holder ran on
# the same machine and its process is gone, else when the lease is over.
LEASE = timedelta(minutes=10)
# Headers that carry a notice's idempotency key to receivers that take extra headers (Apprise's
# `+Header=value` URL syntax): HTTP webhooks (json://, form://, xml://) and e-mail.
IDEMPOTENCY_HEADER = "Idempotency-Key"
NOTICE_HEADER = "X-Cxloop-Notice"
# Across runs a failed message waits 1, 2, 4 ... minutes (at most 6 hours) before the next try.
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=6)


@dataclass
class DeliverySummary:
    sent: int = 0
    failed: int = 0
    no_route: int = 0
    waiting: int = 0  # failed earlier, back-off not over yet
    busy: int = 0  # another run is sending it right now
    dry_run: int = 0
    files: list[Path] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int | float | str]:
        return {"sent": self.sent, "failed": self.failed, "no_route": self.no_route,
                "waiting": self.waiting, "busy": self.busy, "dry_run": self.dry_run}


def backoff(attempts: int) -> timedelta:
    """Wait before the next run may try again: doubles with every failed attempt, capped."""
    return min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_CAP)


def notice_key(msg: OutboxMessage) -> str:
    """The notice's idempotency key: the same for every attempt, run and process that sends this
    outbox row, so a receiver can drop a second copy (the one left after a crash between the
    receiver's answer and `sent` being stored)."""
    row = f"{msg.id}|{msg.period}|{msg.recipient}|{msg.kind}"
    return f"cxloop-{msg.period}-{msg.kind}-{hashlib.sha256(row.encode()).hexdigest()[:16]}"


def _with_key(plugin: Any, key: str, asset: Any) -> Any:
    """The plugin again, with the key as extra headers where Apprise lets a URL add headers
    (`+Header=value`); other channels have no place for it and are sent as they are."""
    import apprise  # on use: about 0.4 s that `cxloop` start-up need not pay
    from apprise.plugins.email import NotifyEmail

    if "headers" not in getattr(plugin, "template_kwargs", {}):
        return plugin
    names = [NOTICE_HEADER] if isinstance(plugin, NotifyEmail) else [IDEMPOTENCY_HEADER, NOTICE_HEADER]
    raw = str(plugin.url(privacy=False))
    extra = urlencode({f"+{name}": key for name in names})
    keyed = apprise.Apprise.instantiate(f"{raw}{'&' if '?' in raw else '?'}{extra}", asset=asset,
                                        suppress_exceptions=True)
    return keyed if keyed is not None else plugin


def _bodies(settings: Settings, engine: Engine, msg: OutboxMessage, mint: bool = True) -> tuple[str, str]:
    """The message's HTML and text as they go out: sign-in link placeholders become links minted
    now (web/links.py), so the stored row never holds a live token; a dry run gets page addresses."""
    bodies = (msg.body_html, msg.body_text)
    if "/link/mint-" not in "".join(bodies):
        return bodies
    from cxloop.web.links import resolve_links  # the web package only when a notice links into it

    html, text = resolve_links(settings, engine, msg.recipient, bodies, mint=mint)
    return html, text


def _send(target: Target, msg: OutboxMessage, asset: Any, bodies: tuple[str, str]) -> tuple[bool | None, str]:
    import apprise  # on use: about 0.4 s that `cxloop` start-up need not pay

    ap = apprise.Apprise(asset=asset)
    ap.add(_with_key(target.plugin, notice_key(msg), asset))
    with apprise.LogCapture(level=logging.WARNING) as captured:
        if target.html:
            result = ap.notify(body=bodies[0], title=msg.subject,
                               body_format=apprise.NotifyFormat.HTML)
        else:
            # The subject carries config strings (department names): literal text in Markdown too.
            result = ap.notify(body=bodies[1], title=escape_markdown(msg.subject),
                               body_format=apprise.NotifyFormat.MARKDOWN)
        text = captured.getvalue() if hasattr(captured, "getvalue") else ""
    # Apprise 2 answers with a result object: true only on success, NOMATCH when nothing matched.
    sent = None if result.status == apprise.AppriseResultStatus.NOMATCH else bool(result)
    return sent, " ".join(line.split(" - ", 2)[-1] for line in str(text).splitlines() if line.strip())


def _no_route_reason(settings: Settings, recipient: str) -> str:
    if recipient == ESCALATION_RECIPIENT:
        return "[actions] escalation_notify is empty"
    if recipient == CASE_ESCALATION:
        return "[cases] escalation_notify and [actions] escalation_notify are empty"
    if recipient == DATA_OWNERS:
        return "no [quality] data_owners and no data_owners on any source"
    if recipient.startswith(USER_PREFIX):
        return "[web] link_mail is not set"
    if recipient not in settings.departments:
        return f"department {recipient!r} is not in the config (add [departments.{recipient}] with notify)"
    return f"[departments.{recipient}] notify is empty"


def _save(engine: Engine, msg: OutboxMessage) -> None:
    with session_scope(engine) as session:
        session.merge(msg)


def _holder_gone(msg: OutboxMessage) -> bool:
    """A `sending` message whose sending process on this machine no longer exists (kill -9)."""
    return msg.status == "sending" and claims.is_gone(msg.claimed_by)


def _claim(engine: Engine, msg: OutboxMessage, now: datetime) -> bool:
    """Take the message for this run. The row must still be as this run read it (same attempts,
    still sendable), so two runs at once (the monthly flow and a manual `--retry`) never both send.
    A `sending` row is taken over when its lease is over, or when it still names the holder this
    run found dead (two runs that both found it dead: only the first one's update matches)."""
    sending = col(OutboxMessage.status) == "sending"
    stale = col(OutboxMessage.next_attempt_at) <= now
    if _holder_gone(msg):
        stale = or_(stale, col(OutboxMessage.claimed_by) == msg.claimed_by)
    me = str(claims.this_process())
    stmt = (update(OutboxMessage)
            .where(col(OutboxMessage.id) == msg.id, col(OutboxMessage.attempts) == msg.attempts,
                   or_(col(OutboxMessage.status).in_(SENDABLE), and_(sending, stale)))
            .values(status="sending", next_attempt_at=now + LEASE, claimed_by=me))
    with engine.begin() as conn:
        claimed = conn.execute(stmt).rowcount == 1
    if claimed:
        msg.status, msg.next_attempt_at, msg.claimed_by = "sending", now + LEASE, me
    return claimed


def _deliver_one(settings: Settings, engine: Engine, router: Router, msg: OutboxMessage, now: datetime,
                 summary: DeliverySummary, delay: float) -> None:
    if not _claim(engine, msg, now):
        summary.busy += 1
        return
    routes = routes_for(settings, msg.recipient)
    msg.route = describe_routes(routes)
    targets, problems, secrets = router.resolve(routes)
    if not targets:
        msg.status = "no_route"
        msg.last_error = scrub("; ".join(problems) or _no_route_reason(settings, msg.recipient),
                               secrets)
        msg.next_attempt_at = None
        _save(engine, msg)
        summary.no_route += 1
        log.warning("notice %s/%s/%s: no route", msg.period, msg.recipient, msg.kind)
        return
    delivered = list(msg.delivered or [])
    remaining = [t for t in targets if t.key not in delivered]
    errors: dict[str, str] = {}
    for attempt in range(settings.notify.retries + 1):
        if attempt:
            time.sleep(delay * 2 ** (attempt - 1))
        msg.attempts += 1
        for target in list(remaining):
            # minted per send: a retry or a second receiver gets its own fresh link
            result, why = _send(target, msg, router.asset, _bodies(settings, engine, msg))
            if result:
                delivered.append(target.key)
                remaining.remove(target)
                errors.pop(target.key, None)
                msg.delivered = list(delivered)
                _save(engine, msg)  # remembered at once: a crash now cannot cause a second send
            else:
                reason = why or ("no receiver matched" if result is None else "send failed")
                errors[target.key] = f"{target.key.split(' #')[0]}: {reason}"
        if not remaining:
            break
    if remaining:
        msg.status = "failed"
        msg.next_attempt_at = now + backoff(msg.attempts)
        msg.last_error = scrub("; ".join(list(errors.values()) + problems), secrets)[:2000]
        summary.failed += 1
        log.warning("notice %s/%s/%s failed after %s attempts", msg.period, msg.recipient, msg.kind,
                    msg.attempts)
    else:
        msg.status, msg.sent_at, msg.next_attempt_at = "sent", utcnow(), None
        msg.last_error = scrub("; ".join(problems), secrets) or None
        summary.sent += 1
    _save(engine, msg)


def deliver_message(settings: Settings, engine: Engine, message_id: int,
                    now: datetime | None = None) -> DeliverySummary:
    """Send one outbox message now (`cxloop users link`), with the usual claim, retries and record;
    if it fails, `cxloop notify --retry` sends it later like any other."""
    with Session(engine, expire_on_commit=False) as session:
        msg = session.get(OutboxMessage, message_id)
        if msg is None:
            raise ValueError(f"no outbox message {message_id}")
        session.expunge(msg)
    summary = DeliverySummary()
    _deliver_one(settings, engine, Router(settings), msg, now or utcnow(), summary,
                 settings.notify.retry_delay_seconds)
    summary.messages.append(message_row(msg))
    return summary


def _dry_run(router: Router, settings: Settings, engine: Engine, messages: list[OutboxMessage], out_dir: Path,
             summary: DeliverySummary) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for msg in messages:
        targets, _, _ = router.resolve(routes_for(settings, msg.recipient))
        kinds = {"html" if t.html else "md" for t in targets} or {"md"}
        for ext in sorted(kinds):
            path = out_dir / f"{msg.period}-{msg.recipient}-{msg.kind}.{ext}"
            html, text = _bodies(settings, engine, msg, mint=False)
            body = html if ext == "html" else f"# {msg.subject}\n\n{text}"
            path.write_text(body, encoding="utf-8")
            summary.files.append(path)
        summary.dry_run += 1
        summary.messages.append(message_row(msg))


def deliver(settings: Settings, engine: Engine, period: str | None = None, dry_run_dir: Path | None = None,
            now: datetime | None = None, force: bool = False, retry_delay: float | None = None,
            carry_over: bool = True) -> DeliverySummary:
    """Send every pending or failed message whose back-off is over.

    `period` None means every period (`cxloop notify --retry`). With a period, messages of earlier
    periods that failed are retried too (`carry_over`), so a notice that could not go out last
    month goes out with this month's run. `force` ignores the back-off. With `dry_run_dir` the
    messages are written to files instead and nothing changes.
    """
    now = now or utcnow()
    delay = settings.notify.retry_delay_seconds if retry_delay is None else retry_delay
    query = select(OutboxMessage).where(col(OutboxMessage.status).in_([*SENDABLE, "sending"]))
    if period and carry_over:
        # Earlier months' unsent notices too: failed ones, and those a killed run left pending or
        # sending (taken over below once their holder is gone or their lease is over).
        query = query.where(col(OutboxMessage.period) <= period)
    elif period:
        query = query.where(OutboxMessage.period == period)
    with Session(engine, expire_on_commit=False) as session:
        messages = list(session.exec(query.order_by(col(OutboxMessage.id))).all())
        for m in messages:
            session.expunge(m)
    summary = DeliverySummary()
    due: list[OutboxMessage] = []
    for m in messages:
        next_at = as_utc(m.next_attempt_at)
        if (next_at is None or next_at <= now or (force and m.status != "sending")
                or _holder_gone(m)):
            due.append(m)
        else:
            summary.waiting += 1
    router = Router(settings)
    if dry_run_dir is not None:
        _dry_run(router, settings, engine, due, Path(dry_run_dir), summary)
        return summary
    for m in due:
        _deliver_one(settings, engine, router, m, now, summary, delay)
        summary.messages.append(message_row(m))
    return summary


def preview(settings: Settings, engine: Engine, period: str, held: bool, out_dir: Path) -> DeliverySummary:
    """A dry run of a cycle's notices: render what `queue_notices` + `deliver` would send to files,
    without writing to the outbox (a notice already sent is left out, as it would not go again)."""
    with Session(engine) as session:
        done = {(m.recipient, m.kind) for m in session.exec(
            select(OutboxMessage).where(OutboxMessage.period == period)).all()
            if m.status == "sent" or m.delivered}
    messages = [d.to_message(describe_routes(routes_for(settings, d.recipient)))
                for d in build_notices(settings, engine, period, held, mint_links=False)
                if (d.recipient, d.kind) not in done]
    summary = DeliverySummary()
    _dry_run(Router(settings), settings, engine, messages, out_dir, summary)
    return summary
