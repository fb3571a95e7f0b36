"""The web workspace's application: `create_app(settings, engine)` (no globals, so tests and the
bench run several side by side). Routes live in `routes_*.py`; who may do what in `access.py`;
sign-in, sessions and CSRF in `auth.py`.

Every page is rendered by the same Jinja2 environment as the notices and the report (autoescaped
`.html`), carries no script at all, and is served with a Content-Security-Policy that allows none,
so a `<script>` a customer or a user wrote can only ever be text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Engine, func
from sqlmodel import Session, select
from starlette.exceptions import HTTPException as StarletteHTTPException

from cxloop.config import Settings
from cxloop.models import KpiResult, WebUser, utcnow
from cxloop.periods import parse_period
from cxloop.tasks.rendering import render
from cxloop.web.auth import (
    SESSION_COOKIE,
    SessionData,
    csrf_ok,
    csrf_token,
    dump_session,
    load_session,
    new_session,
    secret_key,
    session_user,
)
from cxloop.web.views import ReportCache

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a sign-in link in the address bar is never sent on
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class Refused(Exception):
    """A request answered with an error page: 400 bad input, 403 not yours, 404 none such."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SignInNeeded(Exception):
    """No signed-in user: the browser goes to the sign-in page and comes back afterwards."""


@dataclass
class Web:
    """What every route needs: the config, the database, the key, and the cookie policy; `clock`
    is the time sign-in limits count in (a test sets it)."""

    settings: Settings
    engine: Engine
    key: bytes
    reports: ReportCache = field(default_factory=ReportCache)
    clock: Callable[[], datetime] = utcnow

    @property
    def secure_cookies(self) -> bool:
        return (self.settings.web.base_url or "").lower().startswith("https://")

    @property
    def session_seconds(self) -> float:
        return self.settings.web.session_hours * 3600

    def session(self, request: Request) -> SessionData:
        """The browser's session (a fresh anonymous one when it has none yet or it is invalid)."""
        cached = getattr(request.state, "cx_session", None)
        if cached is not None:
            return cached
        data = load_session(self.key, request.cookies.get(SESSION_COOKIE), self.session_seconds)
        if data is None:
            data = new_session()
            request.state.cx_new_session = data
        request.state.cx_session = data
        return data

    def user(self, request: Request) -> WebUser:
        """The signed-in user, or SignInNeeded."""
        user = session_user(self.engine, self.session(request))
        if user is None:
            raise SignInNeeded()
        return user

    def lang(self, user: WebUser | None) -> str:
        if user is not None and user.department:
            return self.settings.department_language(user.department)
        return self.settings.project.language

    async def form(self, request: Request) -> dict[str, str]:
        """A POSTed form, refused (403) unless it carries this session's CSRF token."""
        form = await request.form()
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        if not csrf_ok(self.key, self.session(request), values.get("csrf")):
            raise Refused(403, "the form has expired or did not come from this site; reload the page "
                               "and try again")
        return values

    def set_session(self, response: Response, data: SessionData) -> None:
        response.set_cookie(SESSION_COOKIE, dump_session(self.key, data), max_age=int(self.session_seconds),
                            httponly=True, samesite="lax", secure=self.secure_cookies, path="/")

    def page(self, request: Request, template: str, user: WebUser | None, status: int = 200,
             **context: Any) -> HTMLResponse:
        lang = self.lang(user)
        html = render(f"web/{template}", lang, user=user, csrf=csrf_token(self.key, self.session(request)),
                      project=self.settings.project.name, departments=self.department_names(),
                      request_path=request.url.path, **context)
        response = HTMLResponse(html, status_code=status)
        fresh = getattr(request.state, "cx_new_session", None)
        if fresh is not None:
            self.set_session(response, fresh)
        return response

    def department_names(self) -> dict[str, str]:
        names = {d: c.name for d, c in self.settings.departments.items()}
        names.setdefault(self.settings.actions.default_owner, self.settings.actions.default_owner)
        return names

    def period(self, request: Request) -> str | None:
        """`?period=YYYY-MM`, else the latest period with KPIs (never today's date)."""
        asked = request.query_params.get("period")
        if asked:
            try:
                return parse_period(asked)
            except ValueError as exc:
                raise Refused(400, f"period: {exc}") from None
        with Session(self.engine) as session:
            return session.exec(select(func.max(KpiResult.period))).first()


def create_app(settings: Settings, engine: Engine, clock: Callable[[], datetime] = utcnow) -> FastAPI:
    """The workspace for one config and one (migrated) database."""
    from cxloop.web import routes_actions, routes_auth, routes_cases, routes_pages

    web = Web(settings, engine, secret_key(settings), clock=clock)
    app = FastAPI(title=f"{settings.project.name} workspace", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.web = web

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, _exc: SignInNeeded) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            return web.page(request, "error.html", None, status=401,
                            message="you are not signed in (any more); sign in and try again")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        user = session_user(engine, web.session(request))
        return web.page(request, "error.html", user, status=exc.status, message=exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        user = session_user(engine, web.session(request))
        return web.page(request, "error.html", user, status=exc.status_code, message=str(exc.detail))

    routes_auth.register(app, web)
    routes_pages.register(app, web)
    routes_actions.register(app, web)
    routes_cases.register(app, web)
    return app
