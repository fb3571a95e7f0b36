"""CLI of the KPI area: `cxloop kpis` shows a period's KPIs with n, interval, target and status."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cxloop.commands.common import ConfigOpt, FormatOpt, PeriodOpt, load
from cxloop.output import Format, cli_console, emit
from cxloop.tasks.cycles import gate_held
from cxloop.vocabulary import KPIS, kpi_label

JSON_KEYS = ["kpi", "scope", "scope_value", "n", "value", "ci_low", "ci_high", "target", "status",
             "signal", "method", "min_n", "provisional", "period"]


def _fmt(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def kpis(
    period: PeriodOpt,
    config: ConfigOpt = None,
    fmt: FormatOpt = Format.table,
    scope: Annotated[str | None, typer.Option(
        "--scope", "-s", help="Only this scope: overall, department, journey_stage, touchpoint, channel, "
        "segment, region, topic, or a crossing such as 'department x region'.")] = None,
    kpi: Annotated[list[str] | None,
                   typer.Option("--kpi", "-k", help="Only these KPIs (repeatable).")] = None,
    recompute: Annotated[bool, typer.Option(
        "--recompute", help="Compute the period's KPIs now and store them (as the cycle's KPI stage "
        "does); without it, stored results are shown.")] = False,
) -> None:
    """KPIs of a period per scope: n, value, 95% interval, target and status (met / at_risk / missed /
    insufficient / no_target), control-chart signal and the cycle's decision. JSON keys: kpi, scope,
    scope_value, n, value, ci_low, ci_high, target, status, signal (and method, min_n, provisional,
    period), and decision: what the decision used (tests with their p-values, pooled evidence,
    margin, Benjamini-Hochberg q-value, act, explained_by, reason); CSV: q and act."""
    from cxloop.tasks import kpis as engine_kpis  # on use: pandas and scipy, not at CLI start-up

    settings, engine = load(config)
    known = engine_kpis.scope_names(settings)
    if scope and scope not in known:
        raise typer.BadParameter(f"unknown scope {scope!r}; known: {', '.join(known)}", param_hint="--scope")
    bad = sorted(set(kpi or []) - set(KPIS))
    if bad:
        raise typer.BadParameter(f"unknown KPI {', '.join(bad)}; known: {', '.join(KPIS)}",
                                 param_hint="--kpi")
    note = ""
    rows = [] if recompute else engine_kpis.stored_rows(engine, period, scope)
    if recompute or not rows:
        provisional = gate_held(engine, period)
        if recompute:
            rows = engine_kpis.compute_kpis(settings, engine, period, provisional=provisional)
            note = f"computed and stored {len(rows)} results for {period}"
        else:
            rows = engine_kpis.compute_rows(settings, engine, period, provisional=True)
            note = (f"no stored KPIs for {period}: computed now, not stored, shown as provisional "
                    "(run the cycle or `cxloop kpis --recompute` to store them)")
        if scope:
            rows = [r for r in rows if r.scope == scope]
    if kpi:
        rows = [r for r in rows if r.kpi in kpi]
    lang = settings.project.language
    ci = f"{settings.kpis.confidence * 100:g}% CI"
    if fmt is Format.table:
        out: list[dict[str, Any]] = [{
            "kpi": kpi_label(r.kpi, lang),
            "scope": r.scope if r.scope == engine_kpis.OVERALL else f"{r.scope}: {r.scope_value}",
            "n": r.n, "value": _fmt(r.value),
            ci: "" if r.ci_low is None else f"{_fmt(r.ci_low)} – {_fmt(r.ci_high)}",
            "target": "" if r.target is None else _fmt(r.target), "status": r.status,
            "signal": r.signal or "", "decision": _decision_word(r.stats.get("decision")),
        } for r in rows]
        title = f"KPIs {period}" + (" (provisional)" if any(r.provisional for r in rows) else "")
        emit(out, fmt, columns=["kpi", "scope", "n", "value", ci, "target", "status", "signal", "decision"],
             title=title)
    elif fmt is Format.json:
        emit([{**{k: r.as_dict()[k] for k in JSON_KEYS}, "decision": r.stats.get("decision")}
              for r in rows], fmt)
    else:
        emit([{**{k: r.as_dict()[k] for k in JSON_KEYS}, "q": (r.stats.get("decision") or {}).get("q"),
               "act": (r.stats.get("decision") or {}).get("act")} for r in rows], fmt)
    if note:
        cli_console(stderr=True).print(f"[dim]{note}[/]", highlight=False)


def _decision_word(decision: dict[str, Any] | None) -> str:
    """"acts (q 0.003)", "explained by touchpoint courier", "q 0.4" or "" for the table."""
    if not decision:
        return ""
    if decision.get("explained_by"):
        _, scope, value = decision["explained_by"]
        return f"explained by {scope} {value}"
    if decision.get("q") is None:
        return "directional" if decision.get("tests") == {} else ""
    return ("acts " if decision.get("act") else "") + f"q {decision['q']:.2g}"


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("kpis")(kpis)
