"""A seeded workspace for the web tests: a config with two departments, two open actions (NPS of
delivery for logistics, CSAT of hotline for service), accounts for every role, and a real uvicorn
server on loopback serving it. `seed_cases` adds follow-up cases opened by the real daily step."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from cxloop.config import Settings, load_settings
from cxloop.tasks.actions import list_actions, open_actions
from cxloop.web.users import add_user
from tests.test_actions import add_feedback, add_result

PASSWORD = "correct horse battery"
CONFIG = """
[project]
language = "en"
[database]
url = "{url}"
[web]
base_url = "{base_url}"
secret_key = "test-secret-key-that-is-long-enough-0123456789"
[departments.logistics]
name = "Logistics"
head = "Wang Li"
notify = {notify}
owns = {{ journey_stage = ["delivery"] }}
[departments.service]
name = "Customer Service"
head = "Anna Smith"
owns = {{ channel = ["hotline"] }}
"""
HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>"


@dataclass
class Workspace:
    config: Path
    settings: Settings
    engine: Engine
    logistics_action: int
    service_action: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(engine: Engine, db_url: str, tmp_path: Path, base_url: str = "http://127.0.0.1:1",
         notify: list[str] | None = None) -> Workspace:
    """`notify`: the routes of the logistics department's notices."""
    import json

    config = tmp_path / "cxloop.toml"
    config.write_text(CONFIG.format(url=db_url, base_url=base_url, notify=json.dumps(notify or [])),
                      encoding="utf-8")
    settings = load_settings(config, env={})
    add_result(engine, "2026-10", "nps", "journey_stage", "delivery")
    add_result(engine, "2026-10", "csat", "channel", "hotline", value=60, ci=(55, 65), target=80, n=80)
    add_feedback(engine, "2026-10", f"送货太慢 {HOSTILE}", journey_stage="delivery", nps=1)
    open_actions(settings, engine, "2026-10")
    ids = {a.department: a.id or 0 for a in list_actions(engine)}
    add_user(settings, engine, "admin", "admin", password=PASSWORD)
    add_user(settings, engine, "wang", "head", "logistics", display_name="Wang Li")
    add_user(settings, engine, "anna", "head", "service", password=PASSWORD, display_name="Anna Smith")
    add_user(settings, engine, "viewer", "viewer", password=PASSWORD)
    return Workspace(config, settings, engine, ids["logistics"], ids["service"])


@contextmanager
def serve(settings: Settings, engine: Engine, port: int | None = None,
          clock: Callable[[], datetime] | None = None) -> Iterator[str]:
    """The workspace on a real uvicorn server on loopback; yields its base URL. `clock`: the
    time the app counts sign-in attempts in."""
    import uvicorn

    from cxloop.web.app import create_app

    port = port or free_port()
    app = create_app(settings, engine, clock=clock) if clock else create_app(settings, engine)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


PHONE, OTHER_PHONE = "13812345678", "13912345678"
CASES_OPENED = datetime(2026, 10, 9, 1, 0, tzinfo=UTC)  # the daily run's time; deadlines from 8 Oct


@dataclass
class Cases:
    logistics: int  # customer c1: PHONE, a hostile comment
    service: int  # customer c2: OTHER_PHONE
    closed: int  # logistics, closed as unreachable


def seed_cases(ws: Workspace) -> Cases:
    """Three consenting detractors with contact details, opened into cases by the daily step
    (`open_cases`, with a detractor rule); the third case closed as unreachable. Wang (head of
    logistics) gets a password, and logistics a member, lee."""
    from cxloop.config import CaseRuleConfig, CasesConfig
    from cxloop.db import session_scope
    from cxloop.models import CustomerContact, Feedback, FollowupCase
    from cxloop.tasks.cases.lifecycle import transition
    from cxloop.tasks.cases.opening import open_cases
    from cxloop.web.users import reset_user

    rows = [("c1", "logistics", 2, f"没送到 {HOSTILE}", "张三", PHONE, "zs@example.com"),
            ("c2", "service", 3, "rude agent", "Ann", OTHER_PHONE, None),
            ("c3", "logistics", 1, "late", "李四", "13712345678", None)]
    with session_scope(ws.engine) as s:
        for i, (cust, dept, nps, comment, name, phone, email) in enumerate(rows):
            at = datetime(2026, 10, 8, 2 + i, 0, tzinfo=UTC)
            s.add(Feedback(source="survey", response_id=f"case-{cust}", period="2026-10", submitted_at=at,
                           channel="web", department=dept, customer_id=cust, nps=nps, comment=comment,
                           contact_ok=True, content_hash=f"case-{cust}"))
            s.add(CustomerContact(source="survey", response_id=f"case-{cust}", customer_id=cust, name=name,
                                  phone=phone, email=email, submitted_at=at))
    settings = ws.settings.model_copy(update={"cases": CasesConfig(
        rules=[CaseRuleConfig(name="detractor", nps_max=6)])})
    opened = open_cases(settings, ws.engine, CASES_OPENED).opened
    assert len(opened) == 3, opened
    with session_scope(ws.engine) as s:
        third = s.get(FollowupCase, opened[2])
        assert third is not None
        transition(s, third, "unreachable", by="cxloop-test", note="no answer three times",
                   at=CASES_OPENED)
    reset_user(ws.engine, "wang", PASSWORD)
    add_user(ws.settings, ws.engine, "lee", "member", "logistics", password=PASSWORD)
    return Cases(*opened)
