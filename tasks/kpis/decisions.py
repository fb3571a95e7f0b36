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
   - `pooled`: this cycle and the previous one added up (their histograms merge exactly), when
     this cycle's value is short as well, so a shortfall that persists gathers evidence while
     one bad month of a small scope does not act (nor a recovered one on its bad past);
     results of fewer than `actionable_n` responses are judged on this evidence only;
   - `signal`: the control chart's tail probability of this point in the worse direction.
   They are combined by Simes' test (valid for the positively dependent tests they are).
3. **False discoveries are controlled over the cycle**: Benjamini-Hochberg q-values over every
   judged result; a result acts when its q-value is at most `fdr`. With every scope on target
   this keeps the chance of any false action in a cycle near `fdr`.
4. **One action per root cause** (`explain_nested`, `refine`): when an acting result explains
   another (without its responses, the other would not act on its own evidence), the other does
   not act; it is attached to the explaining result's action as context, and the explained
   results leave the false-discovery family, so one cause counts as one discovery.

Everything a decision used is kept in the result's `stats["decision"]`, shown by
`cxloop kpis --format json` and quoted in the action's evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.special import ndtr

from cxloop.tasks import stats
from cxloop.tasks.kpis.measures import HistItem, kpi_from_hist, measure_many, merge_stats
from cxloop.tasks.kpis.responses import family_bins, scope_mask
from cxloop.tasks.kpis.rows import KpiRow
from cxloop.tasks.kpis.specs import SPECS
from cxloop.vocabulary import CASE_KPIS, LOWER_IS_BETTER, TOPIC_ONLY

if TYPE_CHECKING:
    from cxloop.config import Settings

Key = tuple[str, str, str]
NEVER_JUDGED = frozenset({"responses"})  # a count of answers is context, not a shortfall


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
    return float(ndtr(-worse / (half / z_c)))


def simes(ps: Sequence[float]) -> float:
    """Simes' combination of p-values of one hypothesis (valid under positive dependence)."""
    p = np.sort(np.asarray(ps, dtype=float))
    if p.size == 0:
        return 1.0
    return float(min(1.0, (p * p.size / np.arange(1, p.size + 1)).min()))


def bh_qvalues(ps: Sequence[float] | np.ndarray) -> np.ndarray:
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

    return kpi in LOWER_IS_BETTER


def _gap(row: KpiRow) -> float | None:
    if row.value is None or row.target is None:
        return None
    return row.value - row.target if _lower(row.kpi) else row.target - row.value


def pooled_measures(rows: Sequence[KpiRow], previous: dict[Key, KpiRow],
                    rules: Rules) -> dict[Key, dict[str, Any]]:
    """This cycle and the previous one added up (exact histogram merge) for every result with a
    target and a previous cycle, measured in one vectorised pass."""

    keys: list[Key] = []
    items: list[HistItem] = []
    periods: list[list[str]] = []
    for row in rows:
        before = previous.get(row.key)
        if (row.target is None or before is None or row.kpi in NEVER_JUDGED or not before.stats.get("counts")
                or not row.stats.get("counts")):
            continue
        merged = merge_stats(before.stats, row.stats)
        keys.append(row.key)
        items.append(HistItem(row.kpi, np.asarray(merged["bins"], dtype=float),
                              np.asarray(merged["counts"], dtype=float),
                              (row.scope, row.scope_value, "pooled")))
        periods.append([before.period, row.period])
    measures = measure_many(items, confidence=rules.confidence, resamples=rules.resamples)
    return {k: {"periods": p, "value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high, "n": m.n}
            for k, p, m in zip(keys, periods, measures, strict=True) if m.value is not None}


def evidence(row: KpiRow, pooled: dict[str, Any] | None, rules: Rules) -> dict[str, Any] | None:
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
    pooled = pooled if has_target and rules.persistence else None
    if has_target and big:
        p = shortfall_p(row.value, row.ci_low, row.ci_high, float(row.target or 0), lower, margin,
                        rules.confidence)
        if p is not None:
            tests["single"] = p
    gap = _gap(row)
    if pooled is not None and gap is not None and gap > margin:  # persistence: short now as well
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
        why = "no previous cycle to pool" if pooled is None else "it is not short this cycle"
        out["reason"] = f"directional only: n={row.n} is below {rules.actionable_n} and {why}"
    return out


def decide(rows: Sequence[KpiRow], previous: dict[Key, KpiRow], rules: Rules) -> None:
    """Judge every result of the cycle at once: evidence, q-values, `act`, and the status.

    A judged result whose value is worse than its target is `missed` when it acts and `at_risk`
    otherwise (a nominal miss the cycle's evidence does not carry); `met` stays `met` even when a
    control-chart drop makes it act.
    """
    judged: list[tuple[KpiRow, dict[str, Any]]] = []
    pooled = pooled_measures(rows, previous, rules) if rules.persistence else {}
    for row in rows:
        row.stats.pop("decision", None)
        ev = evidence(row, pooled.get(row.key), rules)
        if ev is None:
            if row.status == "missed":  # no judgement without evidence (e.g. a count KPI)
                row.status = "at_risk"
            continue
        row.stats["decision"] = ev
        if ev["judged"]:
            judged.append((row, ev))
    _control_fdr(judged, rules, only_acting=False)
    for row in rows:
        ev = row.stats.get("decision")
        if ev is not None and not ev["judged"] and row.status == "missed":
            row.status = "at_risk"


def _control_fdr(judged: Sequence[tuple[KpiRow, dict[str, Any]]], rules: Rules, only_acting: bool) -> None:
    """Benjamini-Hochberg q-values over the judged results; act at q <= fdr (`only_acting`: a
    result that did not act before cannot start acting)."""
    qs = bh_qvalues([ev["p"] for _, ev in judged])
    for (row, ev), q in zip(judged, qs.tolist(), strict=True):
        ev["q"] = q
        ev["act"] = q <= rules.fdr and (ev["act"] or not only_acting)
        ev["m"] = len(judged)
        gap = _gap(row)
        if gap is not None and gap > 0 and row.status in ("missed", "at_risk"):
            row.status = "missed" if ev["act"] else "at_risk"
        ev["reason"] = _reason(row, ev, rules)


def refine(rows: Sequence[KpiRow], rules: Rules) -> None:
    """The false-discovery control again, over the results no other result explains.

    One cause shows up in many results (a touchpoint's collapse in its stage, its department,
    every channel and region its customers use). Counted as many discoveries, they would loosen
    the Benjamini-Hochberg bar for everything else in the cycle; counted once - the explained
    results leave the family - the bar stays where one discovery puts it."""
    judged = [(r, ev) for r in rows if (ev := r.stats.get("decision")) and ev["judged"]
              and not ev.get("explained_by")]
    if len(judged) < sum(1 for r in rows if (r.stats.get("decision") or {}).get("judged")):
        _control_fdr(judged, rules, only_acting=True)


def _reason(row: KpiRow, ev: dict[str, Any], rules: Rules) -> str:
    tests = ", ".join(f"{k} p={v:.2g}" for k, v in ev["tests"].items())
    verdict = "acts" if ev["act"] else "does not act"
    return (f"{verdict}: q={ev['q']:.2g} (Benjamini-Hochberg over {ev['m']} judged results, "
            f"fdr {rules.fdr:g}); tests {tests}")


def acting(rows: Iterable[KpiRow]) -> list[KpiRow]:
    return [r for r in rows if (r.stats.get("decision") or {}).get("act")]


def needs_nesting(rows: Sequence[KpiRow]) -> bool:
    """Whether two acting results share a KPI (only then can one explain the other). Case KPIs are
    not nested: they are counted from cases, not from the responses nesting reads."""
    kpis = [r.kpi for r in acting(rows) if r.kpi not in CASE_KPIS]
    return len(kpis) != len(set(kpis))


# --- one action per root cause ---------------------------------------------------------------


@dataclass
class _Pair:
    shared: float = 0.0  # responses in both
    counts: dict[float, float] | None = None  # the parent's histogram without the child


def explain_nested(rows: Sequence[KpiRow], parts: Iterable[pd.DataFrame], settings: Settings | None,
                   rules: Rules) -> None:
    """Attach a broader acting result to a more specific one that explains it.

    For acting results A and B of one KPI that share responses (B may lie inside A, as a touchpoint
    in its journey stage, or across it, as a touchpoint's customers in every channel), A's
    responses without B's are measured. When that rest would not act on its own evidence (its
    shortfall p-value is above the cycle's Benjamini-Hochberg bar; it still has A's min_n
    responses, else A lies inside B and B is the broader one), B explains A: A does not act and is
    attached to
    the action of B - of the most specific such B (fewest responses), followed to its own root if
    B is explained in turn, never in a circle. A scope still short without any one of them keeps
    its own action. `parts` are the cycle's responses (KPI columns), in one or more frames.
    """

    act = [r for r in acting(rows) if r.kpi not in TOPIC_ONLY and r.kpi not in CASE_KPIS]
    by_kpi: dict[str, list[KpiRow]] = {}
    for r in act:
        by_kpi.setdefault(r.kpi, []).append(r)
    pairs: dict[tuple[Key, Key], _Pair] = {}
    for kpi_rows in by_kpi.values():
        for a in kpi_rows:
            for b in kpi_rows:
                if a is not b:
                    pairs[(a.key, b.key)] = _Pair(counts={})
    if not pairs:
        return
    wanted = {k for pair in pairs for k in pair}
    for df in parts:
        coded: dict[str, Any] = {}
        masks = {k: scope_mask(df, k[1], k[2], coded) for k in wanted}
        families = family_bins(df, settings)  # every family at once, for every KPI asked
        bins_of = {kpi: families[SPECS[kpi].family] for kpi in by_kpi}
        for (ka, kb), pair in pairs.items():
            ma, mb = masks[ka], masks[kb]
            if ma is None or mb is None:
                continue
            pair.shared += float((ma & mb).sum())
            codes, labels = bins_of[ka[0]]
            rest = ma & ~mb & (codes >= 0)
            counts = np.bincount(codes[rest], minlength=len(labels))
            assert pair.counts is not None
            for label, c in zip(labels.tolist(), counts.tolist(), strict=True):
                if c:
                    pair.counts[float(label)] = pair.counts.get(float(label), 0.0) + c
    by_key = {r.key: r for r in act}
    root: dict[Key, Key] = {}
    judged_n = sum(1 for r in rows if (r.stats.get("decision") or {}).get("judged"))
    bar = len(acting(rows)) * rules.fdr / max(judged_n, 1)  # the cycle's Benjamini-Hochberg bar
    for a in sorted(act, key=lambda r: (r.n, r.key)):  # children are settled before their parents
        best: tuple[float, Key] | None = None
        for (ka, kb), pair in pairs.items():
            if ka != a.key or pair.shared <= 0 or pair.counts is None:
                continue
            bins = np.array(sorted(pair.counts), dtype=np.float64)
            rest_counts = np.array([pair.counts[b] for b in bins.tolist()], dtype=np.float64)
            m = kpi_from_hist(a.kpi, bins, rest_counts, confidence=rules.confidence,
                              resamples=rules.resamples, key=(*a.key, "without", *kb))
            if m.value is None or m.n < (a.min_n or 1):  # nearly all of a lies inside b: b is broader
                continue
            rest_p = shortfall_p(m.value, m.ci_low, m.ci_high, float(a.target or 0), _lower(a.kpi),
                                 rules.margin_for(a.kpi), rules.confidence)
            if rest_p is not None and rest_p <= bar:  # short enough without b to act on its own
                continue
            if _root(root, kb) == a.key:  # b is explained through a already: no circle
                continue
            specific = -float(by_key[kb].n)  # the most specific explanation: fewest responses
            if best is None or specific > best[0]:
                best = (specific, kb)
        if best is None:
            continue
        top = _root(root, best[1])
        root[a.key] = top
        ev = a.stats["decision"]
        ev["act"] = False
        ev["explained_by"] = list(top)
        ev["reason"] = (f"explained by {top[1]}={top[2]}: without its responses, {a.scope}={a.scope_value} "
                        f"is not short of its target beyond the cycle's bar; attached to that action")
        by_key[top].stats["decision"].setdefault("explains", []).append(list(a.key))


def _root(root: dict[Key, Key], key: Key) -> Key:
    while key in root:
        key = root[key]
    return key


def summary(rows: Sequence[KpiRow]) -> dict[str, int]:
    """Counts for the stage record: judged results, acting ones, explained ones."""
    decided = [r.stats["decision"] for r in rows if r.stats.get("decision")]
    return {"judged": sum(1 for d in decided if d["judged"]),
            "acting": sum(1 for d in decided if d["act"]),
            "explained": sum(1 for d in decided if d.get("explained_by"))}
