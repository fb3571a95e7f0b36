"""Corrective actions: turn a KPI shortfall of a cycle into work for the department that owns it.

Each cycle, every `missed` result and every `signal_low` (a control-chart signal in the worse
direction) with enough responses becomes a candidate. A candidate is routed to its owner, and
either opens a new action or adds its evidence to the action already open for the same KPI and
scope, so a department is never handed the same problem twice. Re-running a period changes
nothing: an action that already holds the period's evidence is left alone.

Every change of an action goes through `tasks.lifecycle` so its history says who, when and why.
"""

from __future__ import annotations

import getpass
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cxloop.config import SEVERITY_LEVELS, Settings
from cxloop.db import session_scope
from cxloop.models import SCOPE_FIELDS, Action, ActionEvent, KpiResult, Measurement
from cxloop.paths import TEMPLATES
from cxloop.periods import current_period, period_end_date
from cxloop.tasks import lifecycle
from cxloop.tasks.masking import mask_pii
from cxloop.tasks.rendering import environment, render
from cxloop.vocabulary import CROSS_SEP, VALUE_SEP, kpi_label, lower_is_better, scope_label

if TYPE_CHECKING:  # pandas and numpy are imported on use, so `cxloop actions ...` starts fast
    import numpy as np
    import pandas as pd
    from numpy.typing import NDArray

    from cxloop.tasks.drivers import DriverAnalysis
    from cxloop.tasks.month import Month

    Analyses = Mapping[tuple[str, str], DriverAnalysis]

SYSTEM = "cxloop"
SEVERITIES = ("high", "medium", "low")
NEVER_OPEN = {"responses"}  # a count of answers is context, not a shortfall
COMMENT_CHARS = 280

# The survey answer behind a KPI: its lowest answers are the worst comments to quote.
_SCORE_COLUMN: dict[str, str] = {
    "nps": "nps", "csat": "csat", "ces": "ces", "ces_top": "ces",
    "cx_success": "cx_success", "cx_effort": "cx_effort", "cx_emotion": "cx_emotion",
}
_CX_QUESTIONS = ("cx_success", "cx_effort", "cx_emotion")
# What `worst_comments` reads of each commented response.
_COMMENT_COLUMNS = ("id", "response_id", "comment", "sentiment", "sentiment_score", "is_complaint",
                    "themes", *SCOPE_FIELDS, *dict.fromkeys(_SCORE_COLUMN.values()))
# Answers at or below these are on the wrong side (detractors, dissatisfied, not top-box): only
# those, or comments read as negative, are quoted as evidence - never a promoter's praise.
_BAD_ANSWER: dict[str, int] = {"nps": 6, "csat": 3, "ces": 4, "ces_top": 4, "cx_success": 5,
                               "cx_effort": 5, "cx_emotion": 5, "cx_index": 15}
STATUS_WORDS = {"ack": "acknowledged", "start": "in_progress", "done": "done", "cancel": "cancelled"}


class ActionError(ValueError):
    """A request about an action that cannot be met (unknown id or department, closed action)."""


@dataclass
class ActionsSummary:
    """What one run of the actions stage did; `action_ids` are the actions opened or updated."""

    period: str
    opened: int = 0
    updated: int = 0
    skipped: int = 0
    candidates: int = 0
    provisional: bool = False
    action_ids: list[int] = field(default_factory=list)

    def counts(self) -> dict[str, int | float | str]:
        return {"candidates": self.candidates, "opened": self.opened, "updated": self.updated,
                "skipped": self.skipped, "provisional": int(self.provisional)}


# --------------------------------------------------------------------------- KPI vocabulary

# --------------------------------------------------------------------------- candidates

def effective_min_n(settings: Settings, result: KpiResult) -> int:
    return result.min_n or settings.kpis.min_n_per_kpi.get(result.kpi) or settings.kpis.min_n


def is_candidate(settings: Settings, result: KpiResult) -> bool:
    """A result the cycle's decisions say acts (`tasks.kpis.decisions`: its evidence holds up after the
    false-discovery control over the whole cycle, and no more specific result explains it).

    Results stored before decisions existed fall back to the old rule: `missed`, or a
    worse-direction control-chart signal on enough responses."""
    if result.kpi in NEVER_OPEN:
        return False
    decision = (result.stats or {}).get("decision")
    if decision is not None:
        return bool(decision.get("act"))
    if result.status == "missed":
        return True
    return result.signal == "signal_low" and result.n >= effective_min_n(settings, result)


def explained(result: KpiResult) -> tuple[str, str, str] | None:
    """The (kpi, scope, value) of the acting result that explains this one, if any."""
    by = ((result.stats or {}).get("decision") or {}).get("explained_by")
    return (by[0], by[1], by[2]) if by else None


def candidates(settings: Settings, session: Session, period: str) -> list[KpiResult] | None:
    """The period's candidate results, or None when the period's KPIs are provisional (gate held)."""
    found = _period_results(session, period)
    return None if found is None else [r for r in found if is_candidate(settings, r)]


def _period_results(session: Session, period: str) -> list[KpiResult] | None:
    rows = session.exec(select(KpiResult).where(KpiResult.period == period)
                        .order_by(col(KpiResult.kpi), col(KpiResult.scope),
                                  col(KpiResult.scope_value))).all()
    return None if any(r.provisional for r in rows) else list(rows)


# --------------------------------------------------------------------------- routing

def _split_crossing(scope: str, scope_value: str) -> list[tuple[str, str]]:
    if CROSS_SEP not in scope:
        return [(scope, scope_value)]
    scopes = [s.strip() for s in scope.split(CROSS_SEP.strip()) if s.strip()]
    values = [v.strip() for v in scope_value.split(VALUE_SEP.strip())] if len(scopes) > 1 else [scope_value]
    if len(values) != len(scopes):
        return []
    return list(zip(scopes, values, strict=True))


def _department_id(settings: Settings, value: str) -> str | None:
    if value in settings.departments:
        return value
    folded = value.strip().casefold()
    for dept_id, dept in settings.departments.items():
        if folded in (dept_id.casefold(), dept.name.casefold()):
            return dept_id
    return None


def _owner(settings: Settings, scope: str, value: str) -> str | None:
    if scope == "department":
        return _department_id(settings, value)
    if scope in ("journey_stage", "touchpoint", "channel", "topic"):
        return settings.owner_of(scope, value)
    return None


def route(settings: Settings, scope: str, scope_value: str) -> str:
    """The department that owns a scope; crossings go to their department part, the rest to the CX office.

    A crossing without a department part (e.g. "channel x region") goes to the first part that has
    an owner. Anything unowned (overall, segment, region, unknown values) goes to
    `[actions] default_owner`.
    """
    parts = _split_crossing(scope, scope_value)
    parts.sort(key=lambda p: p[0] != "department")  # the department part first, order kept otherwise
    for part_scope, part_value in parts:
        owner = _owner(settings, part_scope, part_value)
        if owner:
            return owner
    return settings.actions.default_owner


def head_of(settings: Settings, department: str) -> str:
    dept = settings.departments.get(department)
    return dept.head if dept else ""


# --------------------------------------------------------------------------- evidence and severity

def gap_of(kpi: str, value: float | None, target: float | None) -> float | None:
    """How far the value is on the wrong side of the target: positive = worse than target."""
    if value is None or target is None:
        return None
    return round(value - target if lower_is_better(kpi) else target - value, 6)


def severity_of(gap: float | None, ci_low: float | None, ci_high: float | None, target: float | None,
                n: int) -> str:
    """high / medium / low from the size of the gap and the number of customers behind it.

    size: 2 if the gap is at least 3 interval half-widths or 20% of the target, 1 if at least 1.5
    half-widths or 10% (or when there is only a control-chart signal and no target gap), else 0.
    reach: 2 for n >= 1000, 1 for n >= 100, else 0. size + reach >= 3 is high, 2 medium, else low.
    """
    if gap is None or gap <= 0:
        size = 1
    else:
        half = (ci_high - ci_low) / 2 if ci_low is not None and ci_high is not None else 0.0
        z = gap / half if half > 0 else math.inf
        rel = gap / abs(target) if target else 0.0
        size = 2 if z >= 3 or rel >= 0.20 else 1 if z >= 1.5 or rel >= 0.10 else 0
    reach = 2 if n >= 1000 else 1 if n >= 100 else 0
    points = size + reach
    return "high" if points >= 3 else "medium" if points == 2 else "low"


def due_date(settings: Settings, period: str, severity: str) -> date:
    """Due from the END of the cycle's period, so a backfilled month gets the dates a live run would."""
    days = settings.actions.due_days
    return period_end_date(period) + timedelta(days=days.get(severity, days.get("medium", 30)))


def _in_scope(comments: pd.DataFrame, scope: str, scope_value: str) -> NDArray[np.bool_] | None:
    """Which rows belong to the scope value, None for a scope feedback cannot be filtered by."""
    from cxloop.tasks.kpis import scope_mask  # on use, as pandas: `cxloop actions ...` starts fast

    return scope_mask(comments, scope, scope_value)


def commented_rows(month_rows: Month) -> pd.DataFrame:
    """The period's clean responses with a comment, ordered by id: what `worst_comments` quotes
    from (read from the month frame once per run of the stage, then filtered per result). A month
    too large to keep is read part by part, keeping each part's commented rows only."""
    import numpy as np  # on use, as the month frame: `cxloop actions ...` starts fast
    import pandas as pd

    parts = []
    for rows in month_rows.parts(_COMMENT_COLUMNS, clean=True):
        parts.append(_commented(rows))
        del rows  # before the next part is read
    if len(parts) == 1:
        return parts[0]
    rows = pd.concat(parts, ignore_index=True)
    del parts
    ids = rows["id"].to_numpy()
    if len(ids) > 1 and not (ids[1:] > ids[:-1]).all():  # parts in another order than their ids
        rows = rows.take(np.argsort(ids, kind="stable")).reset_index(drop=True)
    return rows


def _commented(rows: pd.DataFrame) -> pd.DataFrame:
    text = rows["comment"]
    return rows[(text.notna() & (text != "")).to_numpy(dtype=bool)].reset_index(drop=True)


def worst_comments(settings: Settings, comments: pd.DataFrame, result: KpiResult) -> list[dict[str, Any]]:
    """The scope's worst comments of the period, masked: lowest answers to the KPI's question, or negative.

    Only answers on the wrong side (e.g. NPS detractors 0-6, CSAT 1-3) or comments read as negative
    qualify, lowest answer first. KPIs without a survey question (complaints, times, themes) quote
    negative comments and complaints, least positive first. Ties by id. `comments`: the period's
    `commented_rows`.
    """
    import numpy as np

    limit = settings.actions.worst_comments
    mask = _in_scope(comments, result.scope, result.scope_value)
    if limit <= 0 or mask is None:
        return []
    negative = comments["sentiment"].to_numpy(dtype=object) == "negative"
    keys = [comments["id"].to_numpy(), comments["sentiment_score"].to_numpy(dtype=float)]
    score = _answers(comments, result.kpi)
    if score is not None:
        with np.errstate(invalid="ignore"):
            mask &= (score <= _BAD_ANSWER[result.kpi]) | negative  # a missing answer compares False
        keys.append(score)
    else:
        mask &= negative | (comments["is_complaint"].to_numpy(dtype=float) == 1.0)
    picked = np.flatnonzero(mask)
    # Ascending with NaN last (SQL's NULLS LAST); lexsort sorts by its last key first.
    order = picked[np.lexsort([k[picked] for k in keys])][:limit]
    out = []
    for pos in order.tolist():
        text = mask_pii(comments["comment"].iat[pos])
        if len(text) > COMMENT_CHARS:
            text = text[: COMMENT_CHARS - 1] + "…"
        answer = None if score is None or math.isnan(score[pos]) else int(score[pos])
        sentiment = comments["sentiment"].iat[pos]
        out.append({"response_id": comments["response_id"].iat[pos], "score": answer,
                    "sentiment": sentiment if isinstance(sentiment, str) else None, "text": text})
    return out


def _answers(comments: pd.DataFrame, kpi: str) -> NDArray[np.float64] | None:
    """The customer's answer behind the KPI (cx_index: the sum of its three answers; NaN when one
    is missing), None for a KPI without a survey question."""
    if kpi == "cx_index":
        a, b, c = (comments[q].to_numpy(dtype=float) for q in _CX_QUESTIONS)
        return a + b + c
    column = _SCORE_COLUMN.get(kpi)
    return comments[column].to_numpy(dtype=float) if column is not None else None


def evidence_entry(settings: Settings, comments: pd.DataFrame, result: KpiResult,
                   drivers: Analyses | None = None) -> dict[str, Any]:
    """One cycle's proof of the problem: the figures, the gap, what customers said and, when the KPI
    is the key-driver outcome, the owned drivers that matter most and perform worst."""
    gap = gap_of(result.kpi, result.value, result.target)
    severity = severity_of(gap, result.ci_low, result.ci_high, result.target, result.n)
    named = key_drivers(settings, drivers or {}, result)
    if settings.actions.weigh_driver_importance and any(d["clearly_important"] for d in named):
        severity = SEVERITY_LEVELS[max(0, SEVERITY_LEVELS.index(severity) - 1)]
    entry = {
        "period": result.period, "value": result.value, "ci_low": result.ci_low, "ci_high": result.ci_high,
        "n": result.n, "target": result.target, "gap": gap, "status": result.status, "signal": result.signal,
        "method": result.method, "severity": severity, "decision": _decision_facts(result),
        "worst_comments": worst_comments(settings, comments, result),
    }
    if named:
        entry["drivers"] = named
    return entry


def key_drivers(settings: Settings, analyses: Analyses, result: KpiResult) -> list[dict[str, Any]]:
    """The drivers to work on behind a KPI result: from the analysis of its department (else the
    company's), only when the KPI is the analysed outcome; the "fix" quadrant (important, performing
    below the average driver), most important first, restricted to the drivers the action's
    department owns when it owns any (docs/methods.md, "Key drivers")."""
    if not analyses:
        return []
    department = route(settings, result.scope, result.scope_value)
    analysis = analyses.get(("department", department)) or analyses.get(("overall", "all"))
    if analysis is None or analysis.outcome != result.kpi:
        return []
    from cxloop.tasks.drivers import priorities  # numpy: on use (see above)

    declared = {d.name: d for d in settings.drivers}
    owned = [name for name, d in declared.items() if settings.driver_owner(d) == department]
    average = sum(d.weight for d in analysis.drivers) / len(analysis.drivers)
    out = []
    for d in priorities(analysis, owned or None, settings.actions.key_drivers):
        cfg = declared.get(d.driver)
        out.append({
            "driver": d.driver, "label_en": cfg.label_en if cfg else "",
            "label_zh": cfg.label_zh if cfg else "",
            "owner": settings.driver_owner(cfg) if cfg else None, "rank": d.rank, "tied": d.tied,
            "share": round(d.share, 1), "share_low": round(d.share_low, 1),
            "share_high": round(d.share_high, 1),
            "mean": round(d.mean, 2), "mean_low": round(d.mean_low, 2), "mean_high": round(d.mean_high, 2),
            "scale": list(cfg.scale) if cfg else None, "clearly_important": d.weight_low > average,
        })
    return out


def _decision_facts(result: KpiResult) -> dict[str, Any] | None:
    """What the cycle's decision used (q-value, tests, pooled evidence, margin), for the record."""
    decision = (result.stats or {}).get("decision")
    if not decision:
        return None
    return {k: decision.get(k) for k in ("p", "q", "tests", "margin", "pooled", "reason")}


def context_entry(result: KpiResult) -> dict[str, Any]:
    """A broader result explained by the action's scope: shown beside it, not acted on twice."""
    return {"kpi": result.kpi, "scope": result.scope, "scope_value": result.scope_value,
            "value": result.value, "ci_low": result.ci_low, "ci_high": result.ci_high, "n": result.n,
            "target": result.target, "gap": gap_of(result.kpi, result.value, result.target)}


# --------------------------------------------------------------------------- playbooks

def playbook_source(settings: Settings, department: str, kpi: str, lang: str) -> tuple[str, Path | None]:
    """Where a playbook comes from; the first that exists wins.

    1. `<project>/playbooks/<department>/<kpi>.<lang>.md.j2`
    2. `<project>/playbooks/<kpi>.<lang>.md.j2`
    3. shipped `templates/playbooks/<kpi>.<lang>.md.j2`
    4. shipped `templates/playbooks/default.<lang>.md.j2`
    `<project>` is the folder of the config file. Returns (shipped template name, None) or
    ("", project file path).
    """
    name = f"{kpi}.{lang}.md.j2"
    folder = settings.resolve("playbooks")
    for path in (folder / department / name, folder / name):
        if path.is_file():
            return "", path
    shipped = f"playbooks/{name}"
    if (TEMPLATES / shipped).is_file():
        return shipped, None
    return f"playbooks/default.{lang}.md.j2", None


def render_playbook(settings: Settings, action: Action, entry: dict[str, Any]) -> str:
    """The suggested playbook, in the owning department's language, filled with the action's facts."""
    lang = settings.department_language(action.department)
    dept = settings.departments.get(action.department)
    context: dict[str, Any] = {
        "kpi": action.kpi, "kpi_label": kpi_label(action.kpi, lang), "scope": action.scope,
        "scope_value": action.scope_value, "department": action.department,
        "department_name": dept.name if dept else action.department, "head": action.head,
        "severity": action.severity, "due": action.due.isoformat() if action.due else "",
        "period": entry["period"], "value": entry["value"], "ci_low": entry["ci_low"],
        "ci_high": entry["ci_high"], "n": entry["n"], "target": entry["target"], "gap": entry["gap"],
        "status": entry["status"], "signal": entry["signal"], "comments": entry["worst_comments"],
        "lower_is_better": lower_is_better(action.kpi), "action_id": action.id,
        "scope_label": scope_label(action.scope, lang),
        "confidence_pct": f"{settings.kpis.confidence * 100:g}",
    }
    template, path = playbook_source(settings, action.department, action.kpi, lang)
    if path is not None:
        return environment(lang).from_string(path.read_text(encoding="utf-8")).render(lang=lang, **context)
    return render(template, lang, **context)


# --------------------------------------------------------------------------- the stage

def _covering_action(session: Session, result: KpiResult) -> tuple[Action | None, bool]:
    """(the open action for this KPI and scope, whether the period is settled for it already: an
    action holds its evidence, or one was opened for a later period).

    A month run after a later one (a backfill of history) adds nothing to the actions of that
    later month: their evidence, re-measurement and notices go forward from the month they were
    opened in, and a second action for the same scope would be noise for its department."""
    actions = session.exec(select(Action).where(
        Action.kpi == result.kpi, Action.scope == result.scope, Action.scope_value == result.scope_value)
        .order_by(col(Action.id))).all()
    settled = any(e.get("period") == result.period for a in actions for e in (a.evidence or [])) or any(
        a.opened_period > result.period for a in actions)
    current = next((a for a in reversed(actions) if a.status in lifecycle.OPEN_STATUSES), None)
    return current, settled


def _describe(entry: dict[str, Any], kpi: str) -> str:
    what = entry["status"] if entry["status"] == "missed" else entry["signal"] or entry["status"]
    bits = [f"{entry['period']}: {kpi} {what}", f"value {_fmt(entry['value'])}",
            f"n={entry['n']}"]
    if entry["target"] is not None:
        bits.append(f"target {_fmt(entry['target'])}, gap {_fmt(entry['gap'])}")
    return ", ".join(bits)


def _fmt(x: Any) -> str:
    return "–" if x is None else f"{float(x):.4g}"


def open_actions(settings: Settings, engine: Engine, period: str, *,
                 month_rows: Month | None = None, drivers: Analyses | None = None) -> ActionsSummary:
    """Open or update an action for every candidate of the period (one transaction for the period).
    `month_rows`: the month the cycle shares among its stages (None: read from the database);
    `drivers`: the month's key-driver analyses (None: analysed on first need)."""
    summary = ActionsSummary(period=period)
    with session_scope(engine) as session:
        results = _period_results(session, period)
        if results is None:
            summary.provisional = True
            return summary
        found = [r for r in results if is_candidate(settings, r)]
        summary.candidates = len(found)
        by_key: dict[tuple[str, str, str], Action] = {}
        comments: pd.DataFrame | None = None  # read on first need: a re-run skips every candidate
        for result in found:
            action, settled = _covering_action(session, result)
            if settled:
                summary.skipped += 1
                continue
            if comments is None:
                from cxloop.tasks import month  # pandas: on use (see above)

                comments = commented_rows(month.of(engine, period, month_rows))
            if drivers is None:
                from cxloop.tasks.ratings import month_drivers  # pandas: on use (see above)

                drivers = month_drivers(settings, engine, period)
            entry = evidence_entry(settings, comments, result, drivers)
            if action is not None:
                action.evidence = sorted([*(action.evidence or []), entry], key=lambda e: e["period"])
                lifecycle.record_note(session, action, by=SYSTEM, period=period,
                                      note="new evidence: " + _describe(entry, result.kpi))
                summary.updated += 1
            else:
                action = _new_action(settings, session, result, entry)
                summary.opened += 1
            session.flush()
            summary.action_ids.append(action.id or 0)
            by_key[(result.kpi, result.scope, result.scope_value)] = action
        _attach_context(session, results, by_key, period)
    return summary


def _attach_context(session: Session, results: Sequence[KpiResult],
                    by_key: dict[tuple[str, str, str], Action], period: str) -> None:
    """Broader results explained by an action's scope join that action's evidence of this period."""
    for result in results:
        root = explained(result)
        action = by_key.get(root) if root else None
        if action is None or not action.evidence:
            continue
        evidence = [dict(e) for e in action.evidence]
        entry = next((e for e in evidence if e.get("period") == period), None)
        if entry is None:
            continue
        context = entry.setdefault("context", [])
        if any((c["kpi"], c["scope"], c["scope_value"]) == (result.kpi, result.scope, result.scope_value)
               for c in context):
            continue
        context.append(context_entry(result))
        action.evidence = evidence
        lifecycle.record_note(session, action, by=SYSTEM, period=period, note=(
            f"also explains {result.kpi} of {result.scope}={result.scope_value} (value "
            f"{_fmt(result.value)}, target {_fmt(result.target)}): not opened as a separate action"))


def _new_action(settings: Settings, session: Session, result: KpiResult, entry: dict[str, Any]) -> Action:
    department = route(settings, result.scope, result.scope_value)
    severity = entry["severity"]
    action = Action(kpi=result.kpi, scope=result.scope, scope_value=result.scope_value,
                    department=department, head=head_of(settings, department), status="open",
                    severity=severity, opened_period=result.period,
                    due=due_date(settings, result.period, severity), baseline_value=result.value,
                    target=result.target, evidence=[entry])
    session.add(action)
    session.flush()  # the id goes into the playbook
    action.playbook = render_playbook(settings, action, entry)
    lifecycle.record_note(session, action, by=SYSTEM, period=result.period,
                          note=f"opened for {department} ({severity}): " + _describe(entry, result.kpi))
    return action


# --------------------------------------------------------------------------- people's changes

def default_actor() -> str:
    try:
        return os.environ.get("CXLOOP_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "admin"


def _get(session: Session, action_id: int) -> Action:
    action = session.get(Action, action_id)
    if action is None:
        raise ActionError(f"no action with id {action_id}")
    return action


def change_status(settings: Settings, engine: Engine, action_id: int, to_status: str, *, by: str,
                  note: str = "") -> Action:
    """A person moves an action (ack, start, done, cancel); refused moves raise TransitionError."""
    with session_scope(engine) as session:
        action = _get(session, action_id)
        lifecycle.transition(session, action, to_status, by=by, note=note,
                             period=current_period(settings.tz))
        return action


def assign(settings: Settings, engine: Engine, action_id: int, department: str, by: str,
           note: str = "") -> Action:
    """Hand an open action to another department (its head and playbook follow); history keeps why."""
    dept = _department_id(settings, department)
    if dept is None and department == settings.actions.default_owner:
        dept = department
    if dept is None:
        known = ", ".join(sorted({*settings.departments, settings.actions.default_owner}))
        raise ActionError(f"unknown department {department!r}; known: {known}")
    with session_scope(engine) as session:
        action = _get(session, action_id)
        if action.status in lifecycle.CLOSED_STATUSES:
            raise ActionError(f"action {action_id} is {action.status}: a closed action cannot be reassigned")
        if action.department == dept:
            raise ActionError(f"action {action_id} is already assigned to {dept}")
        old = action.department
        action.department = dept
        action.head = head_of(settings, dept)
        if action.evidence:
            action.playbook = render_playbook(settings, action, action.evidence[0])
        text = f"assigned from {old} to {dept}" + (f": {note}" if note.strip() else "")
        lifecycle.record_note(session, action, by=by, note=text, period=current_period(settings.tz))
        return action


_LINK = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
NOTE_CHARS = 4000


def add_note(settings: Settings, engine: Engine, action_id: int, by: str, note: str,
             link: str | None = None) -> Action:
    """A person's note or evidence link on an action (closed ones too: what was learnt stays)."""
    note, link = note.strip(), (link or "").strip() or None
    if not note and not link:
        raise ActionError("a note needs some text or an evidence link")
    if len(note) > NOTE_CHARS:
        raise ActionError(f"a note is at most {NOTE_CHARS} characters, not {len(note)}")
    if link is not None and not _LINK.fullmatch(link):
        raise ActionError(f"an evidence link must be an http:// or https:// address, not {link[:80]!r}")
    with session_scope(engine) as session:
        action = _get(session, action_id)
        lifecycle.record_note(session, action, by=by, note=note, link=link,
                              period=current_period(settings.tz))
        return action


def is_person_note(event: ActionEvent) -> bool:
    """A note or evidence link someone added (not a move, an assignment or the system's evidence)."""
    return event.from_status is None and event.to_status is None and event.by != SYSTEM and (
        event.link is not None or not event.note.startswith("assigned from "))


# --------------------------------------------------------------------------- queries

def list_actions(engine: Engine, status: str | Sequence[str] | None = None, department: str | None = None,
                 period: str | None = None) -> list[Action]:
    """Actions by id. `status` may be a status, a list, or "active"/"closed"; `period`: opened or
    re-confirmed in that period."""
    statuses = parse_statuses(status)
    query = select(Action).order_by(col(Action.id))
    if statuses is not None:
        query = query.where(col(Action.status).in_(statuses))
    if department:
        query = query.where(Action.department == department)
    with Session(engine) as session:
        rows = list(session.exec(query).all())
    if period:
        rows = [a for a in rows if a.opened_period == period
                or any(e.get("period") == period for e in a.evidence or [])]
    return rows


def parse_statuses(status: str | Sequence[str] | None) -> list[str] | None:
    if status is None:
        return None
    names = [s.strip() for s in (status.split(",") if isinstance(status, str) else status) if s.strip()]
    out: list[str] = []
    for name in names:
        if name == "active":
            out.extend(lifecycle.OPEN_STATUSES)
        elif name == "closed":
            out.extend(lifecycle.CLOSED_STATUSES)
        elif name in lifecycle.ALLOWED:
            out.append(name)
        else:
            known = ", ".join(["active", "closed", *lifecycle.ALLOWED])
            raise ActionError(f"unknown status {name!r}; known: {known}")
    return out


def action_detail(engine: Engine, action_id: int) -> dict[str, Any]:
    """{"action": Action, "events": [ActionEvent...], "measurements": [Measurement...]} oldest first."""
    with Session(engine) as session:
        action = _get(session, action_id)
        events = list(session.exec(select(ActionEvent).where(ActionEvent.action_id == action_id)
                                   .order_by(col(ActionEvent.at), col(ActionEvent.id))).all())
        measurements = list(session.exec(select(Measurement).where(Measurement.action_id == action_id)
                                         .order_by(col(Measurement.period))).all())
    return {"action": action, "events": events, "measurements": measurements}


def is_overdue(action: Action, on: date) -> bool:
    return action.status in lifecycle.OPEN_STATUSES and action.status != "done" and \
        action.due is not None and action.due < on


def latest_measurements(engine: Engine, action_ids: Sequence[int]) -> dict[int, Measurement]:
    """Each action's newest re-measurement (by period), for `action_row`."""
    out: dict[int, Measurement] = {}
    with Session(engine) as session:
        for start in range(0, len(action_ids), 1000):
            for m in session.exec(select(Measurement).where(
                    col(Measurement.action_id).in_(action_ids[start:start + 1000]))
                    .order_by(col(Measurement.period))):
                out[m.action_id] = m
    return out


def action_row(action: Action, latest: Measurement | None = None) -> dict[str, Any]:
    """The flat view of an action used by `actions list` (JSON/CSV) and by digests. `last_period`
    and `last_value` are the newest figure: the last cycle's evidence, or `latest` (the action's
    newest re-measurement, `latest_measurements`) when that is newer and has a value."""
    last = (action.evidence or [{}])[-1]
    if latest is not None and latest.value is not None and latest.period > str(last.get("period") or ""):
        last = {"period": latest.period, "value": latest.value}
    return {
        "id": action.id, "kpi": action.kpi, "scope": action.scope, "scope_value": action.scope_value,
        "department": action.department, "head": action.head, "status": action.status,
        "opened_period": action.opened_period, "due": action.due, "severity": action.severity,
        "baseline_value": action.baseline_value, "target": action.target,
        "last_period": last.get("period"), "last_value": last.get("value"),
        "cycles": len(action.evidence or []), "closed_period": action.closed_period,
    }
