"""Notices to department heads: queue them in the outbox, then deliver them through Apprise.

Why an outbox table and not a direct send: a cycle can be re-run, a mail server can be down, and a
department head must still get each notice exactly once. `queue_notices` writes at most one message
per (period, recipient, kind) and never touches one already sent; `deliver` sends what is pending,
remembers every receiver already served (so a retry after a partial failure skips them), retries
with back-off and records why a send failed - with secrets scrubbed, since Apprise URLs carry
passwords, tokens and webhook keys.

Every channel goes through Apprise: a route is an Apprise URL (`mailto://`, `slack://`,
`workflows://`, `dingtalk://`, `wecombot://`, `feishu://`, `json://` ...) or a tag of the Apprise
config file `[notify] apprise_config`. Receivers that show HTML (e-mail) get the HTML digest,
all others the Markdown one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from sqlalchemy import Engine, and_, or_, update
from sqlmodel import Session, col, select

from cxloop.config import DepartmentConfig, Settings
from cxloop.db import session_scope
from cxloop.models import Action, ActionEvent, Measurement, OutboxMessage, QualityCheck, utcnow
from cxloop.periods import period_end_date
from cxloop.tasks import claims
from cxloop.tasks.actions import is_overdue
from cxloop.tasks.lifecycle import OPEN_STATUSES
from cxloop.tasks.masking import mask_pii
from cxloop.tasks.rendering import escape_markdown, render, translate

if TYPE_CHECKING:
    import apprise

log = logging.getLogger(__name__)

DIGEST, ESCALATION, DATA_QUALITY = "digest", "escalation", "data_quality"
ESCALATION_RECIPIENT, DATA_OWNERS = "escalation", "data_owners"
SENDABLE = ("pending", "failed")
# While a run sends a message it holds it ("sending", `claimed_by` this process) until this lease
# ends. A run that died mid-send leaves the message to the next run: at once when the holder ran on
# the same machine and its process is gone, else when the lease is over.
LEASE = timedelta(minutes=10)
# Headers that carry a notice's idempotency key to receivers that take extra headers (Apprise's
# `+Header=value` URL syntax): HTTP webhooks (json://, form://, xml://) and e-mail.
IDEMPOTENCY_HEADER = "Idempotency-Key"
NOTICE_HEADER = "X-Cxloop-Notice"
# Across runs a failed message waits 1, 2, 4 ... minutes (at most 6 hours) before the next try.
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=6)
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


# --------------------------------------------------------------------------------------------
# What a notice says
# --------------------------------------------------------------------------------------------

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
    gap: float | None = None
    comments: list[str] = field(default_factory=list)
    playbook: str = ""
    note: str = ""
    context: list[str] = field(default_factory=list)  # broader results short because of this one
    link: str = ""  # into the web workspace, when `[web] base_url` is set
    latest_note: str = ""  # the last note or evidence link a person added (web workspace or CLI)


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


def _t(text: str, lang: str, **values: Any) -> str:
    out = translate(text, lang)
    return out % values if values else out


def kpi_label(kpi: str, lang: str) -> str:
    """The KPI's name as the reports and `cxloop actions` print it."""
    from cxloop.vocabulary import kpi_label as label

    return label(kpi, lang)


def scope_label(settings: Settings, scope: str, value: str, lang: str) -> str:
    """A scope value as people call it: topic names in the reader's language, department names."""
    if scope == "topic" and settings.topics:
        for topic in settings.topics:
            if topic.id == value:
                return topic.name_zh if lang == "zh" else topic.name_en
    if scope == "department" and value in settings.departments:
        return settings.departments[value].name
    if scope == "overall":
        return _t("the company", lang)
    from cxloop.tasks.rendering import translate

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
    scope = scope_label(settings, action.scope, action.scope_value, lang)
    effect, low, high = _effect(m)
    did = m.method == "did" and m.effect is not None
    if effect is None:
        return _t("Too few responses to judge %(kpi)s of %(scope)s this cycle (n = %(n)s).", lang,
                  kpi=kpi, scope=scope, n=m.n)
    rose = effect >= 0
    lo, hi = (low, high) if rose else ((-high if high is not None else None),
                                      (-low if low is not None else None))
    values = {
        "kpi": kpi, "scope": scope, "amount": _fmt(abs(effect)),
        "unit": _t("hours" if action.kpi in HOUR_KPIS else "points", lang),
        "conf": f"{settings.kpis.confidence * 100:.0f}", "low": _fmt(lo), "high": _fmt(hi),
        "dims": _t(SCOPE_PLURALS.get(action.scope, "scopes"), lang), "since": action.opened_period,
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
    sentence = _t(text, lang, **values)
    if m.verdict == "insufficient":
        sentence += " " + _t("Too few responses for a verdict (n = %(n)s).", lang, n=m.n)
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


def action_item(settings: Settings, action: Action, period: str, lang: str, note: str = "") -> ActionItem:
    ev = _latest_evidence(action, period)
    value, target = _num_or_none(ev.get("value")), _num_or_none(ev.get("target", action.target))
    gap = _num_or_none(ev.get("gap"))
    if gap is None and value is not None and target is not None:
        gap = value - target
    comments = ev.get("comments") or ev.get("worst_comments") or []
    n = ev.get("n")
    overdue = is_overdue(action, period_end_date(period))  # one definition with `cxloop actions`
    return ActionItem(
        id=action.id or 0, kpi=action.kpi, kpi_label=kpi_label(action.kpi, lang), scope=action.scope,
        scope_value=scope_label(settings, action.scope, action.scope_value, lang),
        status=action.status, status_label=_t(STATUS_LABELS.get(action.status, action.status), lang),
        severity=action.severity,
        severity_label=_t(SEVERITY_LABELS.get(action.severity, action.severity), lang),
        due=action.due, overdue=overdue, opened_period=action.opened_period, value=value,
        ci_low=_num_or_none(ev.get("ci_low")), ci_high=_num_or_none(ev.get("ci_high")),
        n=int(n) if isinstance(n, int | float) else None, target=target, gap=gap,
        comments=[c for c in (_comment_text(c) for c in comments if c) if c],
        playbook=mask_pii(action.playbook or "").strip(), note=mask_pii(note),
        context=[_context_line(settings, c, lang) for c in ev.get("context") or []],
    )


def _context_line(settings: Settings, c: dict[str, Any], lang: str) -> str:
    """"Journey stage delivery: NPS 18.5 (target 30, n=5,869)" for a result this action explains."""
    value, target = _num_or_none(c.get("value")), _num_or_none(c.get("target"))
    where = scope_label(settings, c["scope"], c["scope_value"], lang)
    text = f"{where}: {kpi_label(c['kpi'], lang)} {'–' if value is None else f'{value:.1f}'}"
    if target is not None:
        text += f" ({_t('target', lang)} {target:g}, n={c.get('n')})"
    return text


def _verdict_item(settings: Settings, action: Action, m: Measurement, lang: str) -> VerdictItem:
    effect, low, high = _effect(m)
    return VerdictItem(
        action_id=action.id or 0, kpi_label=kpi_label(action.kpi, lang),
        scope_value=scope_label(settings, action.scope, action.scope_value, lang), verdict=m.verdict,
        verdict_label=_t(VERDICT_LABELS.get(m.verdict, m.verdict), lang),
        baseline=m.baseline if m.baseline is not None else action.baseline_value, value=m.value, n=m.n,
        effect=effect, ci_low=low, ci_high=high,
        method=m.method, sentence=verdict_sentence(settings, action, m, lang),
        status_label=_t(STATUS_LABELS.get(action.status, action.status), lang),
    )


def _sort_key(item: ActionItem) -> tuple[int, int, str, int]:
    return (0 if item.overdue else 1, SEVERITY_ORDER.get(item.severity, 3),
            item.due.isoformat() if item.due else "9999", item.id)


def _report_url(settings: Settings, period: str, department: str | None) -> str | None:
    base = settings.notify.report_base_url
    if not base:
        return None
    name = f"report-{quote(department, safe='')}.html" if department else "report.html"
    return f"{base.rstrip('/')}/{period}/{name}"


def _render_pair(name: str, lang: str, **ctx: Any) -> tuple[str, str]:
    return render(f"{name}.html", lang, **ctx), render(f"{name}.md", lang, **ctx)


def _person_notes(session: Session, action_ids: list[int]) -> dict[int, str]:
    """Each action's latest note or evidence link from a person, masked, for the next digest."""
    from cxloop.tasks.actions import is_person_note

    if not action_ids:
        return {}
    events = session.exec(select(ActionEvent).where(col(ActionEvent.action_id).in_(action_ids))
                          .where(col(ActionEvent.to_status).is_(None))
                          .order_by(col(ActionEvent.at), col(ActionEvent.id))).all()
    return {e.action_id: _short(mask_pii(" ".join(p for p in (e.note, e.link or "") if p)), 300)
            for e in events if is_person_note(e)}


def _digest(settings: Settings, session: Session, period: str, dept_id: str,
            mint_links: bool = True) -> Draft | None:
    lang = settings.department_language(dept_id)
    dept = settings.departments.get(dept_id) or DepartmentConfig(name=dept_id)
    actions = session.exec(select(Action).where(Action.department == dept_id)
                           .where(Action.opened_period <= period).order_by(col(Action.id))).all()
    new = [action_item(settings, a, period, lang) for a in actions if a.opened_period == period]
    earlier = [action_item(settings, a, period, lang) for a in actions
               if a.opened_period < period and a.status in OPEN_STATUSES]
    overdue = sorted((i for i in earlier if i.overdue), key=_sort_key)
    still_open = sorted((i for i in earlier if not i.overdue), key=_sort_key)
    new.sort(key=_sort_key)
    rows = session.exec(select(Measurement, Action).join(Action, col(Measurement.action_id) == Action.id)
                        .where(Measurement.period == period).where(Action.department == dept_id)
                        .order_by(col(Action.id))).all()
    verdicts = [_verdict_item(settings, a, m, lang) for m, a in rows]
    if not (new or overdue or still_open or verdicts) and not settings.notify.all_clear:
        return None
    items = [*new, *overdue, *still_open]
    notes = _person_notes(session, [i.id for i in items])
    urls: dict[int, str] = {}
    if settings.web.base_url:
        from cxloop.web.links import action_urls

        urls = action_urls(settings, session.get_bind(), dept_id, [i.id for i in items],  # type: ignore[arg-type]
                           mint=mint_links)
    for item in items:
        item.link, item.latest_note = urls.get(item.id, ""), notes.get(item.id, "")
    open_count = len(overdue) + len(still_open)
    if new or open_count or verdicts:
        subject = _t("[cxloop] %(period)s %(dept)s: %(new)s new, %(open)s open, %(overdue)s overdue "
                     "actions", lang, period=period, dept=dept.name, new=len(new), open=open_count,
                     overdue=len(overdue))
    else:
        subject = _t("[cxloop] %(period)s %(dept)s: nothing to act on", lang, period=period,
                     dept=dept.name)
    ctx = dict(period=period, department=dept.name, head=dept.head, new=new, overdue=overdue,
               still_open=still_open, verdicts=verdicts, subject=subject,
               report_url=_report_url(settings, period, dept_id), project=settings.project.name,
               confidence=f"{settings.kpis.confidence * 100:.0f}")
    html, text = _render_pair("notice", lang, **ctx)
    return Draft(period, dept_id, DIGEST, lang, subject, html, text)


def _escalations(settings: Settings, session: Session, period: str) -> Draft | None:
    lang = settings.project.language
    rows = session.exec(select(ActionEvent, Action).join(Action, col(ActionEvent.action_id) == Action.id)
                        .where(ActionEvent.period == period).where(ActionEvent.to_status == "escalated")
                        .order_by(col(Action.id), col(ActionEvent.id))).all()
    latest: dict[int, tuple[ActionEvent, Action]] = {}
    for event, action in rows:
        latest[action.id or 0] = (event, action)
    if not latest:
        return None
    items = []
    for event, action in latest.values():
        item = action_item(settings, action, period, lang, note=event.note)
        m = session.exec(select(Measurement).where(Measurement.action_id == action.id)
                         .where(Measurement.period == period)).first()
        dept = settings.departments.get(action.department)
        items.append({"action": item, "department": dept.name if dept else action.department,
                      "head": (dept.head if dept else "") or action.head,
                      "verdict": _verdict_item(settings, action, m, lang) if m else None})
    subject = _t("[cxloop] %(period)s: %(n)s actions escalated", lang, period=period, n=len(items))
    html, text = _render_pair("escalation", lang, period=period, items=items, subject=subject,
                              report_url=_report_url(settings, period, None),
                              project=settings.project.name)
    return Draft(period, ESCALATION_RECIPIENT, ESCALATION, lang, subject, html, text)


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = mask_pii(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _data_quality(settings: Settings, session: Session, period: str) -> Draft:
    lang = settings.project.language
    checks = session.exec(select(QualityCheck).where(QualityCheck.period == period)
                          .where(QualityCheck.success == False)  # noqa: E712
                          .order_by(col(QualityCheck.severity), col(QualityCheck.id))).all()
    def gating(c: QualityCheck) -> bool:
        return bool((c.observed or {}).get("gating", c.level == "batch" and c.severity == "critical"))

    checks = sorted(checks, key=lambda c: not gating(c))  # what held the cycle first
    items = [{"suite": c.suite, "expectation": c.expectation, "column": c.column or "", "level": c.level,
              "severity": c.severity, "unexpected_count": c.unexpected_count, "gating": gating(c),
              "observed": _short((c.observed or {}).get("message") or c.observed) if c.observed else "",
              "sample": _short(c.sample[:5]) if c.sample else ""} for c in checks]
    critical = sum(1 for c in checks if gating(c))
    subject = _t("[cxloop] %(period)s: cycle held by the data-quality gate (%(n)s checks failed)",
                 lang, period=period, n=len(items))
    html, text = _render_pair("data_quality", lang, period=period, checks=items, critical=critical,
                              subject=subject, project=settings.project.name,
                              sources=[s.name for s in settings.sources])
    return Draft(period, DATA_OWNERS, DATA_QUALITY, lang, subject, html, text)


def build_notices(settings: Settings, engine: Engine, period: str, held: bool,
                  mint_links: bool = True) -> list[Draft]:
    """Render this period's notices without storing them (what `queue_notices` would queue);
    `mint_links=False` (a preview) puts no live sign-in link in them."""
    drafts: list[Draft] = []
    with Session(engine) as session:
        if held:
            return [_data_quality(settings, session, period)]
        # Departments of the config, then any owner an action names that the config lacks (the
        # default owner, a renamed department): their digest is stored as no_route, not lost.
        owners = session.exec(select(Action.department).distinct()).all()
        for dept_id in dict.fromkeys([*settings.departments, *sorted(owners)]):
            draft = _digest(settings, session, period, dept_id, mint_links)
            if draft:
                drafts.append(draft)
        esc = _escalations(settings, session, period)
        if esc:
            drafts.append(esc)
    return drafts


def queue_notices(settings: Settings, engine: Engine, period: str, held: bool) -> list[OutboxMessage]:
    """Put this period's notices in the outbox: one per (period, recipient, kind), ever.

    A message already sent, partly delivered or being sent is left exactly as it is; a pending,
    failed or unroutable one is re-rendered so a re-run after a data or config fix sends the
    current text.
    """
    drafts = build_notices(settings, engine, period, held)
    out: list[OutboxMessage] = []
    with session_scope(engine) as session:
        for draft in drafts:
            route = describe_routes(routes_for(settings, draft.recipient))
            existing = session.exec(select(OutboxMessage).where(OutboxMessage.period == period)
                                    .where(OutboxMessage.recipient == draft.recipient)
                                    .where(OutboxMessage.kind == draft.kind)).first()
            if existing is None:
                msg = draft.to_message(route)
                session.add(msg)
                out.append(msg)
                continue
            if existing.status in ("pending", "failed", "no_route") and not existing.delivered:
                existing.language, existing.subject = draft.language, draft.subject
                existing.body_html, existing.body_text = draft.body_html, draft.body_text
                existing.route = route
                if existing.status == "no_route":
                    existing.status = "pending"
                session.add(existing)
            out.append(existing)
        session.flush()
    return out


# --------------------------------------------------------------------------------------------
# Routes and secrets
# --------------------------------------------------------------------------------------------

def routes_for(settings: Settings, recipient: str) -> list[str]:
    """The `notify` entries (Apprise URLs or tags) configured for a recipient."""
    if recipient == ESCALATION_RECIPIENT:
        routes = list(settings.actions.escalation_notify)
    elif recipient == DATA_OWNERS:
        routes = list(settings.quality.data_owners)
        routes += [r for s in settings.sources for r in s.data_owners]
    else:
        dept = settings.departments.get(recipient)
        routes = list(dept.notify) if dept else []
    return list(dict.fromkeys(r.strip() for r in routes if r.strip()))


def is_url(route: str) -> bool:
    return "://" in route


def describe_url(url: str) -> str:
    """An Apprise URL with its secrets hidden, short enough for a table: scheme, host and masked path."""
    import apprise

    import cxloop.tasks.sinks  # noqa: F401  (registers cxfile://)

    _install_secret_filter().add(secret_fragments(url))  # Apprise logs a rejected token verbatim
    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        scheme = url.split("://", 1)[0]
        return f"{scheme}://*** (not a usable Apprise URL)"
    return _privacy_url(plugin)


_WEBHOOK_SCHEMES = ("json", "jsons", "xml", "xmls", "form", "forms")


def _privacy_url(plugin: Any) -> str:
    """Apprise's privacy form without the query; generic webhooks also get their path masked,
    since Apprise shows it in full and such URLs often carry their token there."""
    text = unquote(str(plugin.url(privacy=True)).split("?", 1)[0])
    scheme, sep, rest = text.partition("://")
    if scheme in _WEBHOOK_SCHEMES and "/" in rest:
        host, _, path = rest.partition("/")
        path = "/".join(f"{seg[0]}...{seg[-1]}" if len(seg) >= 6 else seg for seg in path.split("/"))
        text = f"{scheme}{sep}{host}/{path}"
    return text


def describe_routes(routes: Iterable[str]) -> str:
    parts = [describe_url(r) if is_url(r) else f"tag:{r}" for r in routes]
    return "; ".join(parts) if parts else "(no route)"


_SECRET_KEY = re.compile(r"token|key|secret|pass|pwd|auth|sig|code", re.I)
# Schemes whose host is a server name, not a credential.
_PLAIN_HOST_SCHEMES = ("mailto", "mailtos", "json", "jsons", "xml", "xmls", "form", "forms", "cxfile",
                       "workflows", "workflow", "http", "https")


def secret_fragments(url: str) -> list[str]:
    """Parts of a URL that may be secret: the URL itself, user info, path segments, query values."""
    frags = {url}
    try:
        parts = urlsplit(url)
        candidates = [parts.password or ""]
        if parts.password is None and "@" in parts.netloc:  # dingtalk://SECRET@TOKEN, slack://bot@...
            candidates.append(parts.netloc.rsplit("@", 1)[0])
        candidates += [seg for seg in parts.path.split("/") if len(seg) >= 6 and "@" not in unquote(seg)]
        candidates += [value for key, _, value in (kv.partition("=") for kv in parts.query.split("&"))
                       if _SECRET_KEY.search(key) and len(value) >= 4]
        host = parts.netloc.rsplit("@", 1)[-1].split(":")[0]
        if parts.scheme not in _PLAIN_HOST_SCHEMES and len(host) >= 6:
            candidates.append(host)  # wecombot://KEY, feishu://TOKEN: the token is the "host"
    except ValueError:
        candidates = []
    for c in candidates:
        if len(c) >= 3:
            frags.update({c, unquote(c), quote(unquote(c), safe="")})
    return sorted((f for f in frags if len(f) >= 3), key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Remove every secret fragment from a text (longest first, so a URL goes before its parts)."""
    for s in sorted(set(secrets), key=len, reverse=True):
        if s:
            text = text.replace(s, "***")
    return text


class SecretFilter(logging.Filter):
    """Scrubs every secret cxloop has seen in a route from Apprise's (and urllib3's) log records.

    Apprise logs request URLs and exception texts at DEBUG/WARNING; webhook URLs carry their token
    in the path, so whatever logging the host application configures must never see them.
    """

    LOGGERS = ("apprise", "urllib3.connectionpool")

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def add(self, secrets: Iterable[str]) -> None:
        self.secrets.update(s for s in secrets if len(s) >= 4)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            cleaned = scrub(text, self.secrets)
            if cleaned != text:
                record.msg, record.args = cleaned, ()
        return True


_SECRET_FILTER = SecretFilter()
_CONFIG_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


def _install_secret_filter() -> SecretFilter:
    for name in SecretFilter.LOGGERS:
        logger = logging.getLogger(name)
        if _SECRET_FILTER not in logger.filters:
            logger.addFilter(_SECRET_FILTER)
    return _SECRET_FILTER


@dataclass
class Target:
    """One receiver behind a route: an instantiated Apprise plugin."""

    key: str  # masked, stable: what `OutboxMessage.delivered` remembers
    plugin: Any
    html: bool
    secrets: list[str]


class Router:
    """Turns `notify` entries into Apprise plugins; loads the Apprise config file once per run."""

    def __init__(self, settings: Settings) -> None:
        import apprise

        import cxloop.tasks.sinks  # noqa: F401  (registers cxfile://)

        self.settings = settings
        self.log_filter = _install_secret_filter()
        self.asset = apprise.AppriseAsset(app_id=settings.project.name or "cxloop",
                                          app_desc="cxloop notices", storage_mode="memory")
        self._config: apprise.Apprise | None = None
        self._config_error: str | None = None
        self._loaded = False

    def _config_servers(self) -> apprise.Apprise | None:
        import apprise

        if not self._loaded:
            self._loaded = True
            name = self.settings.notify.apprise_config
            if not name:
                self._config_error = "no [notify] apprise_config file is set"
            else:
                path = self.settings.resolve(name)
                if not path.is_file():
                    self._config_error = f"Apprise config {path} not found"
                else:
                    for url in _CONFIG_URL.findall(path.read_text(encoding="utf-8", errors="replace")):
                        self.log_filter.add(secret_fragments(url.rstrip(":")))
                    cfg = apprise.AppriseConfig(asset=self.asset)
                    if not cfg.add(str(path)):
                        self._config_error = f"Apprise config {path} could not be read"
                    else:
                        self._config = apprise.Apprise(asset=self.asset)
                        self._config.add(cfg)
        return self._config

    def _target(self, plugin: Any) -> Target:
        from apprise import NotifyFormat

        raw = str(plugin.url(privacy=False))
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        return Target(key=f"{_privacy_url(plugin)} #{digest}", plugin=plugin,
                      html=plugin.notify_format == NotifyFormat.HTML, secrets=secret_fragments(raw))

    def resolve(self, routes: list[str]) -> tuple[list[Target], list[str], list[str]]:
        """(receivers, problems, secrets): problems say which routes led nowhere, secret-free."""
        import apprise

        targets: dict[str, Target] = {}
        problems: list[str] = []
        secrets: list[str] = []
        for route in routes:
            if is_url(route):
                secrets += secret_fragments(route)
                self.log_filter.add(secrets)
                plugin = apprise.Apprise.instantiate(route, asset=self.asset, suppress_exceptions=True)
                if plugin is None:
                    problems.append(f"{describe_url(route)}: Apprise cannot use this URL")
                    continue
                plugins = [plugin]
            else:
                cfg = self._config_servers()
                if cfg is None:
                    problems.append(f"tag {route}: {self._config_error}")
                    continue
                plugins = list(cfg.find(tag=route))
                if not plugins:
                    problems.append(f"tag {route}: no URL in the Apprise config has this tag")
                    continue
            for plugin in plugins:
                target = self._target(plugin)
                secrets += target.secrets
                targets.setdefault(target.key, target)
        self.log_filter.add(secrets)
        return list(targets.values()), problems, secrets


# --------------------------------------------------------------------------------------------
# Delivery
# --------------------------------------------------------------------------------------------

@dataclass
class DeliverySummary:
    sent: int = 0
    failed: int = 0
    no_route: int = 0
    waiting: int = 0  # failed earlier, back-off not over yet
    busy: int = 0  # another run is sending it right now
    dry_run: int = 0
    files: list[Path] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int | float | str]:
        return {"sent": self.sent, "failed": self.failed, "no_route": self.no_route,
                "waiting": self.waiting, "busy": self.busy, "dry_run": self.dry_run}


def backoff(attempts: int) -> timedelta:
    """Wait before the next run may try again: doubles with every failed attempt, capped."""
    return min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_CAP)


def message_row(m: OutboxMessage) -> dict[str, Any]:
    """An outbox row for people and machines: never the body, never a secret."""
    return {"id": m.id, "period": m.period, "recipient": m.recipient, "kind": m.kind,
            "language": m.language, "status": m.status, "attempts": m.attempts, "route": m.route,
            "subject": m.subject, "last_error": m.last_error, "sent_at": m.sent_at,
            "next_attempt_at": m.next_attempt_at}


def _aware(ts: datetime | None) -> datetime | None:
    from datetime import UTC

    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


def notice_key(msg: OutboxMessage) -> str:
    """The notice's idempotency key: the same for every attempt, run and process that sends this
    outbox row, so a receiver can drop a second copy (the one left after a crash between the
    receiver's answer and `sent` being stored)."""
    row = f"{msg.id}|{msg.period}|{msg.recipient}|{msg.kind}"
    return f"cxloop-{msg.period}-{msg.kind}-{hashlib.sha256(row.encode()).hexdigest()[:16]}"


def _with_key(plugin: Any, key: str, asset: Any) -> Any:
    """The plugin again, with the key as extra headers where Apprise lets a URL add headers
    (`+Header=value`); other channels have no place for it and are sent as they are."""
    import apprise
    from apprise.plugins.email import NotifyEmail

    if "headers" not in getattr(plugin, "template_kwargs", {}):
        return plugin
    names = [NOTICE_HEADER] if isinstance(plugin, NotifyEmail) else [IDEMPOTENCY_HEADER, NOTICE_HEADER]
    raw = str(plugin.url(privacy=False))
    extra = urlencode({f"+{name}": key for name in names})
    keyed = apprise.Apprise.instantiate(f"{raw}{'&' if '?' in raw else '?'}{extra}", asset=asset,
                                        suppress_exceptions=True)
    return keyed if keyed is not None else plugin


def _send(target: Target, msg: OutboxMessage, asset: Any) -> tuple[bool | None, str]:
    import apprise

    ap = apprise.Apprise(asset=asset)
    ap.add(_with_key(target.plugin, notice_key(msg), asset))
    with apprise.LogCapture(level=logging.WARNING) as captured:
        if target.html:
            result = ap.notify(body=msg.body_html, title=msg.subject,
                               body_format=apprise.NotifyFormat.HTML)
        else:
            # The subject carries config strings (department names): literal text in Markdown too.
            result = ap.notify(body=msg.body_text, title=escape_markdown(msg.subject),
                               body_format=apprise.NotifyFormat.MARKDOWN)
        text = captured.getvalue() if hasattr(captured, "getvalue") else ""
    return result, " ".join(line.split(" - ", 2)[-1] for line in str(text).splitlines() if line.strip())


def _no_route_reason(settings: Settings, recipient: str) -> str:
    if recipient == ESCALATION_RECIPIENT:
        return "[actions] escalation_notify is empty"
    if recipient == DATA_OWNERS:
        return "no [quality] data_owners and no data_owners on any source"
    if recipient not in settings.departments:
        return f"department {recipient!r} is not in the config (add [departments.{recipient}] with notify)"
    return f"[departments.{recipient}] notify is empty"


def _save(engine: Engine, msg: OutboxMessage) -> None:
    with session_scope(engine) as session:
        session.merge(msg)


def _holder_gone(msg: OutboxMessage) -> bool:
    """A `sending` message whose sending process on this machine no longer exists (kill -9)."""
    return msg.status == "sending" and claims.is_gone(msg.claimed_by)


def _claim(engine: Engine, msg: OutboxMessage, now: datetime) -> bool:
    """Take the message for this run. The row must still be as this run read it (same attempts,
    still sendable), so two runs at once (the monthly flow and a manual `--retry`) never both send.
    A `sending` row is taken over when its lease is over, or when it still names the holder this
    run found dead (two runs that both found it dead: only the first one's update matches)."""
    sending = col(OutboxMessage.status) == "sending"
    stale = col(OutboxMessage.next_attempt_at) <= now
    if _holder_gone(msg):
        stale = or_(stale, col(OutboxMessage.claimed_by) == msg.claimed_by)
    me = str(claims.this_process())
    stmt = (update(OutboxMessage)
            .where(col(OutboxMessage.id) == msg.id, col(OutboxMessage.attempts) == msg.attempts,
                   or_(col(OutboxMessage.status).in_(SENDABLE), and_(sending, stale)))
            .values(status="sending", next_attempt_at=now + LEASE, claimed_by=me))
    with engine.begin() as conn:
        claimed = conn.execute(stmt).rowcount == 1
    if claimed:
        msg.status, msg.next_attempt_at, msg.claimed_by = "sending", now + LEASE, me
    return claimed


def _deliver_one(settings: Settings, engine: Engine, router: Router, msg: OutboxMessage, now: datetime,
                 summary: DeliverySummary, delay: float) -> None:
    if not _claim(engine, msg, now):
        summary.busy += 1
        return
    routes = routes_for(settings, msg.recipient)
    msg.route = describe_routes(routes)
    targets, problems, secrets = router.resolve(routes)
    if not targets:
        msg.status = "no_route"
        msg.last_error = scrub("; ".join(problems) or _no_route_reason(settings, msg.recipient),
                               secrets)
        msg.next_attempt_at = None
        _save(engine, msg)
        summary.no_route += 1
        log.warning("notice %s/%s/%s: no route", msg.period, msg.recipient, msg.kind)
        return
    delivered = list(msg.delivered or [])
    remaining = [t for t in targets if t.key not in delivered]
    errors: dict[str, str] = {}
    for attempt in range(settings.notify.retries + 1):
        if attempt:
            time.sleep(delay * 2 ** (attempt - 1))
        msg.attempts += 1
        for target in list(remaining):
            result, why = _send(target, msg, router.asset)
            if result:
                delivered.append(target.key)
                remaining.remove(target)
                errors.pop(target.key, None)
                msg.delivered = list(delivered)
                _save(engine, msg)  # remembered at once: a crash now cannot cause a second send
            else:
                reason = why or ("no receiver matched" if result is None else "send failed")
                errors[target.key] = f"{target.key.split(' #')[0]}: {reason}"
        if not remaining:
            break
    if remaining:
        msg.status = "failed"
        msg.next_attempt_at = now + backoff(msg.attempts)
        msg.last_error = scrub("; ".join(list(errors.values()) + problems), secrets)[:2000]
        summary.failed += 1
        log.warning("notice %s/%s/%s failed after %s attempts", msg.period, msg.recipient, msg.kind,
                    msg.attempts)
    else:
        msg.status, msg.sent_at, msg.next_attempt_at = "sent", utcnow(), None
        msg.last_error = scrub("; ".join(problems), secrets) or None
        summary.sent += 1
    _save(engine, msg)


def _dry_run(router: Router, settings: Settings, messages: list[OutboxMessage], out_dir: Path,
             summary: DeliverySummary) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for msg in messages:
        targets, _, _ = router.resolve(routes_for(settings, msg.recipient))
        kinds = {"html" if t.html else "md" for t in targets} or {"md"}
        for ext in sorted(kinds):
            path = out_dir / f"{msg.period}-{msg.recipient}-{msg.kind}.{ext}"
            body = msg.body_html if ext == "html" else f"# {msg.subject}\n\n{msg.body_text}"
            path.write_text(body, encoding="utf-8")
            summary.files.append(path)
        summary.dry_run += 1
        summary.messages.append(message_row(msg))


def deliver(settings: Settings, engine: Engine, period: str | None = None, dry_run_dir: Path | None = None,
            now: datetime | None = None, force: bool = False, retry_delay: float | None = None,
            carry_over: bool = True) -> DeliverySummary:
    """Send every pending or failed message whose back-off is over.

    `period` None means every period (`cxloop notify --retry`). With a period, messages of earlier
    periods that failed are retried too (`carry_over`), so a notice that could not go out last
    month goes out with this month's run. `force` ignores the back-off. With `dry_run_dir` the
    messages are written to files instead and nothing changes.
    """
    now = now or utcnow()
    delay = settings.notify.retry_delay_seconds if retry_delay is None else retry_delay
    query = select(OutboxMessage).where(col(OutboxMessage.status).in_([*SENDABLE, "sending"]))
    if period and carry_over:
        # Earlier months' unsent notices too: failed ones, and those a killed run left pending or
        # sending (taken over below once their holder is gone or their lease is over).
        query = query.where(col(OutboxMessage.period) <= period)
    elif period:
        query = query.where(OutboxMessage.period == period)
    with Session(engine, expire_on_commit=False) as session:
        messages = list(session.exec(query.order_by(col(OutboxMessage.id))).all())
        for m in messages:
            session.expunge(m)
    summary = DeliverySummary()
    due: list[OutboxMessage] = []
    for m in messages:
        next_at = _aware(m.next_attempt_at)
        if (next_at is None or next_at <= now or (force and m.status != "sending")
                or _holder_gone(m)):
            due.append(m)
        else:
            summary.waiting += 1
    router = Router(settings)
    if dry_run_dir is not None:
        _dry_run(router, settings, due, Path(dry_run_dir), summary)
        return summary
    for m in due:
        _deliver_one(settings, engine, router, m, now, summary, delay)
        summary.messages.append(message_row(m))
    return summary


def preview(settings: Settings, engine: Engine, period: str, held: bool, out_dir: Path) -> DeliverySummary:
    """A dry run of a cycle's notices: render what `queue_notices` + `deliver` would send to files,
    without writing to the outbox (a notice already sent is left out, as it would not go again)."""
    with Session(engine) as session:
        done = {(m.recipient, m.kind) for m in session.exec(
            select(OutboxMessage).where(OutboxMessage.period == period)).all()
            if m.status == "sent" or m.delivered}
    messages = [d.to_message(describe_routes(routes_for(settings, d.recipient)))
                for d in build_notices(settings, engine, period, held, mint_links=False)
                if (d.recipient, d.kind) not in done]
    summary = DeliverySummary()
    _dry_run(Router(settings), settings, messages, out_dir, summary)
    return summary


def outbox_rows(engine: Engine, period: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    """The outbox as rows for `cxloop outbox` (no bodies, no secrets)."""
    query = select(OutboxMessage)
    if period:
        query = query.where(OutboxMessage.period == period)
    if status:
        query = query.where(OutboxMessage.status == status)
    with Session(engine) as session:
        return [message_row(m) for m in session.exec(query.order_by(col(OutboxMessage.period),
                                                                    col(OutboxMessage.id))).all()]
