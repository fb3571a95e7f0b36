"""Accounts of the web workspace and its audit log (`cxloop users ...` and the sign-in pages)."""

from __future__ import annotations

import re

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from cxloop.config import Settings
from cxloop.db import session_scope
from cxloop.models import Action, AuditEntry, OutboxMessage, WebUser, utcnow
from cxloop.web.access import DEPARTMENT_ROLES, ROLES, can_see_action
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
        if not department:
            raise UserError(f"a {role} needs --department, one of: {', '.join(sorted(known))}")
        if department not in known:
            raise UserError(f"unknown department {department!r}; known: {', '.join(sorted(known))}")
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


LINK_KIND = "signin_link"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def queue_link(settings: Settings, engine: Engine, name: str, action_id: int | None = None,
               by: str = "cxloop") -> OutboxMessage:
    """Put a personal sign-in link for any active account in the outbox (`cxloop users link`):
    members and viewers sign in without a password as the heads do from their notices. Like the
    notices' links it is minted only when sent (web/links.py), so the row holds no live token.
    One message per request: `(day, user:NAME, signin_link:N)`."""
    from cxloop.tasks.notify.routes import USER_PREFIX, describe_routes, routes_for
    from cxloop.tasks.rendering import render, translate
    from cxloop.web.links import placeholder_url

    if not settings.web.base_url:
        raise UserError("[web] base_url is not set: a sign-in link needs the workspace's address")
    if not settings.web.link_mail:
        raise UserError("[web] link_mail is not set: the Apprise e-mail URL personal links are sent through")
    recipient = USER_PREFIX + name
    with session_scope(engine) as session:
        user = _named(session, name)
        if not user.active:
            raise UserError(f"user {name!r} is disabled (`cxloop users reset` enables it)")
        if not _EMAIL.fullmatch(user.name):
            raise UserError(f"user {name!r}: the name is not an e-mail address to send the link to")
        action = session.get(Action, action_id) if action_id is not None else None
        if action_id is not None and (action is None or not can_see_action(user, action)):
            raise UserError(f"action {action_id}: no such action that {name!r} may see")
        lang = settings.department_language(user.department) if user.department else settings.project.language
        day = utcnow().astimezone(settings.tz).strftime("%Y-%m-%d")
        sent = session.exec(select(func.count()).select_from(OutboxMessage)
                            .where(OutboxMessage.period == day, OutboxMessage.recipient == recipient)).one()
        subject = translate("[cxloop] Your sign-in link to the workspace", lang)
        ctx = dict(subject=subject, user=user.display_name or user.name, project=settings.project.name,
                   url=placeholder_url(settings, recipient, user.id or 0, action_id),
                   action_id=action_id, hours=f"{settings.web.link_hours:g}")
        msg = OutboxMessage(period=day, recipient=recipient, kind=f"{LINK_KIND}:{int(sent) + 1}",
                            language=lang, subject=subject,
                            body_html=render("signin_link.html", lang, **ctx),
                            body_text=render("signin_link.md", lang, **ctx),
                            route=describe_routes(routes_for(settings, recipient)))
        session.add(msg)
        audit(session, by, "user_link", f"user:{name}", f"action:{action_id}" if action_id else "")
        session.flush()
        session.expunge(msg)
        return msg
