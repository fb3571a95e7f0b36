"""Issue 19, item 6: follow-up cases back in the monthly loop - follow-up rate, time to first
contact (median, p90), SLA share and recovery rate per scope with n and an interval, judged against
`[targets]`, opening actions like any KPI; a period without cases shows none of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import binom
from sqlalchemy import Engine
from sqlmodel import Session, select

from cxloop.config import Settings, settings_from_dict
from cxloop.db import session_scope
from cxloop.models import Action, FollowupCase
from cxloop.tasks import stats
from cxloop.tasks.actions import open_actions
from cxloop.tasks.cases import kpis as case_kpis
from cxloop.tasks.kpis import compute_kpis
from cxloop.vocabulary import CASE_KPIS, KPIS, kpi_label

P = "2026-10"
MON_9 = datetime(2026, 10, 12, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai
AS_OF = datetime(2026, 11, 2, 4, 0, tzinfo=UTC)  # Monday 12:00 in Shanghai


def project(tmp_path: Path, engine: Engine, targets: list[dict[str, Any]] | None = None) -> Settings:
    data: dict[str, Any] = {
        "database": {"url": str(engine.url.render_as_string(hide_password=False))},
        "departments": {"logistics": {"name": "物流部", "notify": []},
                        "service": {"name": "Service", "language": "en", "notify": []}},
        "cases": {"rules": [{"name": "detractor", "nps_max": 6}]},
        "kpis": {"min_n": 5},
        "decisions": {"actionable_n": 5},  # a department has tens of cases a month, not hundreds
        "targets": targets or [],
    }
    return settings_from_dict(data, base_dir=tmp_path, env={})


def case(n: int, dept: str, opened: datetime, *, contacted_h: float | None = None,
         contacted_at: datetime | None = None, closed_at: datetime | None = None,
         status: str | None = None, outcome: str | None = None, due: datetime | None = None) -> FollowupCase:
    """A case opened at `opened` with its first-contact deadline 24 working hours later (given)."""
    if contacted_h is not None:
        contacted_at = opened + timedelta(hours=contacted_h)
    return FollowupCase(
        case_key=f"survey:r{n}", customer_id=f"c{n}", department=dept, period=P, opened_at=opened,
        contact_due=due or opened + timedelta(days=2, hours=9),  # Mon 09:00 -> Wed 18:00
        close_due=opened + timedelta(days=7), contacted_at=contacted_at, closed_at=closed_at,
        status=status or ("contacted" if contacted_at else "new"), outcome=outcome)


def month_of_cases() -> list[FollowupCase]:
    late = datetime(2026, 10, 15, 2, 0, tzinfo=UTC)  # Thursday 10:00: 28 working hours after Mon 09:00
    return [
        # logistics: 10 cases, 6 contacted (5 within the deadline), 3 re-surveyed (2 recovered)
        case(1, "logistics", MON_9, contacted_h=1, outcome="recovered"),
        case(2, "logistics", MON_9, contacted_h=2, outcome="recovered"),
        case(3, "logistics", MON_9, contacted_h=3, outcome="not_recovered"),
        case(4, "logistics", MON_9, contacted_h=4),
        case(5, "logistics", MON_9, contacted_h=5),
        case(6, "logistics", MON_9, contacted_at=late),
        case(7, "logistics", MON_9),  # never contacted, deadline passed: breached
        case(8, "logistics", MON_9, closed_at=MON_9 + timedelta(hours=3), status="declined"),  # before it
        case(9, "logistics", MON_9, closed_at=datetime(2026, 10, 20, tzinfo=UTC), status="unreachable"),
        # Friday 30 October 17:00: due Wednesday 4 November 14:00, still inside its deadline on AS_OF
        case(10, "logistics", datetime(2026, 10, 30, 9, 0, tzinfo=UTC),
             due=datetime(2026, 11, 4, 6, 0, tzinfo=UTC)),
        # service: 2 cases, 1 contacted after 2 working hours
        case(11, "service", MON_9, contacted_h=2),
        case(12, "service", MON_9),
    ]


def store(engine: Engine, cases: list[FollowupCase]) -> None:
    with session_scope(engine) as s:
        s.add_all(cases)


def by_key(rows: Any) -> dict[tuple[str, str, str], Any]:
    return {(r.kpi, r.scope, r.scope_value): r for r in rows}


def test_order_statistic_interval_is_the_textbook_one_and_covers() -> None:
    values = np.arange(1.0, 101.0)
    # n = 100, median, 95%: the 40th and 61st order statistics (Hahn & Meeker, table A.15).
    assert stats.order_statistic_intervals([(values, np.ones(100))], 0.5) == [(40.0, 61.0)]
    for n, q in ((20, 0.5), (50, 0.9), (300, 0.9)):
        (lo, hi), = stats.order_statistic_intervals([(np.arange(1.0, n + 1), np.ones(n))], q)
        assert lo is not None and hi is not None
        assert binom.cdf(hi - 1, n, q) - binom.cdf(lo - 1, n, q) >= 0.95  # exact coverage
    # A histogram: ranks fall into bins. 10 values, p90: no 95% upper bound exists, the sample max.
    (lo, hi), = stats.order_statistic_intervals([(np.array([1.0, 2.0, 7.0]), np.array([5.0, 4.0, 1.0]))], 0.9)
    assert (lo, hi) == (2.0, 7.0)
    assert stats.order_statistic_intervals([(np.zeros(0), np.zeros(0))], 0.5) == [(None, None)]


def test_case_kpis_are_named_in_both_languages() -> None:
    assert set(CASE_KPIS) <= set(KPIS)
    for kpi in CASE_KPIS:
        assert kpi_label(kpi, "en") != kpi and kpi_label(kpi, "zh") != kpi_label(kpi, "en")


def test_case_facts_count_what_was_decided(tmp_path: Path, engine: Engine) -> None:
    settings = project(tmp_path, engine)
    store(engine, month_of_cases())
    hist = case_kpis.case_histograms(settings, engine, P, as_of=AS_OF)
    got = {(r.scope_value, r.family, r.bin): r.count for r in hist.itertuples()}
    assert (got[("logistics", "case_contacted", 1.0)], got[("logistics", "case_contacted", 0.0)]) == (6, 4)
    # SLA: 5 in time, 1 late; #7 and #9 (closed after its deadline) breached; #8 (closed before
    # it) and #10 (still inside it) undecided.
    sla = (got[("logistics", "case_contact_sla", 1.0)], got[("logistics", "case_contact_sla", 0.0)])
    assert sla == (5, 3)
    first = {b: c for (v, f, b), c in got.items() if v == "logistics" and f == "case_first_contact"}
    assert first == {1.0: 1, 2.0: 1, 3.0: 1, 4.0: 1, 5.0: 1, 28.0: 1}  # working hours, not wall hours
    assert (got[("logistics", "case_recovered", 1.0)], got[("logistics", "case_recovered", 0.0)]) == (2, 1)
    assert not any(v == "service" and f == "case_recovered" for v, f, _ in got)  # no re-survey
    assert got[("all", "case_contacted", 1.0)] == 7
    # A week later #10's deadline has passed too.
    later = case_kpis.case_histograms(settings, engine, P, as_of=AS_OF + timedelta(days=7))
    assert int(later[(later.scope_value == "logistics") & (later.family == "case_contact_sla")
                     & (later.bin == 0.0)]["count"].iloc[0]) == 4
    assert case_kpis.case_histograms(settings, engine, "2026-09", as_of=AS_OF).empty


def test_case_kpis_in_the_cycle_with_targets_and_an_action(tmp_path: Path, engine: Engine,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(case_kpis, "utcnow", lambda: AS_OF)
    settings = project(tmp_path, engine, targets=[
        {"kpi": "followup_rate", "scope": "department", "value": 95},
        {"kpi": "first_contact_hours", "scope": "department", "value": 8},
    ])
    store(engine, month_of_cases())
    rows = by_key(compute_kpis(settings, engine, P))
    rate = rows[("followup_rate", "department", "logistics")]
    assert (rate.n, rate.value, rate.method) == (10, 60.0, "wilson")
    lo, hi = stats.wilson(6, 10)
    assert (rate.ci_low, rate.ci_high) == (lo, hi) and rate.target == 95 and rate.status == "missed"
    median = rows[("first_contact_hours", "department", "logistics")]
    assert (median.n, median.value, median.method, median.status) == (6, 3.5, "order_statistic", "met")
    assert median.ci_low is not None and median.ci_high is not None
    assert median.ci_low <= 3.5 <= median.ci_high
    p90 = rows[("first_contact_p90", "department", "logistics")]
    assert (p90.value, p90.ci_high) == (28.0, 28.0)
    sla = rows[("first_contact_sla", "department", "logistics")]
    assert (sla.n, sla.value) == (8, 62.5)
    recovery = rows[("recovery_rate", "department", "logistics")]
    assert recovery.n == 3 and recovery.value == pytest.approx(200 / 3)
    overall = rows[("followup_rate", "overall", "all")]
    assert (overall.n, overall.value) == (12, pytest.approx(700 / 12))
    assert ("recovery_rate", "department", "service") not in rows  # nothing re-surveyed: no 0/0
    assert rows[("followup_rate", "department", "service")].status == "insufficient"  # n 2 < min_n 5
    # The logistics follow-up rate misses its target beyond noise: an action like any KPI's.
    summary = open_actions(settings, engine, P)
    assert summary.opened >= 1
    with Session(engine) as s:
        acts = s.exec(select(Action).where(Action.kpi == "followup_rate")).all()
    assert [(a.scope, a.scope_value, a.department) for a in acts] == [
        ("department", "logistics", "logistics")]


def test_a_period_without_cases_shows_no_case_kpi(tmp_path: Path, engine: Engine) -> None:
    settings = project(tmp_path, engine, targets=[{"kpi": "followup_rate", "scope": "overall", "value": 90}])
    store(engine, month_of_cases())
    rows = compute_kpis(settings, engine, "2026-09")
    assert rows and not [r for r in rows if r.kpi in CASE_KPIS]
    assert [r.kpi for r in rows if r.scope == "overall"][:1] == ["nps"]  # the headline stays


def test_report_section_closes_the_loop_without_contact_details(tmp_path: Path, engine: Engine,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from cxloop.tasks.cases.opening import open_cases
    from cxloop.tasks.collect import collect_period
    from cxloop.tasks.report import render_report
    from tests.test_cases import NOW, ROWS, write_csv
    from tests.test_cases import project as collecting_project

    monkeypatch.setattr(case_kpis, "utcnow", lambda: AS_OF)
    settings = collecting_project(tmp_path, engine)
    write_csv(tmp_path / "data" / "oct.csv", ROWS)
    collect_period(settings, engine, P)
    opened = open_cases(settings, engine, NOW).opened
    with session_scope(engine) as s:
        first = s.get(FollowupCase, opened[0])
        assert first is not None
        first.escalated = ["contact"]  # as the daily run records a breach it escalated
    compute_kpis(settings, engine, P)
    contacts = ["13812345678", "13912345678", "13712345678", "13612345678", "zs@example.com", "张三",
                "王五", "李四"]
    for dept, lang, title in ((None, "zh", "客户闭环跟进"), (None, "en", "Closing the loop with customers"),
                              ("logistics", "zh", "客户闭环跟进")):
        html = render_report(settings, engine, P, dept, lang)
        section = html.split('<section id="cases">', 1)[1].split("</section>", 1)[0]
        assert title in section
        assert 'data-kpi="followup_rate"' in section and 'data-case-status="new"' in section
        assert 'data-cases="breached_contact">1<' in section and f'data-case="{opened[0]}"' in section
        for secret in contacts:
            assert secret not in html, (dept, lang, secret)
    # The service page shows its own case; a period without cases has no section at all.
    service = render_report(settings, engine, P, "service", "en")
    assert 'data-cases="opened">1<' in service and 'data-cases="breached_contact">0<' in service
    compute_kpis(settings, engine, "2026-09")
    assert '<section id="cases">' not in render_report(settings, engine, "2026-09", None, "en")
