"""CX linked to outcomes (cxloop.tasks.outcomes): the join window, per-group outcomes with intervals,
the value of one NPS point and complaints per 1,000 orders, on data with a planted truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxloop.tasks.outcomes import (
    ASSOCIATION_NOTE,
    join_outcomes,
    nps_groups,
    outcome_by_group,
    rate_per_thousand,
    value_of_one_point,
)


def test_nps_groups_follow_the_standard_cut_points() -> None:
    assert list(nps_groups([0, 6, 7, 8, 9, 10, np.nan])) == [
        "detractor", "detractor", "passive", "passive", "promoter", "promoter", None]


def planted_visits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Later visits are Poisson with mean 2 (detractors), 3 (passives), 4 (promoters)."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 11, size=n)
    mean = np.select([scores >= 9, scores >= 7], [4.0, 3.0], 2.0)
    return scores.astype(float), rng.poisson(mean).astype(float)


def test_outcome_per_group_covers_the_planted_means() -> None:
    scores, visits = planted_visits(3000, seed=1)
    result = {g.group: g for g in outcome_by_group(scores, visits, seed_key=("t",))}
    for group, truth in (("detractor", 2.0), ("passive", 3.0), ("promoter", 4.0)):
        g = result[group]
        assert g.low is not None and g.high is not None
        assert g.low <= truth <= g.high, (group, g)
        assert g.high - g.low < 0.5
    assert result["detractor"].n + result["passive"].n + result["promoter"].n == 3000


def test_a_churn_flag_is_a_rate_with_a_wilson_interval() -> None:
    scores = np.array([10.0] * 100 + [3.0] * 100)
    churned = np.array([1.0] * 5 + [0.0] * 95 + [1.0] * 30 + [0.0] * 70)
    result = {g.group: g for g in outcome_by_group(scores, churned, flag=True)}
    assert result["promoter"].value == pytest.approx(5.0)
    assert result["detractor"].value == pytest.approx(30.0)
    assert result["passive"].n == 0 and result["passive"].value is None
    assert result["detractor"].low == pytest.approx(21.9, abs=0.1)  # Wilson 30/100


def test_value_of_one_nps_point_recovers_the_planted_slope() -> None:
    """Visits rise 1 per 100 points of contribution: one NPS point is worth 0.01 visits per customer."""
    scores, visits = planted_visits(5000, seed=2)
    value = value_of_one_point(scores, visits)
    assert value is not None
    assert value.low <= 0.01 <= value.high
    assert value.high - value.low < 0.004
    flat = value_of_one_point(scores, np.random.default_rng(3).poisson(3.0, size=5000).astype(float))
    assert flat is not None and flat.low <= 0.0 <= flat.high  # no association: the interval holds 0
    assert value_of_one_point([10, 9, 10], [1.0, 2.0, 3.0]) is None  # one group: no slope
    assert "not proof" in ASSOCIATION_NOTE["en"] and "不能证明" in ASSOCIATION_NOTE["zh"]


def test_complaints_per_thousand_orders_with_exact_poisson_interval() -> None:
    rate = rate_per_thousand(12, 4000)
    assert rate is not None
    value, lo, hi = rate
    assert value == pytest.approx(3.0)
    assert lo == pytest.approx(1.550, abs=0.01) and hi == pytest.approx(5.240, abs=0.01)  # Garwood 12
    zero = rate_per_thousand(0, 1000)
    assert zero is not None and zero[1] == 0.0 and zero[2] == pytest.approx(3.689, abs=0.01)
    assert rate_per_thousand(3, 0) is None


def test_join_counts_only_what_happens_inside_the_window_after_the_response() -> None:
    responses = pd.DataFrame({
        "response_id": ["r1", "r2", "r3"],
        "customer_id": ["c1", "c2", None],
        "submitted_at": ["2026-01-10T12:00:00Z", "2026-01-20T00:00:00Z", "2026-01-10T00:00:00Z"],
        "nps": [10, 3, 8],
    })
    outcomes = pd.DataFrame({
        "customer_id": ["c1", "c1", "c1", "c1", "c2"],
        "date": ["2026-01-05", "2026-01-11", "2026-02-01", "2026-05-01", "2026-01-25"],
        "spend": [100.0, 20.0, 30.0, 999.0, 5.0],
        "visits": [1, 1, 1, 1, 1],
        "churned": [0, 0, 0, 0, 1],
    })
    joined = join_outcomes(responses, outcomes, 30, ["spend", "visits"], ["churned"]).set_index("response_id")
    assert list(joined.index) == ["r1", "r2"]  # r3 has no customer id
    assert joined.loc["r1", "spend"] == 50.0  # before the answer and after 30 days left out
    assert joined.loc["r1", "visits"] == 2.0
    assert joined.loc["r1", "churned"] == 0.0 and joined.loc["r2", "churned"] == 1.0
    with pytest.raises(ValueError):
        join_outcomes(responses, outcomes, 0, ["spend"])
