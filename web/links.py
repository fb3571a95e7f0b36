"""The links a notice carries into the workspace (`[web] base_url`): each action's link signs the
department's head in (signed, expiring, single-use) and opens the action, acknowledge one click
away. Without a head account the link opens the action page, which asks to sign in.

No live token is ever stored: a notice is rendered with a placeholder `/link/mint-USER-ACTION-SIG`
naming whom the link signs in and what it opens, and the sender swaps it for a freshly minted
token just before the message goes to Apprise (`resolve_links`), so the outbox row and the logs
hold nothing that signs anyone in, and every retry carries a new link. SIG is a keyed hash of the
message's recipient, the user and the action: a placeholder that a customer's comment copies, or
that sits in another recipient's notice, is not minted.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session

from cxloop.config import Settings
from cxloop.models import WebUser
from cxloop.web.auth import mint_link, secret_key
from cxloop.web.users import head_account

_PLACEHOLDER = re.compile(r"/link/mint-(\d+)-(\d+)-([0-9a-f]{32})")


def _signature(key: bytes, recipient: str, user_id: int, action_id: int) -> str:
    value = f"placeholder:{recipient}:{user_id}:{action_id}".encode()
    return hmac.new(key, value, hashlib.sha256).hexdigest()[:32]


def placeholder_url(settings: Settings, recipient: str, user_id: int, action_id: int | None) -> str:
    """The stored stand-in for a sign-in link of `user_id` opening `action_id` (None: the
    dashboard), good only in a message to `recipient`."""
    base = (settings.web.base_url or "").rstrip("/")
    aid = action_id or 0
    return f"{base}/link/mint-{user_id}-{aid}-{_signature(secret_key(settings), recipient, user_id, aid)}"


def action_urls(settings: Settings, engine: Engine, department: str, action_ids: Sequence[int],
                mint: bool = True) -> dict[int, str]:
    """{action id: URL}; empty when no base_url is set. With `mint` each URL is a placeholder the
    sender turns into the head's sign-in link; `mint=False` (a preview) gives the plain page
    addresses, never anything that becomes a live link."""
    base = (settings.web.base_url or "").rstrip("/")
    if not base or not action_ids:
        return {}
    head = head_account(engine, department) if mint else None
    if head is None or head.id is None:
        return {i: f"{base}/actions/{i}" for i in action_ids}
    return {i: placeholder_url(settings, department, head.id, i) for i in action_ids}


def has_placeholders(*bodies: str) -> bool:
    return any(_PLACEHOLDER.search(b) for b in bodies)


def resolve_links(settings: Settings, engine: Engine, recipient: str, bodies: Sequence[str],
                  mint: bool = True, now: datetime | None = None) -> list[str]:
    """The bodies with each placeholder made a link: a new single-use token per (user, action),
    shared by the message's HTML and text forms. Without `mint` (a dry run), or when the account is
    disabled or gone, or the placeholder was not made for this recipient, the plain page address."""
    key = secret_key(settings)
    found = {(int(m[0]), int(m[1]), m[2]) for b in bodies for m in _PLACEHOLDER.findall(b)}
    paths: dict[str, str] = {}
    with Session(engine) as session:
        for user_id, aid, sig in sorted(found):
            page = f"/actions/{aid}" if aid else "/"
            user = session.get(WebUser, user_id)
            good = hmac.compare_digest(sig, _signature(key, recipient, user_id, aid))
            paths[f"/link/mint-{user_id}-{aid}-{sig}"] = (
                f"/link/{mint_link(engine, key, user_id, aid or None, settings.web.link_hours, now)}"
                if mint and good and user is not None and user.active else page)
    return [_PLACEHOLDER.sub(lambda m: paths[m[0]], b) for b in bodies]
