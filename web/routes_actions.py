"""The action list, one action's page, and acting on it: every move goes through the same
lifecycle as `cxloop actions` (a refused move says which moves are allowed), is recorded with who
and when in the action's history, and in the audit log."""

from __future__ import annotations

from datetime import date, datetime

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from cxloop.db import session_scope
from cxloop.models import Action, WebUser
from cxloop.tasks import lifecycle
from cxloop.tasks.actions import STATUS_WORDS, ActionError, action_detail, add_note, assign, change_status
from cxloop.tasks.lifecycle import TransitionError
from cxloop.vocabulary import KPIS, kpi_label
from cxloop.web import access
from cxloop.web.app import Refused, Web
from cxloop.web.users import audit
from cxloop.web.views import PAGE_SIZE, Filters, find_actions, labels, verdict_label

MOVE_LABELS = {"ack": "Acknowledge", "start": "Start", "done": "Mark done", "cancel": "Cancel"}


def today(web: Web) -> date:
    return datetime.now(web.settings.tz).date()


def _action_for(web: Web, user: WebUser, action_id: int) -> Action:
    """The action, if this user may see it: 404 when there is none, 403 when it is not theirs."""
    with Session(web.engine) as session:
        action = session.get(Action, action_id)
    if action is None:
        raise Refused(404, f"no action with id {action_id}")
    if not access.can_see_action(user, action):
        raise Refused(403, f"action {action_id} belongs to another department")
    return action


def int_param(value: str | None, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise Refused(400, f"{name}: not a number: {value[:40]!r}") from None


def register(app: FastAPI, web: Web) -> None:
    @app.get("/actions")
    def action_list(request: Request) -> Response:
        user = web.user(request)
        q = request.query_params
        filters = Filters(status=q.get("status", "active"), overdue=q.get("overdue") == "1",
                          department=q.get("department", ""), kpi=q.get("kpi", ""),
                          page=int_param(q.get("page"), "page", 1))
        if filters.department and not access.can_see_department(user, filters.department):
            raise Refused(403, f"department {filters.department!r} is not yours")
        try:
            rows, total = find_actions(web.engine, filters, access.department_filter(user), today(web))
        except ActionError as exc:
            raise Refused(400, f"status: {exc}") from None
        lang = web.lang(user)
        return web.page(request, "actions.html", user, filters=filters, total=total, page_size=PAGE_SIZE,
                        rows=[(a, labels(web.settings, a, lang, today(web))) for a in rows],
                        statuses=["active", "closed", *lifecycle.ALLOWED],
                        kpis=[(k, kpi_label(k, lang)) for k in KPIS],
                        may_filter_departments=access.department_filter(user) is None)

    @app.get("/actions/{action_id}")
    def action_page(request: Request, action_id: int) -> Response:
        user = web.user(request)
        _action_for(web, user, action_id)
        return _render_action(web, request, user, action_id)

    @app.post("/actions/{action_id}/move")
    async def move(request: Request, action_id: int) -> Response:
        user = web.user(request)
        form = await web.form(request)
        action = _action_for(web, user, action_id)
        word, note = form.get("move", ""), form.get("note", "").strip()
        if word not in STATUS_WORDS:
            raise Refused(400, f"unknown move {word[:20]!r}; known: {', '.join(STATUS_WORDS)}")
        if not access.may_move(user, action, word):
            raise Refused(403, f"your role ({user.role}) cannot {word} action {action_id}")
        if word == "done" and not note:
            return _render_action(web, request, user, action_id, status=400,
                                  error="say what was done (it goes into the history and the next notice)")
        try:
            change_status(web.settings, web.engine, action_id, STATUS_WORDS[word], by=user.name, note=note)
        except (ActionError, TransitionError) as exc:
            return _render_action(web, request, user, action_id, status=409, error=str(exc))
        with session_scope(web.engine) as session:
            audit(session, user.name, word, f"action:{action_id}", note)
        return RedirectResponse(f"/actions/{action_id}?done={word}", status_code=303)

    @app.post("/actions/{action_id}/note")
    async def note(request: Request, action_id: int) -> Response:
        user = web.user(request)
        form = await web.form(request)
        action = _action_for(web, user, action_id)
        if not access.can_work_on(user, action):
            raise Refused(403, f"your role ({user.role}) cannot add notes to action {action_id}")
        text, link = form.get("note", ""), form.get("link", "")
        try:
            add_note(web.settings, web.engine, action_id, user.name, text, link)
        except ActionError as exc:
            return _render_action(web, request, user, action_id, status=400, error=str(exc))
        with session_scope(web.engine) as session:
            audit(session, user.name, "evidence" if link.strip() else "note", f"action:{action_id}",
                  (text + " " + link).strip())
        return RedirectResponse(f"/actions/{action_id}?done=note", status_code=303)

    @app.post("/actions/{action_id}/assign")
    async def reassign(request: Request, action_id: int) -> Response:
        user = web.user(request)
        form = await web.form(request)
        _action_for(web, user, action_id)
        if not access.can_assign(user):
            raise Refused(403, "only an admin can reassign an action")
        department, text = form.get("department", ""), form.get("note", "")
        try:
            assign(web.settings, web.engine, action_id, department, user.name, text)
        except ActionError as exc:
            return _render_action(web, request, user, action_id, status=409, error=str(exc))
        with session_scope(web.engine) as session:
            audit(session, user.name, "assign", f"action:{action_id}", f"to {department}: {text}".strip())
        return RedirectResponse(f"/actions/{action_id}?done=assign", status_code=303)


def _render_action(web: Web, request: Request, user: WebUser, action_id: int, status: int = 200,
                   error: str | None = None) -> Response:
    detail = action_detail(web.engine, action_id)
    action: Action = detail["action"]
    lang = web.lang(user)
    refused = request.query_params.get("refused")
    if error is None and refused in STATUS_WORDS:
        allowed = ", ".join(sorted(lifecycle.ALLOWED.get(action.status, set()))) or "none (it is final)"
        error = (f"action {action_id} is {action.status}: cannot move to {STATUS_WORDS[refused]} "
                 f"(allowed: {allowed})")
    done = request.query_params.get("done")
    measurements = [(m, verdict_label(m.verdict, lang)) for m in detail["measurements"]]
    return web.page(
        request, "action.html", user, status=status, action=action,
        lab=labels(web.settings, action, lang, today(web)), events=detail["events"],
        measurements=measurements,
        moves=[(w, MOVE_LABELS[w]) for w in access.moves_for(user, action)],
        can_note=access.can_work_on(user, action), can_assign=access.can_assign(user),
        error=error, done=done if done in (*STATUS_WORDS, "note", "assign") else None,
        confidence=f"{web.settings.kpis.confidence * 100:.0f}")
