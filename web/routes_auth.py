"""Signing in and out: a password (admins), or a single-use link from a notice (everyone).

A link's GET only shows what it will do: mail scanners and chat previews fetch links, and must not
spend them. The one-click POST from that page signs in, and may acknowledge the action at once.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from cxloop.db import session_scope
from cxloop.models import Action, WebUser
from cxloop.tasks.actions import STATUS_WORDS, ActionError, change_status
from cxloop.tasks.lifecycle import TransitionError
from cxloop.web import access, throttle
from cxloop.web.app import Refused, Web
from cxloop.web.auth import LinkRefused, consume_link, new_session, session_user
from cxloop.web.users import audit, authenticate


def safe_next(target: str | None) -> str:
    """Only a path on this site: `//evil.example` or `https://...` would be an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _signed_in(web: Web, user: WebUser, target: str) -> Response:
    response = RedirectResponse(target, status_code=303)
    web.set_session(response, new_session(user))
    return response


def _too_many(web: Web, request: Request, limits: throttle.Limits, form: dict[str, str]) -> Response:
    """The same answer whoever the name belongs to, or whether it belongs to anyone."""
    response = web.page(request, "login.html", None, status=429, next=safe_next(form.get("next")),
                        error="too many failed sign-ins; wait %(minutes)s minutes and try again",
                        minutes=f"{limits.window.total_seconds() / 60:g}")
    response.headers["Retry-After"] = str(int(limits.window.total_seconds()))
    return response


def register(app: FastAPI, web: Web) -> None:
    @app.get("/login")
    def login_page(request: Request) -> Response:
        return web.page(request, "login.html", None, next=safe_next(request.query_params.get("next")),
                        error=None)

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await web.form(request)
        name = form.get("name", "")
        client = request.client.host if request.client else ""
        limits, now = throttle.Limits.of(web.settings), web.clock()
        if throttle.locked(web.engine, limits, name, client, now):
            return _too_many(web, request, limits, form)
        user = authenticate(web.engine, name, form.get("password", ""))
        with session_scope(web.engine) as session:
            audit(session, name[:200] or "?", "sign_in" if user else "sign_in_failed", "password")
        if user is None:
            lockout = throttle.record_failure(web.engine, limits, name, client, now)
            if lockout:
                with session_scope(web.engine) as session:
                    audit(session, name[:200] or "?", "sign_in_locked", "password",
                          f"{lockout} locked for {limits.window.total_seconds() / 60:g} minutes"
                          + (f" (client {client})" if lockout == "client" else ""))
                return _too_many(web, request, limits, form)
            return web.page(request, "login.html", None, status=401, next=safe_next(form.get("next")),
                            error="wrong user name or password")
        throttle.clear_account(web.engine, name)
        return _signed_in(web, user, safe_next(form.get("next")))

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        await web.form(request)
        response = RedirectResponse("/login", status_code=303)
        web.set_session(response, new_session())
        return response

    @app.get("/link/{token}")
    def link_page(request: Request, token: str) -> Response:
        try:
            user, action_id = consume_link(web.engine, web.key, token, spend=False)
        except LinkRefused as exc:
            raise Refused(403, str(exc)) from None
        action = None
        if action_id is not None:
            with Session(web.engine) as session:
                action = session.get(Action, action_id)
        can_ack = action is not None and "ack" in access.moves_for(user, action)
        return web.page(request, "link.html", session_user(web.engine, web.session(request)), token=token,
                        link_user=user, action=action, can_ack=can_ack)

    @app.post("/link/{token}")
    async def use_link(request: Request, token: str) -> Response:
        form = await web.form(request)
        try:
            user, action_id = consume_link(web.engine, web.key, token)
        except LinkRefused as exc:
            with session_scope(web.engine) as session:
                audit(session, "?", "sign_in_failed", "link", str(exc))
            raise Refused(403, str(exc)) from None
        with session_scope(web.engine) as session:
            audit(session, user.name, "sign_in", "link", f"action:{action_id}" if action_id else "")
        target = f"/actions/{action_id}" if action_id is not None else "/"
        if action_id is not None and form.get("then") == "ack":
            with Session(web.engine) as session:
                action = session.get(Action, action_id)
            if action is not None and access.may_move(user, action, "ack"):
                try:
                    change_status(web.settings, web.engine, action_id, STATUS_WORDS["ack"], by=user.name)
                    with session_scope(web.engine) as session:
                        audit(session, user.name, "ack", f"action:{action_id}", "from a notice link")
                    target += "?done=ack"
                except (ActionError, TransitionError):
                    target += "?refused=ack"  # the action page says which moves are allowed
        return _signed_in(web, user, target)
