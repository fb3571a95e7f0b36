"""Who is signed in, and proof of it: password hashes, single-use sign-in links, signed session
cookies and CSRF tokens. Everything is keyed by one secret (`[web] secret_key`, or a key file
written next to the config on first use), so a copied cookie or link is useless elsewhere.

A link token is `nonce.signature`: the signature refuses a forged token before the database is
read, and only a keyed hash of the nonce is stored, so a leaked database does not leak live links.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, Signer, URLSafeTimedSerializer
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from cxloop.config import Settings
from cxloop.db import session_scope
from cxloop.models import WebLink, WebUser, as_utc, utcnow

KEY_FILE = ".cxloop-web.key"
SESSION_COOKIE = "cxloop_session"
_hasher = PasswordHasher()


class LinkRefused(ValueError):
    """A sign-in link that cannot be used; the message says why (forged, unknown, used, expired)."""


def secret_key(settings: Settings) -> bytes:
    """The configured key, else the key file next to the config (created once, readable only by
    its owner), so `cxloop notify` and `cxloop web` on one host sign with the same key."""
    if settings.web.secret_key:
        return settings.web.secret_key.encode()
    path = settings.base_dir / KEY_FILE
    if not path.exists():
        _write_key(path)
    return path.read_text(encoding="ascii").strip().encode()


def _write_key(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(secrets.token_urlsafe(48))


# --------------------------------------------------------------------------- passwords

def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    if not stored:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


# --------------------------------------------------------------------------- sign-in links

def _keyed(key: bytes, purpose: str, value: str) -> str:
    return hmac.new(key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def mint_link(engine: Engine, key: bytes, user_id: int, action_id: int | None, hours: float,
              now: datetime | None = None) -> str:
    """A new single-use token for `user_id` that opens `action_id`; valid for `hours`."""
    now = now or utcnow()
    nonce = secrets.token_urlsafe(24)
    with session_scope(engine) as session:
        session.add(WebLink(token_hash=_keyed(key, "link", nonce), user_id=user_id, action_id=action_id,
                            created_at=now, expires_at=now + timedelta(hours=hours)))
    return Signer(key, salt="cxloop-link").sign(nonce).decode()


def consume_link(engine: Engine, key: bytes, token: str, now: datetime | None = None,
                 spend: bool = True) -> tuple[WebUser, int | None]:
    """The user a link signs in and the action it opens; the link is spent by this call (unless
    `spend` is False: the landing page only looks). Refused (LinkRefused) when forged, unknown,
    already used, expired or its user is disabled."""
    now = now or utcnow()
    try:
        nonce = Signer(key, salt="cxloop-link").unsign(token.encode()).decode()
    except (BadSignature, UnicodeError):
        raise LinkRefused("this sign-in link is not valid") from None
    digest = _keyed(key, "link", nonce)
    with session_scope(engine) as session:
        link = session.exec(select(WebLink).where(WebLink.token_hash == digest)).first()
        if link is None:
            raise LinkRefused("this sign-in link is not valid")
        if link.used_at is not None:
            raise LinkRefused("this sign-in link was already used; sign in again or ask for a new one")
        if as_utc(link.expires_at) <= now:
            raise LinkRefused("this sign-in link has expired; the next notice carries a new one")
        user = session.get(WebUser, link.user_id)
        if user is None or not user.active:
            raise LinkRefused("this account is disabled")
        if spend:  # a conditional update: of two requests racing with one link, one wins
            spent = session.connection().execute(
                update(WebLink).where(col(WebLink.id) == link.id, col(WebLink.used_at).is_(None))
                .values(used_at=now))
            if spent.rowcount != 1:
                raise LinkRefused("this sign-in link was already used; sign in again or ask for a new one")
        session.expunge(user)
        return user, link.action_id



# --------------------------------------------------------------------------- sessions and CSRF

@dataclass(frozen=True)
class SessionData:
    """What the session cookie carries: a per-browser nonce (the CSRF token is derived from it),
    and once signed in the user id and the account's session version."""

    nonce: str
    user_id: int | None = None
    version: int = 0


def new_session(user: WebUser | None = None) -> SessionData:
    """A fresh nonce at every sign-in, so a token seen before signing in is worthless after."""
    return SessionData(secrets.token_urlsafe(18), user.id if user else None,
                       user.session_version if user else 0)


def _serializer(key: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(key, salt="cxloop-session")


def dump_session(key: bytes, data: SessionData) -> str:
    return _serializer(key).dumps({"n": data.nonce, "u": data.user_id, "v": data.version})


def load_session(key: bytes, cookie: str | None, max_age_seconds: float) -> SessionData | None:
    """The session a cookie carries, or None when it is missing, forged or too old."""
    if not cookie:
        return None
    try:
        raw: Any = _serializer(key).loads(cookie, max_age=int(max_age_seconds))
        return SessionData(str(raw["n"]), raw["u"] if isinstance(raw["u"], int) else None, int(raw["v"]))
    except (BadSignature, KeyError, TypeError, ValueError):
        return None


def session_user(engine: Engine, data: SessionData | None) -> WebUser | None:
    """The signed-in user, if the account is active and not reset or disabled since."""
    if data is None or data.user_id is None:
        return None
    with Session(engine) as session:
        user = session.get(WebUser, data.user_id)
    if user is None or not user.active or user.session_version != data.version:
        return None
    return user


def csrf_token(key: bytes, data: SessionData) -> str:
    return _keyed(key, "csrf", data.nonce)


def csrf_ok(key: bytes, data: SessionData | None, token: str | None) -> bool:
    return bool(data and token) and hmac.compare_digest(csrf_token(key, data), token or "")  # type: ignore[arg-type]
