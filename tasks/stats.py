"""Intervals for CX KPIs, computed from histograms (sufficient statistics), never from raw rows.

Every KPI is reported with n and an interval (docs/methods.md, "Intervals"):

* proportions (CSAT top-2-box, % CES 5-7, complaint rate, % within SLA, theme shares): Wilson score
  interval from statsmodels (`method="wilson"`; its default "normal" misbehaves near 0 and 1);
* NPS and the CX-index nets (a trinomial +1/0/-1 score): adjusted Wald (Rocks 2016): add 0.75
  detractors, 1.5 passives, 0.75 promoters and use the Wald formula on the adjusted counts;
* means (CES mean): Poisson bootstrap of the histogram - each bin count is redrawn as Poisson(count),
  which approximates the multinomial bootstrap, is vectorised, and needs nothing but the histogram;
* medians and p90 of times: the exact bootstrap distribution of the sample quantile (the percentile
  bootstrap with infinitely many resamples), from the binomial CDF over the histogram bins; for the
  few cases of follow-up contact times, the distribution-free order-statistic interval instead;
* the CX index (mean of three nets over partly different respondents): delta method over the joint
  histogram of the three answers, so the covariance between questions is respected.

Percent scales are used throughout (proportions 0..100, NPS -100..100), matching stored KPI values.
Randomness is seeded from the KPI key (`rng_for`), so a result does not depend on the order in which
scopes are computed or on how the rows were split into chunks.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtri
from scipy.stats import binom
from statsmodels.stats.proportion import proportion_confint

Interval = tuple[float | None, float | None]
FloatArray = NDArray[np.float64]

BASE_SEED = 20261123


def z_value(confidence: float) -> float:
    """Two-sided normal quantile, e.g. 1.96 for 0.95 (scipy.special's, without stats.norm's per-call
    overhead: it is asked for once per KPI result)."""
    return float(ndtri(0.5 + confidence / 2))


def rng_for(*key: object) -> np.random.Generator:
    """A generator seeded from a stable hash of the key (e.g. kpi, scope, scope value)."""
    text = "|".join(str(k) for k in key)
    return np.random.default_rng([BASE_SEED, zlib.crc32(text.encode("utf-8"))])


def wilson_many(counts: ArrayLike, ns: ArrayLike, confidence: float = 0.95) -> tuple[FloatArray, FloatArray]:
    """Wilson score intervals for many count/n pairs at once, in percent (NaN where n is 0)."""
    c = np.atleast_1d(np.asarray(counts, dtype=float))
    n = np.atleast_1d(np.asarray(ns, dtype=float))
    lo = np.full(c.shape, np.nan)
    hi = np.full(c.shape, np.nan)
    ok = n > 0
    if ok.any():
        lo_ok, hi_ok = proportion_confint(c[ok], n[ok], alpha=1 - confidence, method="wilson")
        lo[ok], hi[ok] = np.asarray(lo_ok) * 100, np.asarray(hi_ok) * 100
    return lo, hi


def wilson(count: float, n: float, confidence: float = 0.95) -> Interval:
    """Wilson score interval for count/n, in percent; (None, None) when n is 0."""
    lo, hi = wilson_many([count], [n], confidence)
    return _opt(lo[0]), _opt(hi[0])


def _opt(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def net_score(positive: float, neutral: float, negative: float) -> float | None:
    """%positive - %negative on -100..100 (NPS, CX-index nets); None without answers."""
    n = positive + neutral + negative
    return None if n <= 0 else (positive - negative) / n * 100


def adjusted_wald_many(positive: ArrayLike, neutral: ArrayLike, negative: ArrayLike,
                       confidence: float = 0.95) -> tuple[FloatArray, FloatArray]:
    """Adjusted-Wald intervals of net scores such as NPS (Rocks 2016), in points, vectorised.

    Add 0.75 detractors, 1.5 passives and 0.75 promoters (n' = n + 3), then
    CI = (p' - d') +/- z * sqrt((p' + d' - (p' - d')^2) / n'), clipped to -100..100.
    NaN where there are no answers.
    """
    pos = np.atleast_1d(np.asarray(positive, dtype=float))
    neg = np.atleast_1d(np.asarray(negative, dtype=float))
    n = pos + np.atleast_1d(np.asarray(neutral, dtype=float)) + neg
    n_adj = n + 3.0
    p = (pos + 0.75) / n_adj
    d = (neg + 0.75) / n_adj
    half = z_value(confidence) * np.sqrt((p + d - (p - d) ** 2) / n_adj)
    lo = np.maximum(-1.0, p - d - half) * 100
    hi = np.minimum(1.0, p - d + half) * 100
    empty = n <= 0
    lo[empty] = np.nan
    hi[empty] = np.nan
    return lo, hi


def adjusted_wald_net(positive: float, neutral: float, negative: float,
                      confidence: float = 0.95) -> Interval:
    """Adjusted-Wald interval of one net score; (None, None) without answers."""
    lo, hi = adjusted_wald_many([positive], [neutral], [negative], confidence)
    return _opt(lo[0]), _opt(hi[0])


def net_difference(a: tuple[float, float, float], b: tuple[float, float, float],
                   confidence: float = 0.95) -> tuple[float | None, float | None, float | None, float | None]:
    """Change of a net score from period a to period b: (diff, ci_low, ci_high, z), adjusted Wald.

    z = (NPS'_b - NPS'_a) / sqrt(Var'_a/n'_a + Var'_b/n'_b) as in docs/methods.md; the interval uses the
    same standard error. All in points; None when either side has no answers.
    """
    parts = []
    for pos, neu, neg in (a, b):
        n = pos + neu + neg
        if n <= 0:
            return None, None, None, None
        n_adj = n + 3.0
        p, d = (pos + 0.75) / n_adj, (neg + 0.75) / n_adj
        parts.append((p - d, (p + d - (p - d) ** 2) / n_adj))
    (ca, va), (cb, vb) = parts
    se = math.sqrt(va + vb)
    diff = cb - ca
    half = z_value(confidence) * se
    z = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    return diff * 100, (diff - half) * 100, (diff + half) * 100, z


def hist_mean(values: ArrayLike, counts: ArrayLike) -> float | None:
    v = np.asarray(values, dtype=float)
    c = np.asarray(counts, dtype=float)
    total = c.sum()
    return None if total <= 0 else float(v @ c / total)


def hist_quantile(values: ArrayLike, counts: ArrayLike, q: float) -> float | None:
    """Quantile of a histogram, numpy's "averaged_inverted_cdf" (median of 1,2,3,4 is 2.5).

    Values must be sorted ascending. Identical to `np.quantile(raw, q, method=...)` on the raw rows.
    """
    v = np.asarray(values, dtype=float)
    c = np.asarray(counts, dtype=float)
    n = c.sum()
    if n <= 0:
        return None
    cum = np.cumsum(c)
    g = q * n
    eps = 1e-9 * max(n, 1.0)  # q * n in floating point: 0.9 * 10 is 9.000000000000002
    lo = min(int(np.searchsorted(cum, g - eps, side="left")), len(v) - 1)  # first cum >= g
    hi = min(int(np.searchsorted(cum, g + eps, side="right")), len(v) - 1)  # first cum > g
    if abs(cum[lo] - g) <= eps and hi != lo:
        return float((v[lo] + v[hi]) / 2)
    return float(v[lo])


def quantile_intervals(hists: Sequence[tuple[ArrayLike, ArrayLike]], q: float,
                       confidence: float = 0.95) -> list[Interval]:
    """Exact percentile-bootstrap intervals of the q-quantile of many histograms (bins ascending).

    In a bootstrap resample of size n the k-th order statistic (k = ceil(q n)) is <= x_j exactly
    when at least k of the n draws fall at or below x_j: P = P(Binomial(n, F(x_j)) >= k). The
    percentile interval is read off that distribution directly - what scipy.stats.bootstrap with
    method="percentile" converges to as the number of resamples grows, without any resampling.
    All histograms go through one vectorised binomial call.
    """
    out: list[Interval] = [(None, None)] * len(hists)
    parts = [(i, np.asarray(v, dtype=float), np.asarray(c, dtype=float)) for i, (v, c) in enumerate(hists)]
    parts = [(i, v, c) for i, v, c in parts if c.sum() > 0]
    if not parts:
        return out
    cdf = np.concatenate([np.cumsum(c) / c.sum() for _, _, c in parts])
    n_rep = np.concatenate([np.full(c.size, round(c.sum())) for _, _, c in parts])
    k_rep = np.maximum(1, np.ceil(q * n_rep - 1e-9))
    prob_le = binom.sf(k_rep - 1, n_rep, np.clip(cdf, 0.0, 1.0))  # P(order stat k <= x_j)
    alpha = 1 - confidence
    start = 0
    for i, v, c in parts:
        probs = prob_le[start:start + c.size]
        start += c.size
        lo_idx = min(int(np.searchsorted(probs, alpha / 2, side="left")), v.size - 1)
        hi_idx = min(int(np.searchsorted(probs, 1 - alpha / 2, side="left")), v.size - 1)
        out[i] = (float(v[lo_idx]), float(v[hi_idx]))
    return out


def quantile_interval(values: ArrayLike, counts: ArrayLike, q: float,
                      confidence: float = 0.95) -> Interval:
    """Exact percentile-bootstrap interval of the q-quantile of one histogram (see above)."""
    return quantile_intervals([(values, counts)], q, confidence)[0]


def order_statistic_intervals(hists: Sequence[tuple[ArrayLike, ArrayLike]], q: float,
                              confidence: float = 0.95) -> list[Interval]:
    """Distribution-free intervals of the q-quantile of many histograms (bins ascending), from
    order statistics: with B ~ Binomial(n, q), P(X_(l) <= xi_q < X_(u)) = P(l <= B < u), so
    l = the largest rank with P(B < l) < alpha/2 and u = the smallest with P(B < u) >= 1 - alpha/2
    cover the true quantile with at least the stated confidence, whatever the distribution
    (Hahn & Meeker, Statistical Intervals, ch. 5). Used for the follow-up cases' contact times,
    where a department has tens of cases, not thousands, and the percentile bootstrap undercovers.

    With very few values a rank falls outside 1..n (no finite bound exists at that confidence: a
    p90 needs 29 values for a 95% upper bound); the bound is then the sample's extreme and the
    coverage is below the stated one - `min_n` keeps such results from being judged.
    """
    out: list[Interval] = []
    alpha = 1 - confidence
    for values, counts in hists:
        v = np.asarray(values, dtype=float)
        c = np.asarray(counts, dtype=float)
        n = int(round(c.sum()))
        if n <= 0:
            out.append((None, None))
            continue
        lo_rank = int(binom.ppf(alpha / 2, n, q))  # P(B < lo_rank) < alpha/2
        hi_rank = int(binom.ppf(1 - alpha / 2, n, q)) + 1  # P(B < hi_rank) >= 1 - alpha/2
        lo_rank, hi_rank = min(max(lo_rank, 1), n), min(max(hi_rank, 1), n)
        cum = np.cumsum(c)  # the rank-th smallest value lies in the first bin with cum >= rank
        lo_idx = min(int(np.searchsorted(cum, lo_rank - 1e-9, side="left")), v.size - 1)
        hi_idx = min(int(np.searchsorted(cum, hi_rank - 1e-9, side="left")), v.size - 1)
        out.append((float(v[lo_idx]), float(v[hi_idx])))
    return out


def poisson_bootstrap(counts: ArrayLike, statistic: Callable[[FloatArray], FloatArray],
                      resamples: int, rng: np.random.Generator,
                      confidence: float = 0.95) -> Interval:
    """Percentile interval of `statistic` over Poisson-bootstrap resamples of a histogram.

    `statistic` gets a (resamples, bins) array of resampled counts and returns one value per row
    (NaN where undefined, e.g. an empty resample; those are dropped).
    """
    c = np.asarray(counts, dtype=float)
    if c.sum() <= 0:
        return None, None
    draws = rng.poisson(c, size=(resamples, c.size)).astype(float)
    stats = statistic(draws)
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return None, None
    return _percentiles(stats, confidence)


def _percentiles(sample: FloatArray, confidence: float) -> Interval:
    """(alpha/2, 1 - alpha/2) quantiles, numpy's default linear rule, without np.quantile's overhead."""
    s = np.sort(sample)
    out = []
    for q in ((1 - confidence) / 2, (1 + confidence) / 2):
        pos = q * (s.size - 1)
        i = int(math.floor(pos))
        j = min(i + 1, s.size - 1)
        out.append(float(s[i] + (s[j] - s[i]) * (pos - i)))
    return out[0], out[1]


def bootstrap_mean(values: ArrayLike, counts: ArrayLike, resamples: int, rng: np.random.Generator,
                   confidence: float = 0.95) -> Interval:
    """Poisson-bootstrap percentile interval of the mean of a histogram."""
    v = np.asarray(values, dtype=float)

    def mean(draws: FloatArray) -> FloatArray:
        total = draws.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(draws @ v / total, dtype=float)

    return poisson_bootstrap(counts, mean, resamples, rng, confidence)


def delta_interval(estimate: float | None, se: float | None, confidence: float = 0.95,
                   bounds: tuple[float, float] | None = None) -> Interval:
    """estimate +/- z * se, optionally clipped to the scale's bounds."""
    if estimate is None or se is None or not math.isfinite(se):
        return None, None
    half = z_value(confidence) * se
    lo, hi = float(estimate - half), float(estimate + half)
    if bounds:
        lo, hi = max(bounds[0], lo), min(bounds[1], hi)
    return lo, hi


def mean_of_nets_many(counts: ArrayLike, answered: NDArray[np.bool_],
                      scores: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Mean of several net scores and its delta-method standard error, from joint histograms.

    `counts[g, c]` is the number of respondents of group g in answer cell c; `answered[c, q]` says
    whether cell c answered question q and `scores[c, q]` is its +100/0/-100 score. Each net is
    taken over its own answerers (a response may skip a question). The influence of a cell on the
    mean of nets is (1/Q) sum_q (N / A_q) answered_q (score_q - net_q), and Var = sum(w IF^2) / N^2.
    NaN where a question has no answers.
    """
    w = np.atleast_2d(np.asarray(counts, dtype=float))
    ans = answered.astype(float)
    n_total = w.sum(axis=1)
    a_q = w @ ans  # (G, Q) answerers per question
    with np.errstate(invalid="ignore", divide="ignore"):
        nets = (w @ (ans * scores)) / a_q
        estimate = nets.mean(axis=1)
        # influence[g, c] = mean_q (N_g / A_gq) * ans[c, q] * (scores[c, q] - nets[g, q])
        ratio = n_total[:, None] / a_q  # (G, Q)
        influence = (ratio[:, None, :] * ans[None] * (scores[None] - nets[:, None, :])).mean(axis=2)
        se = np.sqrt((w * influence**2).sum(axis=1)) / n_total
    bad = ~np.all(a_q > 0, axis=1)
    estimate[bad] = np.nan
    se[bad] = np.nan
    return estimate, se


def mean_of_nets_se(counts: ArrayLike, answered: NDArray[np.bool_],
                    scores: FloatArray) -> tuple[float | None, float | None]:
    """`mean_of_nets_many` for one joint histogram; (None, None) when undefined."""
    est, se = mean_of_nets_many(np.asarray(counts, dtype=float)[None, :], answered, scores)
    return _opt(est[0]), _opt(se[0])
