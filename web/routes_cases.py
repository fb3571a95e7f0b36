"""The follow-up case list, one case's page, and working a case from the browser (issue 19): the
same lifecycle as `cxloop cases` (a refused move says which moves are allowed), each change in the
case's history with who and when, and in the audit log in the same transaction.

The audit entry names the move, not the note: a note may quote the customer, and `cxloop
customers forget` clears the case's notes - a copy in the audit log would outlive the request.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from cxloop.db import session_scope
from cxloop.models import FollowupCase, WebUser
from cxloop.tasks.actions import NOTE_CHARS
from cxloop.tasks.cases.contacts import shown
from cxloop.tasks.cases.detail import case_detail
from cxloop.tasks.cases.lifecycle import NEEDS_NOTE, CaseTransitionError, add_note, set_root_cause, transition
from cxloop.web import access
from cxloop.web.app import Refused, Web
from cxloop.web.case_views import (
    MOVE_LABELS,
    PAGE_SIZE,
    STATUS_CHOICE_LABELS,
    STATUS_CHOICES,
    STATUS_LABELS,
    CaseFilterError,
    CaseFilters,
    case_labels,
    find_cases,
    local,
    root_causes,
    status_label,
)
from cxloop.web.routes_actions import int_param
from cxloop.web.users import audit

DONE = ("contacted", "resolved", "unreachable", "declined", "note", "root_cause")


def _case_for(web: Web, user: WebUser, case_id: int) -> FollowupCase:
    """The case, if this user may see it: 404 when there is none, 403 when it is not theirs."""
    with Session(web.engine) as session:
        case = session.get(FollowupCase, case_id)
    if case is None:
        raise Refused(404, f"no case with id {case_id}")
    if not access.can_see_case(user, case):
        raise Refused(403, f"case {case_id} belongs to another department")
    return case


def _workable(web: Web, user: WebUser, case_id: int) -> FollowupCase:
    case = _case_for(web, user, case_id)
    if not access.can_work_on_case(user, case):
        raise Refused(403, f"your role ({user.role}) cannot change case {case_id}")
    return case


def _load(session: Session, case_id: int) -> FollowupCase:
    """The case again, in the transaction that changes it (cases are never deleted)."""
    case = session.get(FollowupCase, case_id)
    if case is None:
        raise Refused(404, f"no case with id {case_id}")
    return case


def _note(form: dict[str, str]) -> str:
    note = form.get("note", "").strip()
    if len(note) > NOTE_CHARS:
        raise Refused(400, f"a note is at most {NOTE_CHARS} characters, not {len(note)}")
    return note


def register(app: FastAPI, web: Web) -> None:
    @app.get("/cases")
    def case_list(request: Request) -> Response:
        user = web.user(request)
        q = request.query_params
        filters = CaseFilters(status=q.get("status", "open"), breached=q.get("breached") == "1",
                              department=q.get("department", ""), page=int_param(q.get("page"), "page", 1))
        if filters.department and not access.can_see_department(user, filters.department):
            raise Refused(403, f"department {filters.department!r} is not yours")
        now = web.clock()
        try:
            rows, total = find_cases(web.engine, filters, access.department_filter(user), now)
        except CaseFilterError as exc:
            raise Refused(400, f"status: {exc}") from None
        lang = web.lang(user)
        causes = root_causes(web.settings, lang)
        return web.page(request, "cases.html", user, filters=filters, total=total, page_size=PAGE_SIZE,
                        rows=[(c, case_labels(web.settings, c, lang, now, causes)) for c in rows],
                        statuses=[(s, STATUS_CHOICE_LABELS.get(s) or STATUS_LABELS[s])
                                  for s in STATUS_CHOICES],
                        may_filter_departments=access.department_filter(user) is None,
                        timezone=web.settings.project.timezone)

    @app.get("/cases/{case_id}")
    def case_page(request: Request, case_id: int) -> Response:
        user = web.user(request)
        _case_for(web, user, case_id)
        return _render_case(web, request, user, case_id)

    @app.post("/cases/{case_id}/move")
    async def move(request: Request, case_id: int) -> Response:
        user = web.user(request)
        form = await web.form(request)
        case = _workable(web, user, case_id)
        to, note = form.get("to", ""), _note(form)
        if to not in MOVE_LABELS:
            raise Refused(400, f"unknown move {to[:20]!r}; known: {', '.join(MOVE_LABELS)}")
        if to in NEEDS_NOTE and not note and to in access.case_moves_for(user, case):
            return _render_case(web, request, user, case_id, status=400,
                                error=f"closing case {case_id} as {to} needs a note: say what happened")
        try:
            with session_scope(web.engine) as session:
                current = _load(session, case_id)
                before = current.status
                transition(session, current, to, by=user.name, note=note)
                audit(session, user.name, to, f"case:{case_id}", f"{before} -> {to}")
        except CaseTransitionError as exc:
            return _render_case(web, request, user, case_id, status=409, error=str(exc))
        return RedirectResponse(f"/cases/{case_id}?done={to}", status_code=303)

    @app.post("/cases/{case_id}/note")
    async def note(request: Request, case_id: int) -> Response:
        user = web.user(request)
        form = await web.form(request)
        _workable(web, user, case_id)
        text = _note(form)
        try:
            with session_scope(web.engine) as session:
                add_note(session, _load(session, case_id), by=user.name, note=text)
                audit(session, user.name, "note", f"case:{case_id}")
        except CaseTransitionError as exc:
            return _render_case(web, request, user, case_id, status=400, error=str(exc))
        return RedirectResponse(f"/cases/{case_id}?done=note", status_code=303)

    @app.post("/cases/{case_id}/root-cause")
    async def root_cause(request: Request, case_id: int) -> Response:
        user = web.user(request)
        form = await web.form(request)
        _workable(web, user, case_id)
        tag = form.get("root_cause", "")
        try:
            with session_scope(web.engine) as session:
                case = _load(session, case_id)
                before = case.root_cause
                if set_root_cause(session, case, tag, by=user.name,
                                  known=root_causes(web.settings, "en")) is not None:
                    audit(session, user.name, "root_cause", f"case:{case_id}", f"{before or '-'} -> {tag}")
        except CaseTransitionError as exc:
            return _render_case(web, request, user, case_id, status=400, error=str(exc))
        return RedirectResponse(f"/cases/{case_id}?done=root_cause", status_code=303)


def _render_case(web: Web, request: Request, user: WebUser, case_id: int, status: int = 200,
                 error: str | None = None) -> Response:
    with Session(web.engine) as session:
        detail = case_detail(session, case_id)
    if detail is None:
        raise Refused(404, f"no case with id {case_id}")
    case = detail.case
    lang = web.lang(user)
    now: datetime = web.clock()
    causes = root_causes(web.settings, lang)
    visible = access.can_see_contact(user, case)
    done = request.query_params.get("done")
    return web.page(
        request, "case.html", user, status=status, case=case,
        lab=case_labels(web.settings, case, lang, now, causes),
        contact=shown(detail.contact, visible), contact_visible=visible,
        responses=[(local(web.settings, r.submitted_at), r) for r in detail.responses],
        events=[(local(web.settings, e.at), e) for e in detail.events],
        status_names={s: status_label(s, lang) for s in STATUS_LABELS},
        moves=[(m, MOVE_LABELS[m]) for m in access.case_moves_for(user, case)],
        needs_note=NEEDS_NOTE, can_work=access.can_work_on_case(user, case), causes=causes,
        timezone=web.settings.project.timezone, error=error, done=done if done in DONE else None)
