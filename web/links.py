"""The links a notice carries into the workspace (`[web] base_url`): each action's link signs the
department's head in (signed, expiring, single-use) and opens the action, acknowledge one click
away. Without a head account the link opens the action page, which asks to sign in."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine

from cxloop.config import Settings
from cxloop.web.auth import mint_link, secret_key
from cxloop.web.users import head_account


def action_urls(settings: Settings, engine: Engine, department: str, action_ids: Sequence[int],
                mint: bool = True, now: datetime | None = None) -> dict[int, str]:
    """{action id: URL}; empty when no base_url is set. `mint=False` (a preview) never creates a
    live link: it gives the plain page addresses."""
    base = (settings.web.base_url or "").rstrip("/")
    if not base or not action_ids:
        return {}
    head = head_account(engine, department) if mint else None
    if head is None or head.id is None:
        return {i: f"{base}/actions/{i}" for i in action_ids}
    key = secret_key(settings)
    return {i: f"{base}/link/{mint_link(engine, key, head.id, i, settings.web.link_hours, now)}"
            for i in action_ids}
