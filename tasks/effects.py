"""Did a corrective action work? Pure statistics on per-response scores (no database).

Every KPI cxloop re-measures is a mean of per-response scores (NPS: +100/0/-100, CSAT: 100/0,
CES: 1-7, ...), so one action's evidence is a handful of score arrays ("cells"):

* the treated scope after the action (post) and in the cycle that opened it (pre, the trigger),
* the treated scope's own earlier cycles (history), used against regression to the mean,
* every comparison scope (same dimension, no action) in the same cycles.

Three estimates come out of them:

``change``  the naive before/after of the treated scope, with the two-period interval of
            docs/methods.md (adjusted Wald for nets such as NPS, Newcombe for proportions,
            Welch for means). Shown to people as "value before -> after"; never the verdict.
``effect``  what we credit to the action: a difference-in-differences against the mean of the
            comparison scopes' own changes (each comparison scope weighs the same, so a shift
            in how many responses each scope gets cannot fake an effect), computed from a
            baseline corrected for regression to the mean. Interval: bootstrap resampling the
            responses within every cell, the whole estimator (correction included) re-run on
            each resample. Without comparison scopes it falls back to pre/post (``method``
            "pre_post") and the note says so.
``verdict`` improved / no_change / worsened from the effect interval in the KPI's better
            direction, insufficient when a side has fewer than min_n responses.

Regression to the mean (docs/methods.md). Actions are opened *because* a scope looked bad,
so the trigger value x carries selected noise and a plain comparison with x credits the action
with the bounce back. We correct the baseline, not the follow-up: with m the scope's own
pre-trigger level, the trigger's dip relative to comparable scopes is
``y = (x - m) - (x_C - m_C)`` and the baseline keeps only the part of it that is real:
``baseline = x - (1 - r) y``. ``r`` is the posterior share of the dip that is real under a
two-part prior for real movements: usual cycle-to-cycle movement N(0, tau^2), tau^2 estimated
from how much every scope of the dimension moved between earlier cycles, plus a rare wide
"genuine shift" component (heavy tail). A dip within about 2 se of m gets r near 0 (baseline
near m), a dip of 4 se or more gets r near 1 (baseline near x), so a real collapse that recovers
is still credited. r deliberately ignores how precise m is: x is the value that was selected,
only m is free of that selection.

A trigger value *worse* than usual is always pulled back toward the usual level. A trigger
*better* than usual is pulled down only when the scope's trend relative to its comparison scopes
was checked (3 or more earlier cycles) and found parallel: otherwise a scope trending up would
read as a "dip" and have its trend credited two or three times over.

What is not credited (verdict ``inconclusive``, docs/methods.md "Honest verdicts"):

* a treated scope whose trend before the action differs from its comparison scopes' (the
  difference of the two regressed on the cycle, at least 3 earlier cycles): difference-in-
  differences assumes parallel trends;
* fewer than 3 comparison scopes: one or two scopes' own wobble and trend cannot be told from an
  effect (their spread is not estimable from so few), and none at all leaves a before/after change
  that company-wide movements explain as well; with 3 or more, the comparison mean's own wobble
  (2 tau^2 / k, tau^2 from the dimension's history) widens the interval;
* an improvement of an action opened on a first-cycle miss (no earlier cycle of the scope): a
  return to the usual level cannot be told from the action's effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep

from cxloop.tasks.stats import wilson

Kind = Literal["net", "proportion", "mean"]
Verdict = Literal["improved", "no_change", "worsened", "insufficient", "inconclusive"]
MIN_COMPARISONS = 3  # fewer comparison scopes cannot tell their own wobble from company-wide change
PRETREND_MIN_CYCLES = 3  # earlier cycles needed to test the treated scope's trend against its comparisons
PRETREND_ALPHA = 0.01  # a real effect is rarely made inconclusive by chance (1 in 100)

# Prior share of "genuine shift" among dips, and how wide genuine shifts are relative to the
# noise of the dip. Chosen so r is about 0.05 at a 2-se dip, 0.3 at 3 se and 0.9 at 4 se.
GENUINE_SHIFT_PRIOR = 0.03
GENUINE_SHIFT_WIDTH = 5.0

Cell = np.ndarray


@dataclass
class ScopeCells:
    """Per-response scores of one scope: earlier cycles (aligned across scopes, None = no data),
    the baseline cycle and the cycle being measured."""

    pre: Cell
    post: Cell
    history: Sequence[Cell | None] = ()
    name: str = ""


@dataclass
class EffectEstimate:
    value: float | None
    n: int
    n_pre: int
    raw_baseline: float | None
    baseline: float | None = None
    change: float | None = None
    change_ci_low: float | None = None
    change_ci_high: float | None = None
    effect: float | None = None
    effect_ci_low: float | None = None
    effect_ci_high: float | None = None
    method: str = "did"
    comparison_scopes: int = 0
    verdict: Verdict = "insufficient"
    shrink: float | None = None  # r: share of the trigger's dip judged real
    dip_se: float | None = None  # the trigger's dip in standard errors (negative = worse than usual)
    tau2: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def note(self) -> str:
        return " ".join(self.notes)


# --- small building blocks -------------------------------------------------------------------

def as_cell(scores: Sequence[float] | np.ndarray) -> Cell:
    """A float array without NaN (a response that did not answer the question is not a score)."""
    arr = np.asarray(scores, dtype=float).ravel()
    return arr[~np.isnan(arr)]


def score_kind(*cells: Cell) -> Kind:
    """net (+100/0/-100, e.g. NPS), proportion (100/0) or mean, from the values present."""
    values = np.unique(np.concatenate([c for c in cells if c.size] or [np.zeros(0)]))
    if values.size and np.isin(values, (-100.0, 0.0, 100.0)).all():
        return "net" if (values < 0).any() else "proportion"
    return "mean"


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


def _var_of_mean(cell: Cell) -> float:
    if cell.size < 2:
        return float("nan")
    return float(cell.var(ddof=1) / cell.size)


def _adjusted_net(cell: Cell) -> tuple[float, float, float]:
    """Adjusted-Wald net (Rocks 2016): add 0.75 detractors, 1.5 passives, 0.75 promoters."""
    n_adj = cell.size + 3
    p = ((cell > 0).sum() + 0.75) / n_adj
    d = ((cell < 0).sum() + 0.75) / n_adj
    return float(p - d), float(p + d - (p - d) ** 2), float(n_adj)


def value_interval(cell: Cell, confidence: float = 0.95, kind: Kind | None = None) -> tuple[float, float]:
    """Interval of one cell's KPI (docs/methods.md, "Intervals")."""
    kind = kind or score_kind(cell)
    if cell.size == 0:
        return float("nan"), float("nan")
    z = _z(confidence)
    if kind == "net":
        net, var, n_adj = _adjusted_net(cell)
        half = z * np.sqrt(var / n_adj)
        return 100 * (net - half), 100 * (net + half)
    if kind == "proportion":
        lo, hi = wilson(int((cell > 0).sum()), cell.size, confidence)
        return (float("nan") if lo is None else lo), (float("nan") if hi is None else hi)
    if cell.size < 2:
        return float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, cell.size - 1)) * np.sqrt(_var_of_mean(cell))
    return float(cell.mean() - half), float(cell.mean() + half)


def prepost_change(pre: Cell, post: Cell, confidence: float = 0.95,
                   kind: Kind | None = None) -> tuple[float, float, float]:
    """Naive change post - pre with the two-period interval of docs/methods.md (no correction at all)."""
    kind = kind or score_kind(pre, post)
    change = float(post.mean() - pre.mean())
    if kind == "net":
        n1, v1, a1 = _adjusted_net(post)
        n0, v0, a0 = _adjusted_net(pre)
        centre, half = n1 - n0, _z(confidence) * np.sqrt(v1 / a1 + v0 / a0)
        return change, 100 * (centre - half), 100 * (centre + half)
    if kind == "proportion":
        lo, hi = confint_proportions_2indep(int((post > 0).sum()), post.size, int((pre > 0).sum()), pre.size,
                                            method="newcomb", compare="diff", alpha=1 - confidence)
        return change, 100 * float(lo), 100 * float(hi)
    v1, v0 = _var_of_mean(post), _var_of_mean(pre)
    se = np.sqrt(v1 + v0)
    dof = (v1 + v0) ** 2 / (v1**2 / (post.size - 1) + v0**2 / (pre.size - 1)) if se > 0 else 1e9
    half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * se
    return change, change - half, change + half


def boot_means(cell: Cell, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `resamples` resamples of the responses (with replacement), vectorised.

    Scores take few distinct values (NPS three), so drawing the counts of each value from a
    multinomial is the same resampling as drawing responses, at a fraction of the cost.
    """
    if cell.size == 0:
        return np.full(resamples, np.nan)
    values, counts = np.unique(cell, return_counts=True)
    if values.size <= 64:
        draws = rng.multinomial(cell.size, counts / cell.size, size=resamples)
        return np.asarray(draws @ values / cell.size, dtype=float)
    idx = rng.integers(0, cell.size, size=(resamples, cell.size))
    return np.asarray(cell[idx].mean(axis=1), dtype=float)


# --- regression to the mean ------------------------------------------------------------------

def estimate_tau2(series: Sequence[Sequence[Cell | None]], min_n: int = 30) -> float | None:
    """Variance of real cycle-to-cycle movements of one scope relative to the others.

    `series`: per scope, its cells over the same consecutive cycles (None = no data). For each
    pair of consecutive cycles, every scope's change minus the mean change of all scopes
    (company-wide movement is not a scope's own movement) is divided by its sampling standard
    error; the robust (MAD) variance of these z-values beyond 1 is the real movement, back in
    KPI units. MAD rather than variance so that a few genuine collapses (the heavy tail handled
    separately) do not inflate the usual movement.
    """
    zs: list[float] = []
    noise: list[float] = []
    if not series:
        return None
    cycles = min(len(s) for s in series)
    for t in range(1, cycles):
        diffs, vars_ = [], []
        for s in series:
            a, b = s[t - 1], s[t]
            if a is None or b is None or a.size < max(min_n, 2) or b.size < max(min_n, 2):
                continue
            diffs.append(float(b.mean() - a.mean()))
            vars_.append(_var_of_mean(a) + _var_of_mean(b))
        k = len(diffs)
        if k < 3:
            continue
        d = np.asarray(diffs) - np.mean(diffs)
        v = np.asarray(vars_)
        ok = v > 0
        zs.extend((d[ok] / np.sqrt(v[ok] * (k - 1) / k)).tolist())
        noise.extend(v[ok].tolist())
    if len(zs) < 5:
        return None  # not estimable: too few scopes or cycles
    z = np.asarray(zs)
    mad = float(np.median(np.abs(z - np.median(z)))) * 1.4826
    excess = max(0.0, mad**2 - 1.0)
    # Var(change) = 2 tau^2 + noise: one cycle's deviation from the scope's level is half of it.
    return float(excess * np.mean(noise) / 2)


def shrink_factor(dip: np.ndarray | float, se_x2: float, v_m: float, tau2: float) -> np.ndarray:
    """r: posterior share of the dip `dip` that is real (see the module docstring).

    se_x2: sampling variance of the trigger value; v_m: sampling variance of the reference
    level (history and comparison scopes); tau2: usual real movement. Vectorised over `dip`.
    """
    y = np.asarray(dip, dtype=float)
    noise = se_x2 + v_m
    slab = GENUINE_SHIFT_WIDTH**2 * noise + tau2
    var1, var2 = tau2 + noise, slab + noise
    log1 = np.log1p(-GENUINE_SHIFT_PRIOR) - 0.5 * np.log(var1) - y**2 / (2 * var1)
    log2 = np.log(GENUINE_SHIFT_PRIOR) - 0.5 * np.log(var2) - y**2 / (2 * var2)
    w2 = 1.0 / (1.0 + np.exp(np.clip(log1 - log2, -700, 700)))
    r1 = tau2 / (tau2 + se_x2) if tau2 + se_x2 > 0 else 0.0
    r2 = slab / (slab + se_x2) if slab + se_x2 > 0 else 1.0
    return np.asarray((1 - w2) * r1 + w2 * r2)


def _history_level(history: Sequence[Cell | None], min_n: int) -> tuple[list[Cell], float | None, float]:
    """Cells of usable earlier cycles, their mean level (each cycle weighs the same) and its variance."""
    usable = [h for h in history if h is not None and h.size >= max(min_n, 2)]
    if not usable:
        return [], None, 0.0
    level = float(np.mean([h.mean() for h in usable]))
    var = float(sum(_var_of_mean(h) for h in usable) / len(usable) ** 2)
    return usable, level, var


def pretrend(treated: Sequence[Cell | None], controls: Sequence[Sequence[Cell | None]],
             min_n: int = 30) -> tuple[float, float, int] | None:
    """(slope, its standard error, cycles) of the treated scope's level minus its comparison
    scopes' mean level over the earlier cycles, or None with fewer than 3 usable cycles.

    A slope that differs from 0 means the parallel-trends assumption of difference-in-differences
    does not hold for this action."""
    diffs, times = [], []
    for t, cell in enumerate(treated):
        if cell is None or cell.size < max(min_n, 2):
            continue
        means = [float(c[t].mean()) for c in controls  # type: ignore[union-attr]
                 if t < len(c) and c[t] is not None and c[t].size >= max(min_n, 2)]  # type: ignore[union-attr]
        if not means:
            continue
        diffs.append(float(cell.mean()) - float(np.mean(means)))
        times.append(float(t))
    if len(diffs) < PRETREND_MIN_CYCLES:
        return None
    x, y = np.asarray(times), np.asarray(diffs)
    xc = x - x.mean()
    sxx = float((xc**2).sum())
    slope = float((xc * (y - y.mean())).sum() / sxx)
    resid = y - y.mean() - slope * xc
    dof = len(y) - 2
    se = float(np.sqrt((resid**2).sum() / dof / sxx)) if dof > 0 else float("inf")
    return slope, se, len(y)


# --- the estimate ----------------------------------------------------------------------------

def judge(low: float | None, high: float | None, higher_is_better: bool = True) -> Verdict:
    """improved / worsened when the interval lies on one side of 0 (in the better direction)."""
    if low is None or high is None or np.isnan(low) or np.isnan(high):
        return "insufficient"
    if low > 0:
        return "improved" if higher_is_better else "worsened"
    if high < 0:
        return "worsened" if higher_is_better else "improved"
    return "no_change"


def estimate_effect(treated: ScopeCells, controls: Sequence[ScopeCells] = (), *,
                    higher_is_better: bool = True, confidence: float = 0.95, resamples: int = 999,
                    min_n: int = 30, tau2: float | None = None, kind: Kind | None = None,
                    seed: int | np.random.Generator = 0,
                    all_series: Sequence[Sequence[Cell | None]] | None = None) -> EffectEstimate:
    """Change, RTM-corrected difference-in-differences with a bootstrap interval, and verdict.

    `all_series` (per scope of the dimension: history cells then the baseline cell) feeds the
    tau^2 estimate; by default the treated and comparison scopes' own cycles.
    """
    pre, post = as_cell(treated.pre), as_cell(treated.post)
    est = EffectEstimate(value=float(post.mean()) if post.size else None, n=int(post.size),
                         n_pre=int(pre.size), raw_baseline=float(pre.mean()) if pre.size else None)
    if pre.size < min_n or post.size < min_n:
        side = "this cycle" if post.size < min_n else "the baseline cycle"
        est.notes.append(f"Too few responses in {side} (n={min(pre.size, post.size)}, need {min_n}): "
                         "no judgement.")
        return est
    kind = kind or score_kind(pre, post)
    est.change, est.change_ci_low, est.change_ci_high = prepost_change(pre, post, confidence, kind)

    usable = [c for c in controls
              if as_cell(c.pre).size >= min_n and as_cell(c.post).size >= min_n]
    est.comparison_scopes = len(usable)
    est.method = "did" if usable else "pre_post"

    t_hist, m_t, v_mt = _history_level([as_cell(h) if h is not None else None for h in treated.history],
                                       min_n)
    if tau2 is None:
        series = all_series if all_series is not None else [
            [*(list(s.history)), s.pre] for s in (treated, *usable)]
        tau2 = estimate_tau2([[as_cell(c) if c is not None else None for c in s] for s in series], min_n)
    reasons: list[str] = []
    if not usable:
        reasons.append("no comparison scope without an action, so a before/after change cannot be told "
                       "from company-wide change")
    elif len(usable) < MIN_COMPARISONS:
        reasons.append(f"only {len(usable)} comparison scope(s) without an action: too few to tell the "
                       "action from their own movements and trends")
    tau2 = 0.0 if tau2 is None else tau2  # not estimable (few scopes or cycles): sampling noise only
    est.tau2 = tau2
    trend = pretrend([as_cell(h) if h is not None else None for h in treated.history],
                     [[as_cell(h) if h is not None else None for h in c.history] for c in usable], min_n)
    parallel = False
    if trend is not None:
        slope, se, cycles = trend
        crit = float(stats.t.ppf(1 - PRETREND_ALPHA / 2, cycles - 2)) if cycles > 2 else float("inf")
        parallel = not (se > 0 and abs(slope) > crit * se)
        if not parallel:
            reasons.append(f"before the action the scope moved {slope:+.1f} points a cycle relative to its "
                           f"comparison scopes (over {cycles} cycles): their trends are not parallel")

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    x_b = boot_means(pre, resamples, rng)
    post_b = boot_means(post, resamples, rng)
    x = float(pre.mean())

    # Company-wide movement: comparison scopes' mean change (DiD) and their mean deviation at the
    # trigger from their own history (so a dip every scope shared is not called noise).
    ctrl_change = 0.0
    ctrl_change_b = np.zeros(resamples)
    ctrl_dev, ctrl_dev_b, v_ctrl = 0.0, np.zeros(resamples), 0.0
    with_hist = 0
    for c in usable:
        cp, cq = as_cell(c.pre), as_cell(c.post)
        cp_b = boot_means(cp, resamples, rng)
        ctrl_change += float(cq.mean() - cp.mean()) / len(usable)
        ctrl_change_b += (boot_means(cq, resamples, rng) - cp_b) / len(usable)
        c_hist, m_c, v_mc = _history_level([as_cell(h) if h is not None else None for h in c.history], min_n)
        if m_c is not None and m_t is not None:
            hist_b = np.mean([boot_means(h, resamples, rng) for h in c_hist], axis=0)
            ctrl_dev += float(cp.mean()) - m_c
            ctrl_dev_b += cp_b - hist_b
            v_ctrl += _var_of_mean(cp) + v_mc
            with_hist += 1
    if with_hist:
        ctrl_dev /= with_hist
        ctrl_dev_b /= with_hist
        v_ctrl /= with_hist**2

    if m_t is not None:
        m_b = np.mean([boot_means(h, resamples, rng) for h in t_hist], axis=0)
        dip = (x - m_t) - ctrl_dev
        dip_b = (x_b - m_b) - ctrl_dev_b
        se_x2 = _var_of_mean(pre)
        v_ref = v_mt + v_ctrl
        sign = 1.0 if higher_is_better else -1.0
        # A trigger better than usual is pulled down only when parallel trends were checked: see
        # the module docstring.
        worse_b = (sign * dip_b < 0) | parallel
        r = float(shrink_factor(dip, se_x2, v_ref, tau2)) if sign * dip < 0 or parallel else 1.0
        est.shrink = r
        est.dip_se = dip / float(np.sqrt(se_x2 + v_ref)) if se_x2 + v_ref > 0 else None
        base = x - (1 - r) * dip
        r_b = np.where(worse_b, shrink_factor(dip_b, se_x2, v_ref, tau2), 1.0)
        base_b = x_b - (1 - r_b) * dip_b
        if abs(1 - r) * abs(dip) >= 0.05:
            est.notes.append(
                f"Baseline corrected for regression to the mean: the trigger value {x:.1f} was "
                f"{abs(est.dip_se or 0):.1f} standard errors {'below' if dip < 0 else 'above'} the scope's "
                f"usual level; {100 * (1 - r):.0f}% of that is treated as noise, so the baseline "
                f"is {base:.1f}.")
    else:
        base, base_b = x, x_b
        est.notes.append("No earlier cycles of this scope: the baseline is not corrected for "
                         "regression to the mean.")
    est.baseline = base

    effect = float(post.mean()) - base - ctrl_change
    effect_b = post_b - base_b - ctrl_change_b
    if tau2 > 0:  # the scope's own real wobble in the follow-up cycle is not sampling noise, nor
        # is the comparison scopes' (each moves 2 tau^2 between two cycles; their mean 2 tau^2 / k)
        wobble = tau2 + (2 * tau2 / len(usable) if usable else 0.0)
        effect_b = effect_b + rng.normal(0.0, np.sqrt(wobble), resamples)
    # Percentile interval, re-centred on the point estimate (basic/percentile hybrid is
    # unnecessary here: the estimator is nearly linear in the cell means).
    lo, hi = np.nanpercentile(effect_b - np.nanmean(effect_b), [50 * (1 - confidence),
                                                               50 * (1 + confidence)])
    est.effect, est.effect_ci_low, est.effect_ci_high = effect, effect + float(lo), effect + float(hi)
    est.verdict = judge(est.effect_ci_low, est.effect_ci_high, higher_is_better)
    if m_t is None and est.verdict == "improved":
        reasons.append("the action was opened on the scope's first measured cycle, so a return to its "
                       "usual level cannot be told from the action's effect")
    if reasons and est.verdict != "insufficient":
        est.verdict = "inconclusive"
        est.notes.append("Inconclusive: " + "; ".join(reasons) + ".")
    if est.method == "pre_post":
        est.notes.insert(0, "No comparison scopes without an action: judged on the scope's own "
                            "before/after (pre/post), which cannot separate the action from "
                            "company-wide changes.")
    return est
