"""What a notice says about one action or one re-measurement: its lines in the reader's language
(KPI and scope names, the verdict sentence, the evidence).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cxloop.config import Settings
from cxloop.models import Action, Measurement, OutboxMessage
from cxloop.periods import period_end_date
from cxloop.tasks.actions import is_overdue
from cxloop.tasks.masking import mask_pii
from cxloop.tasks.rendering import to_target, translate
from cxloop.vocabulary import kpi_label

SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}

HOUR_KPIS = {"first_response_hours", "first_response_p90", "resolution_hours", "resolution_p90"}
SCOPE_PLURALS = {
    "journey_stage": "stages", "touchpoint": "touchpoints", "channel": "channels",
    "department": "departments", "topic": "topics", "segment": "segments", "region": "regions",
}
STATUS_LABELS = {
    "open": "Open", "acknowledged": "Acknowledged", "in_progress": "In progress", "done": "Done",
    "escalated": "Escalated", "reopened": "Reopened", "verified": "Verified", "cancelled": "Cancelled",
}
SEVERITY_LABELS = {"high": "High", "medium": "Medium", "low": "Low"}
VERDICT_LABELS = {
    "improved": "Improved", "no_change": "No detectable change", "worsened": "Worsened",
    "insufficient": "Insufficient data", "inconclusive": "Inconclusive",
}


@dataclass
class ActionItem:
    """One action as a head of department reads it."""

    id: int
    kpi: str
    kpi_label: str
    scope: str
    scope_value: str
    status: str
    status_label: str
    severity: str
    severity_label: str
    due: date | None
    overdue: bool
    opened_period: str
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    target: float | None = None
    gap: float | None = None  # value - target, as the notice shows it
    comments: list[str] = field(default_factory=list)
    playbook: str = ""
    note: str = ""
    context: list[str] = field(default_factory=list)  # broader results short because of this one
    link: str = ""  # into the web workspace, when `[web] base_url` is set
    latest_note: str = ""  # the last note or evidence link a person added (web workspace or CLI)
    drivers: list[str] = field(default_factory=list)  # key drivers to work on (evidence "drivers")


@dataclass
class VerdictItem:
    """One re-measurement, with the plain-words sentence the template prints."""

    action_id: int
    kpi_label: str
    scope_value: str
    verdict: str
    verdict_label: str
    baseline: float | None
    value: float | None
    n: int
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    method: str
    sentence: str
    status_label: str


@dataclass
class Draft:
    """A rendered notice before it is stored."""

    period: str
    recipient: str
    kind: str
    language: str
    subject: str
    body_html: str
    body_text: str

    def to_message(self, route: str) -> OutboxMessage:
        return OutboxMessage(period=self.period, recipient=self.recipient, kind=self.kind,
                             language=self.language, subject=self.subject, body_html=self.body_html,
                             body_text=self.body_text, route=route)


def translated(text: str, lang: str, **values: Any) -> str:
    out = translate(text, lang)
    return out % values if values else out


def scope_value_label(settings: Settings, scope: str, value: str, lang: str) -> str:
    """A scope value as people call it: topic names in the reader's language, department names."""
    if scope == "topic" and settings.topics:
        for topic in settings.topics:
            if topic.id == value:
                return topic.name_zh if lang == "zh" else topic.name_en
    if scope == "department" and value in settings.departments:
        return settings.departments[value].name
    if scope == "overall":
        return translated("the company", lang)
    return translate(value, lang)  # journey stages, channels, touchpoints have catalog names


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def _effect(m: Measurement) -> tuple[float | None, float | None, float | None]:
    """(estimate, low, high): the DiD effect when there is one, else the before/after change."""
    if m.effect is not None:
        return m.effect, m.effect_ci_low, m.effect_ci_high
    return m.change, m.change_ci_low, m.change_ci_high


def verdict_sentence(settings: Settings, action: Action, m: Measurement, lang: str) -> str:
    """Plain words for a verdict, e.g. "NPS of delivery rose 9.5 points (95% CI 4.1 to 14.8) more
    than in comparable stages"; a before/after fallback says that it is one."""
    kpi = kpi_label(action.kpi, lang)
    scope = scope_value_label(settings, action.scope, action.scope_value, lang)
    effect, low, high = _effect(m)
    did = m.method == "did" and m.effect is not None
    if effect is None:
        return translated("Too few responses to judge %(kpi)s of %(scope)s this cycle (n = %(n)s).", lang,
                  kpi=kpi, scope=scope, n=m.n)
    rose = effect >= 0
    lo, hi = (low, high) if rose else ((-high if high is not None else None),
                                      (-low if low is not None else None))
    values = {
        "kpi": kpi, "scope": scope, "amount": _fmt(abs(effect)),
        "unit": translated("hours" if action.kpi in HOUR_KPIS else "points", lang),
        "conf": f"{settings.kpis.confidence * 100:.0f}", "low": _fmt(lo), "high": _fmt(hi),
        "dims": translated(SCOPE_PLURALS.get(action.scope, "scopes"), lang), "since": action.opened_period,
    }
    if did:
        text = ("%(kpi)s of %(scope)s rose %(amount)s %(unit)s (%(conf)s%% CI %(low)s to %(high)s) "
                "more than in comparable %(dims)s." if rose else
                "%(kpi)s of %(scope)s fell %(amount)s %(unit)s (%(conf)s%% CI %(low)s to %(high)s) "
                "more than in comparable %(dims)s.")
    else:
        text = ("%(kpi)s of %(scope)s rose %(amount)s %(unit)s since %(since)s (%(conf)s%% CI %(low)s "
                "to %(high)s); no comparable %(dims)s, so this is a before/after change only." if rose
                else "%(kpi)s of %(scope)s fell %(amount)s %(unit)s since %(since)s (%(conf)s%% CI "
                "%(low)s to %(high)s); no comparable %(dims)s, so this is a before/after change only.")
    sentence = translated(text, lang, **values)
    if m.verdict == "insufficient":
        sentence += " " + translated("Too few responses for a verdict (n = %(n)s).", lang, n=m.n)
    return sentence


def _comment_text(item: Any) -> str:
    if isinstance(item, dict):
        item = item.get("text") or item.get("comment") or ""
    return mask_pii(str(item or "")).strip()


def _latest_evidence(action: Action, period: str) -> dict[str, Any]:
    entries = [e for e in (action.evidence or []) if isinstance(e, dict)]
    for entry in reversed(entries):
        if entry.get("period") == period:
            return entry
    return entries[-1] if entries else {}


def _num_or_none(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _steps(playbook: str) -> str:
    """What a notice quotes of an action's playbook: what follows its first "### " heading, the
    steps. A shipped playbook opens with the facts of the shortfall (`templates/playbooks/
    _facts.md.j2`, which has no such heading), which the notice already lists beside it; one
    without such a heading is quoted whole. A playbook of several sections keeps all of them,
    their later headings as plain lines."""
    lines = playbook.strip().splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith("### ")), -1)
    return "\n".join(line.strip().removeprefix("### ") for line in lines[first + 1:] if line.strip())


def action_item(settings: Settings, action: Action, period: str, lang: str, note: str = "") -> ActionItem:
    ev = _latest_evidence(action, period)
    value, target = _num_or_none(ev.get("value")), _num_or_none(ev.get("target", action.target))
    gap = to_target(value, target)  # shown as "value (target T, value - T)"
    comments = ev.get("comments") or ev.get("worst_comments") or []
    n = ev.get("n")
    overdue = is_overdue(action, period_end_date(period))  # one definition with `cxloop actions`
    return ActionItem(
        id=action.id or 0, kpi=action.kpi, kpi_label=kpi_label(action.kpi, lang), scope=action.scope,
        scope_value=scope_value_label(settings, action.scope, action.scope_value, lang),
        status=action.status, status_label=translated(STATUS_LABELS.get(action.status, action.status), lang),
        severity=action.severity,
        severity_label=translated(SEVERITY_LABELS.get(action.severity, action.severity), lang),
        due=action.due, overdue=overdue, opened_period=action.opened_period, value=value,
        ci_low=_num_or_none(ev.get("ci_low")), ci_high=_num_or_none(ev.get("ci_high")),
        n=int(n) if isinstance(n, int | float) else None, target=target, gap=gap,
        comments=list(dict.fromkeys(c for c in (_comment_text(c) for c in comments if c) if c)),
        playbook=mask_pii(_steps(action.playbook or "")), note=mask_pii(note),
        context=[_context_line(settings, c, lang) for c in ev.get("context") or []],
        drivers=[driver_line(d, lang) for d in ev.get("drivers") or [] if isinstance(d, dict)],
    )


def driver_line(d: dict[str, Any], lang: str) -> str:
    """"Seat comfort (rank =1, importance 41% [33–49%], mean 2.41 / 1–5)" for a driver an action names."""
    name = (d.get("label_zh") if lang == "zh" else d.get("label_en")) or d.get("label_en") or d.get("driver")
    rank = f"={d.get('rank')}" if d.get("tied") else str(d.get("rank"))
    scale = d.get("scale") or []
    of = f" / {scale[0]:g}–{scale[1]:g}" if len(scale) == 2 else ""
    return (f"{name} ({translated('rank', lang)} {rank}, "
            f"{translated('importance', lang)} {d.get('share', 0):.0f}% "
            f"[{d.get('share_low', 0):.0f}–{d.get('share_high', 0):.0f}%], {translated('mean', lang)} "
            f"{d.get('mean', 0):.2f}{of})")


def _context_line(settings: Settings, c: dict[str, Any], lang: str) -> str:
    """"Journey stage delivery: NPS 18.5 (target 30, n=5,869)" for a result this action explains."""
    value, target = _num_or_none(c.get("value")), _num_or_none(c.get("target"))
    where = scope_value_label(settings, c["scope"], c["scope_value"], lang)
    text = f"{where}: {kpi_label(c['kpi'], lang)} {'–' if value is None else f'{value:.1f}'}"
    if target is not None:
        text += f" ({translated('target', lang)} {target:g}, n={c.get('n')})"
    return text


def verdict_item(settings: Settings, action: Action, m: Measurement, lang: str) -> VerdictItem:
    effect, low, high = _effect(m)
    return VerdictItem(
        action_id=action.id or 0, kpi_label=kpi_label(action.kpi, lang),
        scope_value=scope_value_label(settings, action.scope, action.scope_value, lang), verdict=m.verdict,
        verdict_label=translated(VERDICT_LABELS.get(m.verdict, m.verdict), lang),
        baseline=m.baseline if m.baseline is not None else action.baseline_value, value=m.value, n=m.n,
        effect=effect, ci_low=low, ci_high=high,
        method=m.method, sentence=verdict_sentence(settings, action, m, lang),
        status_label=translated(STATUS_LABELS.get(action.status, action.status), lang),
    )
