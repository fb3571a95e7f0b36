"""Issue 19: follow-up cases from collected responses - rules, consent, routing, merging,
re-runs and the lifecycle, on SQLite and PostgreSQL, from a real CSV through the real collect."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from cxloop.config import ConfigError, Settings, settings_from_dict
from cxloop.db import session_scope
from cxloop.models import CaseEvent, CaseResponse, CustomerContact, FollowupCase
from cxloop.tasks.cases.lifecycle import CaseTransitionError, transition
from cxloop.tasks.cases.opening import open_cases
from cxloop.tasks.collect import collect_period

P = "2026-10"
NOW = datetime(2026, 10, 9, 1, 0, tzinfo=UTC)
HEADER = "id,time,dept,stage,cust,nps,csat,complaint,ok,name,phone,email,comment\n"


def write_csv(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(exist_ok=True)
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def project(tmp_path: Path, engine: Engine, **cases: Any) -> Settings:
    data: dict[str, Any] = {
        "database": {"url": str(engine.url.render_as_string(hide_password=False))},
        "sources": [{"name": "survey", "kind": "csv", "path": "data/*.csv", "columns": {
            "response_id": "id", "submitted_at": "time", "department": "dept", "journey_stage": "stage",
            "customer_id": "cust", "nps": "nps", "csat": "csat", "is_complaint": "complaint",
            "contact_ok": "ok", "contact_name": "name", "contact_phone": "phone",
            "contact_email": "email", "comment": "comment"}, "channel": "web"}],
        "departments": {
            "logistics": {"name": "物流部", "notify": [], "owns": {"journey_stage": ["delivery"]}},
            "service": {"name": "Service", "language": "en", "notify": []},
        },
        "cases": {"rules": [{"name": "detractor", "nps_max": 6},
                            {"name": "complaint", "complaint": True, "queue": "complaints"}],
                  "merge_window_days": 7, **cases},
    }
    (tmp_path / "data").mkdir(exist_ok=True)
    return settings_from_dict(data, base_dir=tmp_path, env={})


ROWS = [
    # id, time (Shanghai), dept, stage, customer, nps, csat, complaint, consent, name, phone, email, comment
    "r1,2026-10-08 10:00,,delivery,c1,3,,no,yes,张三,13812345678,zs@example.com,快递三天没到",
    "r2,2026-10-08 11:00,service,,c2,9,,yes,yes,Ann,13912345678,,rude agent",
    "r3,2026-10-08 12:00,service,,c3,2,,no,no,李四,13712345678,,没人回电话",  # no consent
    "r4,2026-10-08 13:00,service,,c4,10,,no,yes,王五,13612345678,,很好",  # happy
    "r5,2026-10-08 14:00,,,c1,4,,no,yes,张三,13812345678,,还是没到",  # c1 again: merged
]


def cases(engine: Engine) -> list[FollowupCase]:
    with Session(engine) as s:
        return list(s.exec(select(FollowupCase).order_by(FollowupCase.id)).all())  # type: ignore[arg-type]


def test_rules_open_cases_only_with_consent_routed_and_merged(tmp_path: Path, engine: Engine) -> None:
    settings = project(tmp_path, engine)
    write_csv(tmp_path / "data" / "oct.csv", ROWS)
    collect_period(settings, engine, P)
    summary = open_cases(settings, engine, NOW)
    assert summary.considered == 5 and summary.merged == 1 and len(summary.opened) == 2
    c1, c2 = cases(engine)
    assert (c1.customer_id, c1.department, c1.queue, c1.responses, c1.rules) == (
        "c1", "logistics", None, 2, ["detractor"])  # routed by ownership of the stage
    assert (c2.customer_id, c2.department, c2.queue, c2.rules) == (
        "c2", "service", "complaints", ["complaint"])
    assert all(c.status == "new" for c in (c1, c2))
    # The SLA clock: 24 working hours from Thu 10:00 Shanghai (9-18, Mon-Fri) is Mon 16:00.
    assert c1.contact_due.replace(tzinfo=UTC) == datetime(2026, 10, 12, 8, 0, tzinfo=UTC)
    with Session(engine) as s:
        assert len(s.exec(select(CaseResponse)).all()) == 3
        contacts = s.exec(select(CustomerContact).order_by(CustomerContact.response_id)).all()
    # Contact details only for consenting customers, and never in the feedback table.
    assert sorted(c.response_id for c in contacts) == ["r1", "r2", "r4", "r5"]
    with engine.connect() as conn:
        dump = " ".join(str(r) for r in conn.execute(text("SELECT * FROM feedback")).all())
    assert "1381234" not in dump and "13712345678" not in dump and "zs@example.com" not in dump


def test_rerunning_a_day_and_recollecting_open_nothing_twice(tmp_path: Path, engine: Engine) -> None:
    settings = project(tmp_path, engine)
    write_csv(tmp_path / "data" / "oct.csv", ROWS)
    collect_period(settings, engine, P)
    open_cases(settings, engine, NOW)
    collect_period(settings, engine, P)  # the same export again, as the next day's import would
    again = open_cases(settings, engine, NOW)
    assert again.considered == 0 and again.opened == [] and len(cases(engine)) == 2
    # The next day's export holds yesterday's rows and one new detractor.
    write_csv(tmp_path / "data" / "oct.csv",
              [*ROWS, "r6,2026-10-09 09:30,service,,c6,0,,no,true,Bo,13512345678,,bad"])
    collect_period(settings, engine, P)
    nxt = open_cases(settings, engine, NOW)
    assert nxt.considered == 1 and len(nxt.opened) == 1 and len(cases(engine)) == 3


def test_a_resurvey_sets_the_outcome(tmp_path: Path, engine: Engine) -> None:
    settings = project(tmp_path, engine)
    write_csv(tmp_path / "data" / "oct.csv", ROWS[:2])
    collect_period(settings, engine, P)
    open_cases(settings, engine, NOW)
    c1, c2 = cases(engine)
    with session_scope(engine) as s:
        for case in (s.get(FollowupCase, c1.id), s.get(FollowupCase, c2.id)):
            assert case is not None
            transition(s, case, "contacted", by="ann", at=datetime(2026, 10, 8, 6, 0, tzinfo=UTC))
    write_csv(tmp_path / "data" / "oct.csv", [*ROWS[:2],
              "r7,2026-10-12 10:00,,delivery,c1,9,,no,yes,张三,13812345678,,这次准时",
              "r8,2026-10-12 11:00,service,,c2,2,,no,yes,Ann,13912345678,,still bad"])
    collect_period(settings, engine, P)
    summary = open_cases(settings, engine, NOW)
    assert summary.resurveyed == 2
    by_customer = {c.customer_id: c for c in cases(engine)}
    assert (by_customer["c1"].resurvey_score, by_customer["c1"].outcome) == (9, "recovered")
    assert (by_customer["c2"].resurvey_score, by_customer["c2"].outcome) == (2, "not_recovered")
    # c2 was contacted, so its new complaint joins that open case (within the window).
    assert by_customer["c2"].responses == 2


def test_lifecycle_rules_and_history(tmp_path: Path, engine: Engine) -> None:
    settings = project(tmp_path, engine)
    write_csv(tmp_path / "data" / "oct.csv", ROWS[:1])
    collect_period(settings, engine, P)
    [opened] = open_cases(settings, engine, NOW).opened
    with session_scope(engine) as s:
        case = s.get(FollowupCase, opened)
        assert case is not None
        with pytest.raises(CaseTransitionError, match="cannot move to resolved"):
            transition(s, case, "resolved", by="ann", note="x")
        transition(s, case, "contacted", by="ann", note="called")
        with pytest.raises(CaseTransitionError, match="needs a note"):
            transition(s, case, "resolved", by="ann")
        transition(s, case, "resolved", by="ann", note="refunded", root_cause="delivery_delay")
        with pytest.raises(CaseTransitionError, match="closed"):
            transition(s, case, "contacted", by="ann")
    [case] = cases(engine)
    assert case.status == "resolved" and case.root_cause == "delivery_delay"
    assert case.contacted_at is not None and case.closed_at is not None
    with Session(engine) as s:
        events = s.exec(select(CaseEvent).where(CaseEvent.case_id == opened).order_by(CaseEvent.id)).all()  # type: ignore[arg-type]
    assert [(e.from_status, e.to_status) for e in events] == [
        (None, "new"), ("new", "contacted"), ("contacted", "resolved")]


@pytest.mark.parametrize(("rules", "message"), [
    ([{"name": "empty"}], "cases.rules.0: Value error, rule 'empty' has no condition"),
    ([{"name": "x", "nps_max": 11}], "cases.rules[0].nps_max"),
    ([{"name": "x", "topics": ["nope"]}], "cases.rules[0] (x).topics: unknown topic(s) ['nope']"),
    ([{"name": "x", "complaint": True}, {"name": "x", "nps_max": 3}], "duplicate rule name(s) ['x']"),
])
def test_invalid_rules_name_the_key(tmp_path: Path, rules: list[dict[str, Any]], message: str) -> None:
    topics = [{"id": "delivery", "name_zh": "配送", "name_en": "Delivery"}]
    data = {"cases": {"rules": rules}, "topics": topics}
    with pytest.raises(ConfigError) as exc:
        settings_from_dict(data, base_dir=tmp_path, env={})
    assert message.replace("cases.rules.0: Value error, ", "") in str(exc.value)


def test_a_rule_topic_is_checked_against_the_shipped_taxonomy_without_topics(tmp_path: Path) -> None:
    """Without [[topics]] the shipped taxonomy applies: a typo must not load as a rule that never matches."""
    rules = [{"name": "late", "topics": ["delivery"]}, {"name": "typo", "topics": ["delivry"]}]
    with pytest.raises(ConfigError) as exc:
        settings_from_dict({"cases": {"rules": rules}}, base_dir=tmp_path, env={})
    assert "cases.rules[1] (typo).topics: unknown topic(s) ['delivry']" in str(exc.value)
    settings_from_dict({"cases": {"rules": rules[:1]}}, base_dir=tmp_path, env={})


def test_calendar_keys_are_checked(tmp_path: Path) -> None:
    for cases_cfg, key in (({"working_hours": ["18:00", "09:00"]}, "cases.working_hours"),
                           ({"working_days": [0]}, "cases.working_days"),
                           ({"schedule": "every day"}, "cases.schedule")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            settings_from_dict({"cases": cases_cfg}, base_dir=tmp_path, env={})
