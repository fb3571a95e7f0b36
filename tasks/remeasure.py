"""Re-measure stage: did each corrective action work? Measure, judge, then close, keep or escalate.

Runs each cycle before new actions are opened. For every action opened in an earlier cycle and
not closed (plus every action verified within `[actions] watch_cycles`, to catch a relapse) it
reads the responses of the action's scope in the baseline cycle (the one that opened it), in the
cycles before it and in this cycle, and in the same cycles for the comparison scopes: the other
values of the same dimension that had no action on that KPI at any time in between. The
statistics are in `tasks.effects` (pure, on per-response scores); this module only gathers the
score arrays, stores one `Measurement` per action and cycle, and applies the decision through
`tasks.lifecycle` so every change has a plain-words note in the action's history.

Decisions (`Measurement.decision`):
  verified         improved, the target is met, and the effect reaches `[actions] min_effect`
                   when that is above 0 -> status verified (closed)
  progress         improved, target not met yet -> stays open, progress noted
  kept_open        no detectable change before the due date, too little data, or an inconclusive
                   verdict (an effect that cannot be credited: docs/methods.md) -> stays open
  escalated        worsened (at once), no change after the due date, or inconclusive and still
                   short of its target after the due date -> status escalated
  still_escalated  the same, but the action was already escalated -> noted only
  watch_ok         a verified action still on target (or too little data to say otherwise)
  reopened         a verified action clearly back below target within watch_cycles -> reopened
Re-running a cycle recomputes the same numbers (seeded bootstrap, the comparison scopes the first
run had) and never decides twice; a stored measurement is never rewritten: when a re-run measures
something else (the inputs changed since), the action's history says so and the stored one stays.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cxloop.config import Settings
from cxloop.db import session_scope
from cxloop.models import Action, ActionEvent, Measurement
from cxloop.periods import period_end_date, shift_period
from cxloop.tasks import kpis, lifecycle
from cxloop.tasks.effects import EffectEstimate, Kind, ScopeCells, estimate_effect, value_interval
from cxloop.tasks.month import Month
from cxloop.tasks.rendering import translate
from cxloop.vocabulary import CASE_KPIS, OVERALL, kpi_label, lower_is_better, scope_label, split_themes

SYSTEM = "cxloop"
_KINDS: dict[str, Kind] = {"net": "net", "top": "proportion", "flag": "proportion", "mean": "mean",
                           "index": "mean"}


@dataclass
class RemeasureSummary:
    period: str
    measured: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, int] = field(default_factory=dict)
    unchanged: int = 0  # already measured this cycle (a re-run) and measured the same again
    changed: int = 0  # already measured, but the inputs changed since: the stored one is kept

    def counts(self) -> dict[str, int | float | str]:
        out: dict[str, int | float | str] = {"measured": self.measured, "unchanged": self.unchanged,
                                             "changed": self.changed}
        out.update({f"verdict_{k}": v for k, v in sorted(self.verdicts.items())})
        out.update({f"decision_{k}": v for k, v in sorted(self.decisions.items())})
        return out


# --- gathering score arrays ------------------------------------------------------------------

class ResponseCache:
    """Each period's responses are read once per run, each (period, scope) split once."""

    def __init__(self, settings: Settings, engine: Engine, columns: Sequence[str] | None = None, *,
                 month_rows: Month | None = None) -> None:
        self.settings, self.engine, self.columns, self.month_rows = settings, engine, columns, month_rows
        self._frames: dict[str, pd.DataFrame] = {}
        self._scoped: dict[tuple[str, str], pd.DataFrame] = {}

    def frame(self, period: str) -> pd.DataFrame:
        if period not in self._frames:
            self._frames[period] = kpis.load_responses(self.settings, self.engine, period, self.columns,
                                                       month_rows=self.month_rows)
        return self._frames[period]

    def scoped(self, period: str, scope: str) -> pd.DataFrame:
        key = (period, scope)
        if key not in self._scoped:
            self._scoped[key] = kpis.scope_frame(self.frame(period), scope)
        return self._scoped[key]

    def cells(self, kpi: str, scope: str, period: str) -> dict[str, np.ndarray]:
        """{scope value: per-response scores} of one KPI in one period."""
        if kpi in kpis.TOPIC_ONLY:
            df = self.frame(period)
            topics = {t for v in df.get("themes", pd.Series(dtype=object)).dropna() for t in split_themes(v)}
            return {t: kpis.response_scores(kpi, df, settings=self.settings, topic=t) for t in sorted(topics)}
        sf = self.scoped(period, scope)
        if sf.empty:
            return {}
        return {str(v): kpis.response_scores(kpi, g, settings=self.settings)
                for v, g in sf.groupby("scope_value", sort=True)}


def _busy_values(actions: Sequence[Action], action: Action, baseline: str, period: str) -> set[str]:
    """Values of the action's dimension that had an action on the same KPI between baseline and now.

    Only actions opened *before* this cycle count: the cycle's own actions are opened after this
    stage, so counting them would make a re-run of a finished month judge against other comparison
    scopes than the run that decided."""
    busy = set()
    for other in actions:
        if other.id == action.id or other.kpi != action.kpi or other.scope != action.scope:
            continue
        if other.opened_period < period and (other.closed_period is None or other.closed_period >= baseline):
            busy.add(other.scope_value)
    return busy


def measure(settings: Settings, cache: ResponseCache, action: Action, period: str,
            actions: Sequence[Action]) -> tuple[EffectEstimate, np.ndarray | None]:
    """The effect estimate of one action in one period, and its scores this period."""
    spec = kpis.SPECS.get(action.kpi)
    min_n = kpis.default_min_n(settings, action.kpi)
    if action.kpi in CASE_KPIS:  # counted from cases, not from the responses the cache holds
        est = EffectEstimate(value=None, n=0, n_pre=0, raw_baseline=action.baseline_value)
        est.notes.append(f"The effect of an action on {action.kpi} (a follow-up case KPI) is not judged "
                         "statistically; follow its value in the report's follow-up section.")
        return est, None
    if spec is None or spec.kind not in _KINDS:
        value, n = (None, 0)
        if spec is not None:
            frame = cache.scoped(period, action.scope)
            value, n = kpis.kpi_value(action.kpi, frame[frame["scope_value"] == action.scope_value],
                                      settings=settings)
        est = EffectEstimate(value=value, n=n, n_pre=0, raw_baseline=action.baseline_value)
        est.notes.append(f"The effect of an action on {action.kpi} (a median, percentile or count) is "
                         "not judged statistically; follow its value in the report.")
        return est, None
    baseline = action.opened_period
    history = [shift_period(baseline, -k) for k in range(settings.kpis.history_cycles, 0, -1)]
    by_period = {p: cache.cells(action.kpi, action.scope, p) for p in (*history, baseline, period)}
    empty = np.zeros(0)
    treated_value = action.scope_value

    def cells_of(value: str) -> ScopeCells:
        return ScopeCells(pre=by_period[baseline].get(value, empty), post=by_period[period].get(value, empty),
                          history=[by_period[p].get(value) for p in history], name=value)

    busy = _busy_values(actions, action, baseline, period)
    others = sorted((set(by_period[baseline]) & set(by_period[period])) - busy - {treated_value})
    all_values = sorted({v for p in (*history, baseline) for v in by_period[p]})
    all_series = [[*(by_period[p].get(v) for p in history), by_period[baseline].get(v)] for v in all_values]
    seed = zlib.crc32(f"{action.id}:{period}".encode())
    treated = cells_of(treated_value)
    est = estimate_effect(
        treated, [cells_of(v) for v in others], higher_is_better=not lower_is_better(action.kpi),
        confidence=settings.kpis.confidence, resamples=settings.kpis.bootstrap_resamples, min_n=min_n,
        kind=_KINDS[spec.kind], seed=seed, all_series=all_series)
    return est, treated.post


# --- plain words -----------------------------------------------------------------------------

def _labels(action: Action, lang: str) -> tuple[str, str]:
    kpi = kpi_label(action.kpi, lang)
    if action.scope == OVERALL:
        return kpi, scope_label(OVERALL, lang)
    return kpi, action.scope_value


def effect_sentence(action: Action, m: Measurement | EffectEstimate, lang: str = "en",
                    confidence: float = 0.95) -> str:
    """"NPS of delivery rose 9.5 points (95% CI 4.1 to 14.8) more than in 10 comparable scopes"."""
    kpi, where = _labels(action, lang)
    if m.effect is None or m.effect_ci_low is None or m.effect_ci_high is None:
        return translate("{kpi} of {scope}: not enough data to judge the effect.", lang).format(
            kpi=kpi, scope=where)
    verb = translate("rose" if m.effect >= 0 else "fell", lang)
    args: dict[str, Any] = dict(kpi=kpi, scope=where, verb=verb, size=f"{abs(m.effect):.1f}",
                                level=f"{100 * confidence:.0f}", low=f"{m.effect_ci_low:.1f}",
                                high=f"{m.effect_ci_high:.1f}", count=m.comparison_scopes)
    if m.method == "did":
        text = "{kpi} of {scope} {verb} {size} points ({level}% CI {low} to {high}) more than in " \
               "{count} comparable scopes"
    else:
        text = "{kpi} of {scope} {verb} {size} points ({level}% CI {low} to {high}) since the " \
               "baseline (before/after only: no comparable scope without an action)"
    return translate(text, lang).format(**args)


def _target_met(kpi: str, value: float | None, target: float | None) -> bool:
    if target is None:
        return True
    if value is None:
        return False
    return value <= target if lower_is_better(kpi) else value >= target


def _target(settings: Settings, action: Action) -> float | None:
    if action.target is not None:
        return action.target
    found = kpis.target_for(settings, action.kpi, action.scope, action.scope_value)
    return found[0] if found else None


def _move(session: Session, action: Action, to: str, note: str, period: str) -> bool:
    try:
        lifecycle.transition(session, action, to, by=SYSTEM, note=note, period=period)
        return True
    except lifecycle.TransitionError as exc:
        lifecycle.record_note(session, action, by=SYSTEM, note=f"{note} ({exc})", period=period)
        return False


def decide(settings: Settings, session: Session, action: Action, est: EffectEstimate,
           post: np.ndarray | None, period: str) -> str:
    """Apply the decision for one measurement; returns the `Measurement.decision` value."""
    lang = settings.department_language(action.department)
    target = _target(settings, action)
    kpi_name, where = _labels(action, lang)
    sentence = effect_sentence(action, est, lang, settings.kpis.confidence)
    now = "" if est.value is None else translate(" Now {value} (n={n}).", lang).format(
        value=f"{est.value:.1f}", n=est.n)
    if target is not None:
        now += translate(" Target {target}.", lang).format(target=f"{target:g}")
    lower = lower_is_better(action.kpi)
    met = _target_met(action.kpi, est.value, target)

    if action.status == "verified":  # watch for a relapse
        min_n = kpis.default_min_n(settings, action.kpi)
        if post is None or target is None or est.value is None or est.n < min_n:
            return "watch_ok"
        low, high = value_interval(post, settings.kpis.confidence, _KINDS[kpis.SPECS[action.kpi].kind])
        status = kpis.judge(action.kpi, est.value, low, high, est.n, target, min_n)
        if status == "missed":
            note = translate("{kpi} of {scope} fell back below target after verification: reopened.",
                             lang).format(kpi=kpi_name, scope=where) + now
            return "reopened" if _move(session, action, "reopened", note, period) else "watch_ok"
        if status == "at_risk":
            lifecycle.record_note(session, action, by=SYSTEM, period=period, note=translate(
                "{kpi} of {scope} is below target again, but within sampling noise: watching.",
                lang).format(kpi=kpi_name, scope=where) + now)
        return "watch_ok"

    if est.verdict == "improved":
        better = None if est.effect is None else (-est.effect if lower else est.effect)
        floor = settings.actions.min_effect
        big_enough = floor <= 0 or (better is not None and better >= floor)
        if met and big_enough:  # verified needs the KPI back at its target, not only a change
            note = sentence + "; " + translate("target met", lang) + translate(": verified.", lang) + now
            return "verified" if _move(session, action, "verified", note, period) else "progress"
        lifecycle.record_note(session, action, by=SYSTEM, period=period,
                              note=sentence + translate("; progress, target not met yet: stays open.",
                                                        lang) + now)
        return "progress"
    overdue = action.due is not None and period_end_date(period) > action.due
    if est.verdict == "worsened" or (est.verdict == "no_change" and overdue):
        reason = (translate("worse than before the action: escalated.", lang) if est.verdict == "worsened"
                  else translate("no detectable change after the due date: escalated.", lang))
        note = sentence + "; " + reason + now
        if action.status == "escalated":
            lifecycle.record_note(session, action, by=SYSTEM, note=note, period=period)
            return "still_escalated"
        return "escalated" if _move(session, action, "escalated", note, period) else "still_escalated"
    if est.verdict == "inconclusive" and overdue and not met:
        note = sentence + ". " + est.note + translate(
            " Still short of its target after the due date: escalated.", lang) + now
        if action.status == "escalated":
            lifecycle.record_note(session, action, by=SYSTEM, note=note, period=period)
            return "still_escalated"
        return "escalated" if _move(session, action, "escalated", note, period) else "still_escalated"
    if est.verdict == "inconclusive":
        note = sentence + ". " + est.note + translate(" Stays open.", lang) + now
    elif est.verdict == "no_change":
        note = sentence + translate("; no detectable change yet: stays open until the due date.", lang) + now
    else:
        note = translate("Not enough data to judge the effect this cycle: stays open.", lang) + now
    lifecycle.record_note(session, action, by=SYSTEM, note=note, period=period)
    return "kept_open"


# --- the stage -------------------------------------------------------------------------------

def actions_to_measure(session: Session, settings: Settings, period: str) -> list[Action]:
    """Open actions from earlier cycles, and verified ones still inside the watch window."""
    rows = session.exec(select(Action).where(col(Action.opened_period) < period)
                        .order_by(col(Action.id))).all()
    def watched(a: Action) -> bool:
        return (a.status == "verified" and a.closed_period is not None and a.closed_period < period
                and shift_period(a.closed_period, settings.actions.watch_cycles) >= period)

    return [a for a in rows if a.status not in lifecycle.CLOSED_STATUSES or watched(a)]


def _store(m: Measurement, est: EffectEstimate) -> None:
    m.value, m.n, m.baseline = est.value, est.n, est.baseline
    m.change, m.change_ci_low, m.change_ci_high = est.change, est.change_ci_low, est.change_ci_high
    m.effect, m.effect_ci_low, m.effect_ci_high = est.effect, est.effect_ci_low, est.effect_ci_high
    m.method, m.comparison_scopes, m.verdict = est.method, est.comparison_scopes, est.verdict
    m.note = est.note


def remeasure_actions(settings: Settings, engine: Engine, period: str, *,
                      month_rows: Month | None = None) -> RemeasureSummary:
    """Measure every action due for it in `period`, store a Measurement each, apply decisions."""
    summary = RemeasureSummary(period)
    with session_scope(engine) as session:
        every = list(session.exec(select(Action)).all())
        todo = actions_to_measure(session, settings, period)
        due = [a.id for a in todo]
    cache = ResponseCache(settings, engine, kpis.columns_for(sorted({a.kpi for a in todo})),
                          month_rows=month_rows)
    for action_id in due:
        with session_scope(engine) as session:  # one transaction per action
            action = session.get(Action, action_id)
            if action is None:
                continue
            existing = session.exec(select(Measurement).where(Measurement.action_id == action_id,
                                                              Measurement.period == period)).first()
            est, post = measure(settings, cache, action, period, every)
            if existing is not None:  # decided (and maybe notified) already: never rewritten
                if _same(existing, est):
                    summary.unchanged += 1
                else:
                    summary.changed += 1
                    _note_change(session, action, existing, est, period)
                continue
            m = Measurement(action_id=action_id or 0, period=period)
            _store(m, est)
            m.decision = decide(settings, session, action, est, post, period)
            summary.measured += 1
            summary.verdicts[est.verdict] = summary.verdicts.get(est.verdict, 0) + 1
            summary.decisions[m.decision] = summary.decisions.get(m.decision, 0) + 1
            session.add(m)
    return summary


_COMPARED = ("value", "n", "baseline", "effect", "effect_ci_low", "effect_ci_high", "verdict",
             "comparison_scopes", "method")


def _same(m: Measurement, est: EffectEstimate) -> bool:
    """Whether a re-run measured what is stored (numbers to 6 significant digits: the database
    may round a float's last bit)."""
    def close(a: Any, b: Any) -> bool:
        if isinstance(a, float) and isinstance(b, float):
            return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))
        return bool(a == b)
    return all(close(getattr(m, k), getattr(est, k)) for k in _COMPARED)


def _note_change(session: Session, action: Action, stored: Measurement, est: EffectEstimate,
                 period: str) -> None:
    """The inputs of a decided measurement changed (rows readmitted, a source re-exported): keep
    what was decided and notified, and say in the history what the re-run found instead."""
    def show(x: float | None) -> str:
        return "–" if x is None else f"{x:.2f}"
    note = (f"re-run of {period} measured {est.verdict} {show(est.effect)} ({show(est.effect_ci_low)} .. "
            f"{show(est.effect_ci_high)}, {est.comparison_scopes} comparison scopes) where "
            f"{stored.verdict} {show(stored.effect)} ({show(stored.effect_ci_low)} .. "
            f"{show(stored.effect_ci_high)}, {stored.comparison_scopes} comparison scopes) is stored: "
            "the inputs changed since the decision; the stored measurement and decision are kept")
    seen = session.exec(select(ActionEvent).where(ActionEvent.action_id == action.id,
                                                  ActionEvent.note == note)).first()
    if seen is None:
        lifecycle.record_note(session, action, by=SYSTEM, note=note, period=period)


def measurement_row(m: Measurement) -> dict[str, Any]:
    """The public shape of a measurement (CLI JSON, reports, notices)."""
    return {
        "action_id": m.action_id, "period": m.period, "value": m.value, "n": m.n,
        "baseline": m.baseline, "change": m.change, "change_ci_low": m.change_ci_low,
        "change_ci_high": m.change_ci_high, "effect": m.effect, "effect_ci_low": m.effect_ci_low,
        "effect_ci_high": m.effect_ci_high, "verdict": m.verdict, "method": m.method,
        "comparison_scopes": m.comparison_scopes, "decision": m.decision, "note": m.note,
    }


def list_measurements(engine: Engine, period: str | None = None,
                      action_id: int | None = None) -> list[dict[str, Any]]:
    with session_scope(engine) as session:
        q = select(Measurement)
        if period:
            q = q.where(Measurement.period == period)
        if action_id is not None:
            q = q.where(Measurement.action_id == action_id)
        rows = session.exec(q.order_by(col(Measurement.period), col(Measurement.action_id))).all()
        return [measurement_row(m) for m in rows]


__all__ = ["RemeasureSummary", "remeasure_actions", "measure", "decide", "effect_sentence",
           "measurement_row", "list_measurements", "actions_to_measure"]
