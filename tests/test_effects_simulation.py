"""Done-when simulation of issue 6 with known truth (fixed seeds, modest trial counts).

`python bench/effects.py` runs the same scenarios with more trials and prints the figures.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from cxloop.tasks.effects import estimate_effect

# The harness lives in bench/ (not a package); imported by name so type checkers of the whole
# tree do not see bench/effects.py under two module names.
_sim = importlib.import_module("bench.effects")
make_trial, run = _sim.make_trial, _sim.run

TRIALS = 100
RESAMPLES = 299


def test_real_effect_of_15_points_is_found_in_most_trials() -> None:
    r = run("effect", TRIALS, seed=11, resamples=RESAMPLES)
    assert r.improved >= 0.80, r


def test_no_effect_is_rarely_called_improved() -> None:
    r = run("null", TRIALS, seed=12, resamples=RESAMPLES)
    assert r.improved <= 0.05, r


def test_company_wide_shock_is_not_credited_by_did_but_is_by_naive_pre_post() -> None:
    r = run("shock", TRIALS, seed=13, resamples=RESAMPLES)
    assert r.improved <= 0.05, r
    assert r.naive_improved >= 0.20, r  # the naive before/after credits the shock
    assert abs(r.mean_effect) < 2 and r.mean_change > 6


def test_worst_of_20_by_chance_is_not_called_improved_next_cycle() -> None:
    r = run("worst_of_20", TRIALS, seed=14, resamples=RESAMPLES)
    assert r.improved <= 0.05, r
    assert r.naive_improved > r.improved  # without the baseline correction it would be credited


def test_real_collapse_that_recovered_is_improved() -> None:
    rng = np.random.default_rng(15)
    for _ in range(5):
        trial = make_trial("collapse", rng)
        est = estimate_effect(trial.treated, trial.controls, resamples=RESAMPLES, seed=rng)
        assert est.verdict == "improved", est
        assert est.shrink is not None and est.shrink > 0.9  # the collapse is kept as real
        assert est.baseline is not None and est.baseline < 20


@pytest.mark.parametrize("scenario", ["worst_of_20"])
def test_the_correction_pulls_a_chance_dip_back_to_the_usual_level(scenario: str) -> None:
    rng = np.random.default_rng(16)
    trial = make_trial(scenario, rng)
    est = estimate_effect(trial.treated, trial.controls, resamples=RESAMPLES, seed=1)
    assert est.shrink is not None and est.shrink < 0.5
    assert est.raw_baseline is not None and est.baseline is not None
    assert est.baseline > est.raw_baseline  # the chance dip is mostly removed
    assert "regression to the mean" in est.note


def test_comparison_scopes_that_drift_are_not_credited() -> None:
    """Issue 16's verdict aims: drifting or too few comparison scopes give no false `improved`."""
    for world in ({"comparison": 2, "drift": -3.0}, {"comparison": 1, "drift": -3.0},
                  {"comparison": 2, "wobble": 3.0}, {"drift": -3.0, "history": 12}):
        r = run("null", 60, seed=17, resamples=RESAMPLES, **world)
        assert r.improved <= 0.05, (world, r)


def test_why_a_verdict_is_inconclusive_is_said() -> None:
    rng = np.random.default_rng(18)
    few = make_trial("null", rng, comparison=2)
    est = estimate_effect(few.treated, few.controls, resamples=RESAMPLES, seed=rng)
    assert est.verdict == "inconclusive" and "only 2 comparison scope(s)" in est.note
    trend = make_trial("null", rng, drift=-3.0, history=12)
    est = estimate_effect(trend.treated, trend.controls, resamples=RESAMPLES, seed=rng)
    assert est.verdict == "inconclusive" and "trends are not parallel" in est.note
    first = make_trial("effect", rng, history=0)
    est = estimate_effect(first.treated, first.controls, resamples=RESAMPLES, seed=rng)
    assert est.verdict == "inconclusive" and "first measured cycle" in est.note
