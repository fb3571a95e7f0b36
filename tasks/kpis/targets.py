"""Targets and status: the target and minimum n of a KPI in a scope, and the status it earns."""

from __future__ import annotations

from collections.abc import Sequence

from cxloop.config import Settings, TargetConfig
from cxloop.tasks.kpis.specs import SPECS, _kcfg
from cxloop.vocabulary import (
    LOWER_IS_BETTER,
)


def default_min_n(settings: Settings | None, kpi: str) -> int:
    kcfg = _kcfg(settings)
    return int(kcfg.min_n_per_kpi.get(kpi, kcfg.min_n))


def _pick_target(targets: Sequence[TargetConfig], kpi: str, scope: str,
                 value: str) -> TargetConfig | None:
    specific = general = None
    for t in targets:  # the later of two equal entries wins, as in a TOML override
        if t.kpi != kpi or t.scope != scope:
            continue
        if t.match is None:
            general = t
        elif t.match == value:
            specific = t
    return specific or general


def _find_target(settings: Settings, kpi: str, scope: str, scope_value: str) -> TargetConfig | None:
    """Only a target that names the result's scope applies: a crossing cell ("logistics | east")
    is judged only when a target names the crossing ("department x region"), never by inheriting
    its parts' targets - a company with a few crossings has hundreds of such cells, and holding each
    to a target nobody set was most of the false actions (docs/decisions.md)."""
    return _pick_target(settings.targets, kpi, scope, scope_value)


def target_for(settings: Settings, kpi: str, scope: str, scope_value: str) -> tuple[float, int] | None:
    """(target value, min_n) in force for a KPI result, or None without a target.

    A target with `match` equal to the scope value beats a general target of that scope. min_n:
    the target's own, else `kpis.min_n_per_kpi[kpi]`, else `kpis.min_n`.
    """
    t = _find_target(settings, kpi, scope, scope_value)
    if t is None:
        return None
    return t.value, int(t.min_n if t.min_n is not None else default_min_n(settings, kpi))


def judge(kpi: str, value: float | None, ci_low: float | None, ci_high: float | None, n: int,
          target: float | None, min_n: int) -> str:
    """Status of one result.

    insufficient: no value, or n below min_n (a count KPI is never insufficient); no_target;
    met: the point estimate is on the right side (or on the target); missed: the whole interval is
    on the wrong side; at_risk: the point misses but the interval reaches the target (noise).
    """
    counted = SPECS[kpi].kind == "count"
    if value is None or (not counted and n < min_n):
        return "insufficient"
    if target is None:
        return "no_target"
    lower = kpi in LOWER_IS_BETTER
    if (value <= target) if lower else (value >= target):
        return "met"
    if ci_low is None or ci_high is None:
        return "missed"
    wrong_side = ci_low > target if lower else ci_high < target
    return "missed" if wrong_side else "at_risk"
