"""Accounts of the web workspace and its audit log (`cxloop users ...` and the sign-in pages)."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cxloop.config import Settings
from cxloop.db import session_scope
from cxloop.models import AuditEntry, WebUser
from cxloop.web.access import DEPARTMENT_ROLES, ROLES
from cxloop.web.auth import hash_password, verify_password


class UserError(ValueError):
    """A request about an account that cannot be met; the message names the value."""


def audit(session: Session, actor: str, verb: str, target: str = "", detail: str = "") -> None:
    session.add(AuditEntry(actor=actor, verb=verb, target=target, detail=detail[:2000]))


def add_user(settings: Settings, engine: Engine, name: str, role: str, department: str | None = None,
             password: str | None = None, display_name: str = "", by: str = "cxloop") -> WebUser:
    name = name.strip()
    if not name or any(c.isspace() for c in name):
        raise UserError(f"user name {name!r} must be one word without spaces (e.g. an e-mail address)")
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
    if role in DEPARTMENT_ROLES:
        known = {*settings.departments, settings.actions.default_owner}
        if department not in known:
            raise UserError(f"a {role} needs --department, one of: {', '.join(sorted(known))}")
    elif department:
        raise UserError(f"a {role} sees every department; leave out --department")
    with session_scope(engine) as session:
        if session.exec(select(WebUser).where(WebUser.name == name)).first():
            raise UserError(f"user {name!r} already exists (see `cxloop users list`)")
        user = WebUser(name=name, display_name=display_name or name, role=role, department=department,
                       password_hash=hash_password(password) if password else None)
        session.add(user)
        audit(session, by, "user_add", f"user:{name}", f"role={role} department={department or ''}")
        session.flush()
        session.expunge(user)
        return user


def list_users(engine: Engine) -> list[WebUser]:
    with Session(engine) as session:
        return list(session.exec(select(WebUser).order_by(col(WebUser.name))).all())


def _named(session: Session, name: str) -> WebUser:
    user = session.exec(select(WebUser).where(WebUser.name == name)).first()
    if user is None:
        raise UserError(f"no user {name!r} (see `cxloop users list`)")
    return user


def disable_user(engine: Engine, name: str, by: str = "cxloop") -> WebUser:
    """Disabled at once: its sessions and unused links stop working (the session version moves)."""
    with session_scope(engine) as session:
        user = _named(session, name)
        user.active = False
        user.session_version += 1
        session.add(user)
        audit(session, by, "user_disable", f"user:{name}")
        session.flush()
        session.expunge(user)
        return user


def reset_user(engine: Engine, name: str, password: str | None, by: str = "cxloop") -> WebUser:
    """A new password (or none: link sign-in only), re-enabled, every open session signed out."""
    with session_scope(engine) as session:
        user = _named(session, name)
        user.password_hash = hash_password(password) if password else None
        user.active = True
        user.session_version += 1
        session.add(user)
        audit(session, by, "user_reset", f"user:{name}")
        session.flush()
        session.expunge(user)
        return user


def authenticate(engine: Engine, name: str, password: str) -> WebUser | None:
    """The active user with this name and password, else None (the same answer for both mistakes)."""
    with Session(engine) as session:
        user = session.exec(select(WebUser).where(WebUser.name == name.strip())).first()
    if user is None or not user.active:
        verify_password(None, password)
        return None
    return user if verify_password(user.password_hash, password) else None


def head_account(engine: Engine, department: str) -> WebUser | None:
    """The account a department's notice links sign in: its first active head."""
    with Session(engine) as session:
        return session.exec(select(WebUser).where(WebUser.department == department, WebUser.role == "head",
                                                  col(WebUser.active).is_(True))
                            .order_by(col(WebUser.id))).first()
