"""Which KPI shortfalls become actions, judged over the whole cycle at once (docs/decisions.md).

One test per scope is right for one scope; a company judges hundreds at once. At a one-sided
2.5% per test, 400 scope values x 4 KPIs on target give ~40 "misses" a month by chance, and a CX
engine that sends that many false actions is switched off. So a result becomes an action only
when the evidence holds up across the cycle:

1. **Only what a target names is judged** (`kpis.target_for`: a crossing cell only when a target
   names the crossing), on enough responses (`min_n`), plus the control-chart evidence of KPIs an
   admin opted in to (`[decisions] signal_kpis`).
2. **Evidence per result, as one-sided p-values** that the KPI is worse than its target by more
   than the practical margin (`margin`):
   - `single`: this cycle's value and interval (results of `actionable_n` responses or more);
   - `pooled`: this cycle and the previous one added up (their histograms merge exactly), so a
     shortfall that persists gathers evidence while one bad month of a small scope does not act;
     results of fewer than `actionable_n` responses are judged on this evidence only;
   - `signal`: the control chart's tail probability of this point in the worse direction.
   They are combined by Simes' test (valid for the positively dependent tests they are).
3. **False discoveries are controlled over the cycle**: Benjamini-Hochberg q-values over every
   judged result; a result acts when its q-value is at most `fdr`. With every scope on target
   this keeps the chance of any false action in a cycle near `fdr`.
4. **One action per root cause** (`explain_nested`): when a more specific result that acts
   explains a broader one (the broader scope is back at its target without it), the broader
   one does not act; it is attached to the specific one's action as context.

Everything a decision used is kept in the result's `stats["decision"]`, shown by
`cxloop kpis --format json` and quoted in the action's evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from tasks import stats

if TYPE_CHECKING:
    from config import Settings
    from tasks.kpis import KpiRow

Key = tuple[str, str, str]
NEVER_JUDGED = frozenset({"responses"})  # a count of answers is context, not a shortfall
CONTAINED = 0.9  # a result lies inside a broader one when 90% of its responses are in it


@dataclass(frozen=True)
class Rules:
    """The decision settings of a cycle (`[decisions]` plus the interval level)."""

    fdr: float = 0.1
    margins: tuple[tuple[str, float], ...] = ()
    margin: float = 0.0
    actionable_n: int = 100
    persistence: bool = True
    signal_kpis: frozenset[str] = frozenset()
    confidence: float = 0.95
    resamples: int = 999

    @classmethod
    def of(cls, settings: Settings | None) -> Rules:
        if settings is None:
            return cls()
        d = settings.decisions
        return cls(fdr=d.fdr, margins=tuple(sorted(d.margin_per_kpi.items())), margin=d.margin,
                   actionable_n=d.actionable_n, persistence=d.persistence,
                   signal_kpis=frozenset(d.signal_kpis), confidence=settings.kpis.confidence,
                   resamples=settings.kpis.bootstrap_resamples)

    def margin_for(self, kpi: str) -> float:
        return dict(self.margins).get(kpi, self.margin)


def shortfall_p(value: float | None, ci_low: float | None, ci_high: float | None, target: float,
                lower_is_better: bool, margin: float = 0.0, confidence: float = 0.95) -> float | None:
    """One-sided p-value of "worse than target by more than `margin`", from the KPI's own interval.

    The standard error is read off the half of the interval that faces the target (intervals of
    proportions and nets are not symmetric), so the test agrees with the interval shown: a result
    whose whole interval lies beyond `target - margin` has p below (1 - confidence) / 2.
    """
    if value is None or ci_low is None or ci_high is None:
        return None
    z_c = stats.z_value(confidence)
    bar = target + margin if lower_is_better else target - margin
    worse = value - bar if lower_is_better else bar - value  # > 0: on the wrong side of the bar
    half = (value - ci_low) if lower_is_better else (ci_high - value)
    if worse > 0 and half <= 0:
        return 0.0
    if half <= 0:
        half = (ci_high - ci_low) / 2
    if half <= 0:
        return 0.0 if worse > 0 else 1.0
    return float(norm.sf(worse / (half / z_c)))


def simes(ps: Sequence[float]) -> float:
    """Simes' combination of p-values of one hypothesis (valid under positive dependence)."""
    p = np.sort(np.asarray(ps, dtype=float))
    if p.size == 0:
        return 1.0
    return float(min(1.0, (p * p.size / np.arange(1, p.size + 1)).min()))


def bh_qvalues(ps: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input order."""
    p = np.asarray(ps, dtype=float)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(q_sorted, 1.0)
    return q


def _lower(kpi: str) -> bool:
    from tasks.kpis import LOWER_IS_BETTER

    return kpi in LOWER_IS_BETTER


def _gap(row: KpiRow) -> float | None:
    if row.value is None or row.target is None:
        return None
    return row.value - row.target if _lower(row.kpi) else row.target - row.value


def _pooled(row: KpiRow, previous: KpiRow | None, rules: Rules) -> dict[str, Any] | None:
    """This cycle and the previous one added up (exact histogram merge), or None."""
    from tasks.kpis import kpi_from_stats, merge_stats

    if previous is None or not previous.stats.get("counts") or not row.stats.get("counts"):
        return None
    merged = merge_stats(previous.stats, row.stats)
    m = kpi_from_stats(row.kpi, merged, confidence=rules.confidence, resamples=rules.resamples,
                       key=(row.scope, row.scope_value, "pooled"))
    if m.value is None:
        return None
    return {"periods": [previous.period, row.period], "value": m.value, "ci_low": m.ci_low,
            "ci_high": m.ci_high, "n": m.n}


def evidence(row: KpiRow, previous: KpiRow | None, rules: Rules) -> dict[str, Any] | None:
    """The tests of one result and their Simes combination, or None when it is not judged."""
    if row.kpi in NEVER_JUDGED or row.value is None or row.status == "insufficient":
        return None
    has_target = row.target is not None
    if not has_target and row.kpi not in rules.signal_kpis:
        return None
    lower = _lower(row.kpi)
    margin = rules.margin_for(row.kpi)
    big = row.n >= rules.actionable_n
    tests: dict[str, float] = {}
    pooled = _pooled(row, previous, rules) if has_target and rules.persistence else None
    if has_target and big:
        p = shortfall_p(row.value, row.ci_low, row.ci_high, float(row.target or 0), lower, margin,
                        rules.confidence)
        if p is not None:
            tests["single"] = p
    if pooled is not None:
        p = shortfall_p(pooled["value"], pooled["ci_low"], pooled["ci_high"], float(row.target or 0), lower,
                        margin, rules.confidence)
        if p is not None:
            tests["pooled"] = p
    chart = row.stats.get("chart") or {}
    if big and "p_low" in chart:
        tests["signal"] = float(chart["p_high"] if lower else chart["p_low"])
    out: dict[str, Any] = {"judged": bool(tests), "tests": tests, "margin": margin, "pooled": pooled,
                           "p": simes(list(tests.values())) if tests else None, "q": None, "act": False}
    if not tests:
        out["reason"] = (f"directional only: n={row.n} is below {rules.actionable_n} and there is no "
                         "previous cycle to pool")
    return out


def decide(rows: Sequence[KpiRow], previous: dict[Key, KpiRow], rules: Rules) -> None:
    """Judge every result of the cycle at once: evidence, q-values, `act`, and the status.

    A judged result whose value is worse than its target is `missed` when it acts and `at_risk`
    otherwise (a nominal miss the cycle's evidence does not carry); `met` stays `met` even when a
    control-chart drop makes it act.
    """
    judged: list[tuple[KpiRow, dict[str, Any]]] = []
    for row in rows:
        row.stats.pop("decision", None)
        ev = evidence(row, previous.get(row.key), rules)
        if ev is None:
            if row.status == "missed":  # no judgement without evidence (e.g. a count KPI)
                row.status = "at_risk"
            continue
        row.stats["decision"] = ev
        if ev["judged"]:
            judged.append((row, ev))
    qs = bh_qvalues([ev["p"] for _, ev in judged])
    for (row, ev), q in zip(judged, qs.tolist(), strict=True):
        ev["q"] = q
        ev["act"] = q <= rules.fdr
        ev["m"] = len(judged)
        gap = _gap(row)
        if gap is not None and gap > 0 and row.status in ("missed", "at_risk"):
            row.status = "missed" if ev["act"] else "at_risk"
        ev["reason"] = _reason(row, ev, rules)
    for row in rows:
        ev = row.stats.get("decision")
        if ev is not None and not ev["judged"] and row.status == "missed":
            row.status = "at_risk"


def _reason(row: KpiRow, ev: dict[str, Any], rules: Rules) -> str:
    tests = ", ".join(f"{k} p={v:.2g}" for k, v in ev["tests"].items())
    verdict = "acts" if ev["act"] else "does not act"
    return (f"{verdict}: q={ev['q']:.2g} (Benjamini-Hochberg over {ev['m']} judged results, "
            f"fdr {rules.fdr:g}); tests {tests}")


def acting(rows: Iterable[KpiRow]) -> list[KpiRow]:
    return [r for r in rows if (r.stats.get("decision") or {}).get("act")]


def needs_nesting(rows: Sequence[KpiRow]) -> bool:
    """Whether two acting results share a KPI (only then can one explain the other)."""
    kpis = [r.kpi for r in acting(rows)]
    return len(kpis) != len(set(kpis))


# --- one action per root cause ---------------------------------------------------------------


@dataclass
class _Pair:
    inside: float = 0.0  # responses of the child that are in the parent
    counts: dict[float, float] | None = None  # the parent's histogram without the child


def explain_nested(rows: Sequence[KpiRow], parts: Iterable[pd.DataFrame], settings: Settings | None,
                   rules: Rules) -> None:
    """Attach a broader acting result to a more specific one that explains it.

    For acting results A and B of one KPI with B smaller and (nearly) inside A, A's responses
    without B's are measured; if A is no longer worse than its target beyond its interval, B
    explains A: A does not act and is attached to B's action (B's root, if B is explained in
    turn). A broader scope still short without any one child keeps its own action. `parts` are the
    cycle's responses (KPI columns), in one or more frames.
    """
    from tasks.kpis import TOPIC_ONLY, judge, kpi_from_hist, scope_mask, score_bins

    act = [r for r in acting(rows) if r.kpi not in TOPIC_ONLY]
    by_kpi: dict[str, list[KpiRow]] = {}
    for r in act:
        by_kpi.setdefault(r.kpi, []).append(r)
    pairs: dict[tuple[Key, Key], _Pair] = {}
    for kpi_rows in by_kpi.values():
        for a in kpi_rows:
            for b in kpi_rows:
                if a is not b and b.n < a.n:
                    pairs[(a.key, b.key)] = _Pair(counts={})
    if not pairs:
        return
    wanted = {k for pair in pairs for k in pair}
    for df in parts:
        masks = {k: scope_mask(df, k[1], k[2]) for k in wanted}
        bins_of = {kpi: score_bins(kpi, df, settings) for kpi in by_kpi}
        for (ka, kb), pair in pairs.items():
            ma, mb = masks[ka], masks[kb]
            if ma is None or mb is None:
                continue
            pair.inside += float((ma & mb).sum())
            codes, labels = bins_of[ka[0]]
            rest = ma & ~mb & (codes >= 0)
            counts = np.bincount(codes[rest], minlength=len(labels))
            assert pair.counts is not None
            for label, c in zip(labels.tolist(), counts.tolist(), strict=True):
                if c:
                    pair.counts[float(label)] = pair.counts.get(float(label), 0.0) + c
    by_key = {r.key: r for r in act}
    root: dict[Key, Key] = {}
    for a in sorted(act, key=lambda r: (r.n, r.key)):  # children are settled before their parents
        best: tuple[float, Key] | None = None
        for (ka, kb), pair in pairs.items():
            if ka != a.key or pair.inside < CONTAINED * by_key[kb].n or pair.counts is None:
                continue
            bins = np.array(sorted(pair.counts), dtype=np.float64)
            rest_counts = np.array([pair.counts[b] for b in bins.tolist()], dtype=np.float64)
            m = kpi_from_hist(a.kpi, bins, rest_counts, confidence=rules.confidence,
                              resamples=rules.resamples, key=(*a.key, "without", *kb))
            status = judge(a.kpi, m.value, m.ci_low, m.ci_high, m.n, a.target, a.min_n or 1)
            if status == "missed":
                continue
            child = by_key[kb]
            weight = child.n * max(_gap(child) or 0.0, 0.0)
            if best is None or weight > best[0]:
                best = (weight, kb)
        if best is None:
            continue
        top = root.get(best[1], best[1])
        root[a.key] = top
        ev = a.stats["decision"]
        ev["act"] = False
        ev["explained_by"] = list(top)
        ev["reason"] = (f"explained by {top[1]}={top[2]}: without it, {a.scope}={a.scope_value} is no "
                        f"longer short of its target; attached to that action")
        by_key[top].stats["decision"].setdefault("explains", []).append(list(a.key))


def summary(rows: Sequence[KpiRow]) -> dict[str, int]:
    """Counts for the stage record: judged results, acting ones, explained ones."""
    decided = [r.stats["decision"] for r in rows if r.stats.get("decision")]
    return {"judged": sum(1 for d in decided if d["judged"]),
            "acting": sum(1 for d in decided if d["act"]),
            "explained": sum(1 for d in decided if d.get("explained_by"))}
