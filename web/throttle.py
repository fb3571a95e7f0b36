"""Limiting password guessing: after `[web] login_attempts` failures for one account, or
`login_attempts_per_client` from one client address, within `login_window_minutes`, password
sign-in is refused (HTTP 429) for a whole window from the failure that reached the limit.

Failures are rows in the database (`login_attempt`), not process memory, so the limit holds
across `cxloop web --workers N` and restarts. An unknown account name is counted exactly like a
known one, so the answers never tell which accounts exist. While refused, nothing is checked and
nothing more is counted (no argon2 work for a guesser); a successful sign-in clears its account's
failures, not its address's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func
from sqlmodel import Session, col, select

from cxloop.config import Settings
from cxloop.db import session_scope
from cxloop.models import LoginAttempt, as_utc


@dataclass(frozen=True)
class Limits:
    per_account: int
    per_client: int
    window: timedelta

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        web = settings.web
        return cls(web.login_attempts, web.login_attempts_per_client,
                   timedelta(minutes=web.login_window_minutes))


def account_key(name: str) -> str:
    return name.strip().lower()[:200]


def _held(session: Session, column: Any, value: str, limit: int, window: timedelta, now: datetime) -> bool:
    """Held for a whole window from the failure that reached the limit: its latest failure is
    within the window and at least `limit` failures lead up to it within a window. (While held no
    failure is counted, so the latest one is the one that started the lockout.)"""
    latest = as_utc(session.exec(select(func.max(LoginAttempt.at)).where(column == value)).one())
    if latest is None or latest <= now - window:
        return False
    count = session.exec(select(func.count()).select_from(LoginAttempt)
                         .where(column == value, col(LoginAttempt.at) > latest - window)).one()
    return int(count) >= limit


def locked(engine: Engine, limits: Limits, name: str, client: str, now: datetime) -> str | None:
    """"account" or "client" when that one is held, else None."""
    with Session(engine) as session:
        if _held(session, col(LoginAttempt.account), account_key(name), limits.per_account, limits.window,
                 now):
            return "account"
        if client and _held(session, col(LoginAttempt.client), client, limits.per_client, limits.window, now):
            return "client"
    return None


def record_failure(engine: Engine, limits: Limits, name: str, client: str, now: datetime) -> str | None:
    """Count a failure; returns "account" or "client" when this one starts a lockout (for the
    audit log), else None. Failures that can no longer count are dropped on the way."""
    with session_scope(engine) as session:
        session.connection().execute(delete(LoginAttempt)
                                     .where(col(LoginAttempt.at) <= now - 2 * limits.window))
        session.add(LoginAttempt(at=now, account=account_key(name), client=client))
    return locked(engine, limits, name, client, now)


def clear_account(engine: Engine, name: str) -> None:
    """A correct password ends the account's count (the address's stays)."""
    with session_scope(engine) as session:
        session.connection().execute(delete(LoginAttempt)
                                     .where(col(LoginAttempt.account) == account_key(name)))
