"""The short story the demo prints: what the loop found, did and concluded, and where to look."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from sqlalchemy import Engine

from cxloop.config import Settings
from cxloop.tasks.demo import DemoPlan
from cxloop.tasks.demo_followup import FollowupStory
from cxloop.tasks.demo_outcome import demo_outcome


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def tell_story(settings: Settings, engine: Engine, plan: DemoPlan, folder: Path, out: Console,
               followup: FollowupStory | None = None) -> None:
    facts = demo_outcome(settings, engine)
    cycles, actions, measures = facts.cycles, facts.actions, facts.measures
    marketing, held_checks = facts.marketing, facts.held_checks
    out.print()
    out.print("[bold]What happened[/]")
    for period in plan.periods:
        c = cycles.get(period)
        if c is None:
            continue
        line = f"  {period}: cycle {c.status}"
        if c.status == "held":
            line += " - the data gate held it: " + ", ".join(sorted(set(held_checks.get(period, []))))
        decided = [(aid, m) for aid, ms in measures.items() for m in ms if m.period == period and m.decision]
        for aid, m in decided:
            line += f"; action #{aid} re-measured: {m.verdict} -> {m.decision}"
        opened = [a for a in actions if a.opened_period == period]
        if opened:
            line += "; opened " + ", ".join(
                f"#{a.id} {a.kpi} of {a.scope} {a.scope_value} -> {a.department}" for a in opened)
        out.print(line)
    story: list[str] = []
    for a in actions:
        ms = measures.get(a.id or 0, [])
        latest = ms[-1] if ms else None
        verdict = (f"latest effect {_fmt(latest.effect)} (95% CI {_fmt(latest.effect_ci_low)} to "
                   f"{_fmt(latest.effect_ci_high)}) in {latest.period}: {latest.verdict}"
                   ) if latest else "not re-measured yet"
        story.append(f"  #{a.id} {a.kpi} {a.scope}={a.scope_value} ({a.department}): {a.status}; {verdict}")
    if story:
        out.print("[bold]Corrective actions and whether they worked[/]")
        for line in story:
            out.print(line)
    noisy = [k for k in marketing if k.status in ("at_risk", "met") and k.value is not None
             and k.target is not None and k.value < k.target]
    if noisy:
        k = noisy[-1]
        out.print(f"[bold]Noise is not a miss[/]: NPS of the {k.scope_value} stage (marketing) in {k.period} "
                  f"was {_fmt(k.value)} "
                  f"against a target of {_fmt(k.target)}, but the 95% interval "
                  f"({_fmt(k.ci_low)} to {_fmt(k.ci_high)}, "
                  f"n={k.n}) reaches the target: status {k.status}, no action opened.")
    last = plan.periods[-1]
    if followup is not None and followup.opened:
        _tell_followup(followup, last, out)
    reports = settings.resolve("reports") / last
    out.print()
    out.print("[bold]Where to look next[/]")
    out.print(f"  report:        {reports / 'report.html'}")
    out.print("                 (with what drives the score, and what promoters, passives and detractors "
              "did afterwards)")
    held = [p for p in plan.periods if p in cycles and cycles[p].status == "held"]
    quality = settings.resolve("reports") / (held[0] if held else last) / "validation.html"
    out.print(f"  data quality:  {quality}")
    out.print(f"  notices sent:  {folder.resolve() / 'notices'}/<department>/")
    out.print(f"  try:           cxloop kpis --period {last} --config {folder / 'cxloop.toml'}")
    out.print(f"                 cxloop actions list --config {folder / 'cxloop.toml'}")
    out.print(f"                 cxloop effects --config {folder / 'cxloop.toml'}")
    out.print(f"                 cxloop status --config {folder / 'cxloop.toml'}")
    if followup is not None and followup.opened:
        out.print(f"                 cxloop cases list --status open --config {folder / 'cxloop.toml'}")
    cfg = folder / "cxloop.toml"
    out.print("[bold]The web workspace[/] (dashboards, departments, acting on actions)")
    out.print(f"  first admin:   CXLOOP_PASSWORD='choose-a-password' cxloop users add admin --role admin "
              f"--password --config {cfg}")
    out.print(f"  serve it:      cxloop web --config {cfg}   then open http://127.0.0.1:8000/")


def _tell_followup(f: FollowupStory, period: str, out: Console) -> None:
    closed = {k: f.by_status.get(k, 0) for k in ("resolved", "unreachable", "declined")}
    still = f.by_status.get("new", 0) + f.by_status.get("contacted", 0)
    merged = f" ({f.merged} repeat answers merged into them)" if f.merged else ""
    out.print(f"[bold]Calling back unhappy customers[/] ({period}, when the survey began asking whether "
              f"it may call back): the daily follow-up run ({f.runs} mornings at 07:00) opened {f.opened} "
              f"cases for detractors and delivery complaints who agreed{merged} and sent each department "
              f"its new cases; {closed['resolved']} resolved, "
              f"{closed['unreachable']} unreachable, {still} still open. {f.reminders} reminders went out "
              f"before a deadline and {f.escalations} escalations after one (each once per case and "
              f"deadline). The report's \"Closing the loop with customers\" section has the follow-up "
              f"KPIs.")
