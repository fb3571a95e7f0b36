"""Key-driver analysis: which attribute ratings move an outcome score, and how well each performs.

Importance is Johnson's (2000) relative weight of each driver: the outcome is regressed on the
orthogonal counterparts of the drivers (the symmetric square root of their correlation matrix), and
each driver is credited with its share of each orthogonal variable. Unlike raw regression
coefficients, relative weights stay positive and stable when drivers are correlated (in surveys they
always are: a tired passenger rates seat, legroom and food lower together), and they add up to the
model's R^2, so each driver's weight reads as "the share of the outcome's variance it accounts for".
They approximate the Shapley-value decomposition of R^2 (`shapley_r2`, exact over all 2^k subsets,
kept as the independent check; `bench/drivers.py` compares the two on real data).

"Not rated" is missing, never zero. Correlations are pairwise-complete: each pair of variables uses
the responses that answered both, so a driver skipped by 40% of respondents neither drags the others
down (as zero-filling would) nor throws away everyone who skipped it (as listwise deletion would).
The pairwise matrix is projected onto the nearest valid correlation matrix before it is decomposed.

Everything is computed from sufficient statistics (pairwise counts, sums, sums of squares and cross
products), accumulated per random block of responses. The bootstrap resamples blocks, not rows, so
its cost does not grow with the number of responses: a month of 1M responses x 14 drivers costs a
few matrix products over the rows, then the same few hundred tiny eigen-decompositions as a month of
500 responses. With at least `MAX_BLOCKS` responses each block holds many; below that, each response
is its own block (the ordinary bootstrap).

Drivers are ranked by significance, not by point estimate: a driver's rank is 1 + the number of
drivers whose importance is higher in at least `confidence` of the bootstrap resamples (their paired
difference's percentile interval excludes 0). Drivers that no other driver clearly beats share rank
1 - a tie, shown as such - instead of being put in an order the data cannot support.

The method, its references (Johnson 2000; Budescu 1993; Lipovetsky & Conklin 2001) and its checks:
docs/methods.md, "Key drivers".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from threadpoolctl import threadpool_limits

from cxloop.tasks.stats import rng_for

FloatArray = NDArray[np.float64]

MAX_BLOCKS = 1000
DEFAULT_RESAMPLES = 400
MIN_PAIR_N = 10  # fewer responses answering both a driver and the outcome: the driver is left out

# Priority-matrix quadrants: importance above/below the average driver's, performance above/below
# the average driver's (both among the drivers analysed).
QUADRANTS = ("fix", "maintain", "monitor", "surplus")


@dataclass(frozen=True)
class DriverResult:
    """One driver's importance for the outcome and its performance, each with its interval."""

    driver: str
    n: int  # responses that rated this driver
    n_pair: int  # responses that rated this driver and answered the outcome
    weight: float  # relative weight: part of R^2 (0..1) this driver accounts for
    weight_low: float
    weight_high: float
    share: float  # weight as a percentage of R^2
    share_low: float
    share_high: float
    rank: int  # 1 + number of drivers significantly more important
    tied: bool  # another driver has the same rank
    mean: float  # performance: mean rating on the driver's own scale
    mean_low: float
    mean_high: float
    performance: float  # mean rescaled to 0..100 over the driver's scale
    quadrant: str  # fix | maintain | monitor | surplus


@dataclass(frozen=True)
class DriverAnalysis:
    outcome: str
    n: int  # responses that answered the outcome
    r2: float
    r2_low: float
    r2_high: float
    drivers: list[DriverResult]
    excluded: dict[str, str]  # driver -> why it was left out (too few answers, no variation)
    method: str = "relative_weights"

    def ranked(self) -> list[DriverResult]:
        """Drivers by rank, then by point importance."""
        return sorted(self.drivers, key=lambda d: (d.rank, -d.weight))


# --- sufficient statistics ---------------------------------------------------------------------

def block_moments(values: ArrayLike, blocks: int, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """Pairwise-complete moments of the columns of `values` (NaN = missing), per random block.

    Returns ((blocks, 4, p, p), shift): for each block, N[i, j] = rows with both i and j present,
    S[i, j] = sum of column i over those rows, Q[i, j] = sum of squares of column i over them,
    C[i, j] = sum of products. Columns are shifted by their mean (`shift`) first, so sums of squares
    of large values (spend in currency) keep their precision; correlations do not depend on it.
    Two BLAS products per block, [m, z, z^2]' m and z' z (m = answered, z = shifted value or 0); the
    rows of a block are gathered by index, so the data are never copied whole.
    """
    v = np.asarray(values, dtype=np.float64)
    n, p = v.shape
    counts = n - np.isnan(v).sum(axis=0)
    shift = np.nansum(v, axis=0) / np.maximum(counts, 1) if n else np.zeros(p)
    g = max(1, min(blocks, n))
    order = rng.permutation(n)
    bounds = np.linspace(0, n, g + 1).round().astype(np.intp)
    out = np.empty((g, 4, p, p))
    with threadpool_limits(1, user_api="blas"):  # small products: threads only contend
        _fill_blocks(v, order, bounds, shift, out)
    return out, shift


def _fill_blocks(v: FloatArray, order: NDArray[np.intp], bounds: NDArray[np.intp], shift: FloatArray,
                 out: FloatArray) -> None:
    p = v.shape[1]
    left = np.empty((int(np.diff(bounds).max(initial=0)), 3 * p))
    for b in range(out.shape[0]):
        rows = v[order[bounds[b]:bounds[b + 1]]]
        size = rows.shape[0]
        lb = left[:size]
        m = lb[:, :p]
        z = lb[:, p:2 * p]
        present = ~np.isnan(rows)
        m[:] = present
        mc = np.ascontiguousarray(m)
        np.subtract(rows, shift, out=z)
        z[~present] = 0.0
        np.multiply(z, z, out=lb[:, 2 * p:])
        nsq = lb.T @ mc
        out[b, 0] = nsq[:p]
        out[b, 1] = nsq[p:2 * p]
        out[b, 2] = nsq[2 * p:]
        out[b, 3] = z.T @ z


def pairwise_correlations(moments: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Correlation matrices and pairwise counts from summed moments (..., 4, p, p).

    r[i, j] = (N C - S_i S_j) / sqrt((N Q_i - S_i^2)(N Q_j - S_j^2)), all over the rows where both
    were answered. NaN where a pair has no variation or no rows.
    """
    n, s, q, c = moments[..., 0, :, :], moments[..., 1, :, :], moments[..., 2, :, :], moments[..., 3, :, :]
    st = np.swapaxes(s, -1, -2)
    qt = np.swapaxes(q, -1, -2)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = n * c - s * st
        var_i = n * q - s * s
        var_j = n * qt - st * st
        r = cov / np.sqrt(var_i * var_j)
    p = r.shape[-1]
    eye = np.eye(p, dtype=bool)
    r = np.where(eye, 1.0, np.clip(r, -1.0, 1.0))
    return r, n


def nearest_correlation(r: FloatArray, floor: float = 1e-6) -> FloatArray:
    """Clip the eigenvalues of (pairwise, possibly indefinite) correlation matrices to `floor` and
    restore the unit diagonal. Identity on a matrix that already is a valid correlation matrix."""
    lam, vec = np.linalg.eigh(r)
    if np.all(lam >= floor):
        return r
    lam = np.maximum(lam, floor)
    fixed = (vec * lam[..., None, :]) @ np.swapaxes(vec, -1, -2)
    d = np.sqrt(np.diagonal(fixed, axis1=-2, axis2=-1))
    return np.asarray(fixed / d[..., :, None] / d[..., None, :])


# --- importance --------------------------------------------------------------------------------

def relative_weights(r: FloatArray) -> FloatArray:
    """Johnson's relative weights from correlation matrices (..., 1 + k, 1 + k), outcome first.

    With R_xx = V diag(l) V', Lambda = V diag(sqrt l) V' (the drivers' correlations with their
    closest orthogonal counterparts) and beta = V diag(1/sqrt l) V' r_xy (the outcome regressed on
    those counterparts): eps_j = sum_k Lambda_jk^2 beta_k^2. sum_j eps_j = R^2.
    """
    rxx = r[..., 1:, 1:]
    rxy = r[..., 1:, 0]
    lam, vec = np.linalg.eigh(rxx)
    lam = np.maximum(lam, 1e-12)
    vt = np.swapaxes(vec, -1, -2)
    half = (vec * np.sqrt(lam)[..., None, :]) @ vt
    inv_half = (vec / np.sqrt(lam)[..., None, :]) @ vt
    beta = (inv_half @ rxy[..., None])[..., 0]
    return np.asarray(((half**2) @ (beta**2)[..., None])[..., 0])


def r_squared(r: FloatArray) -> FloatArray:
    """R^2 of the outcome (first variable) on all drivers, from correlation matrices."""
    rxy = r[..., 1:, 0]
    sol = np.linalg.solve(r[..., 1:, 1:], rxy[..., None])[..., 0]
    return np.asarray(np.sum(rxy * sol, axis=-1))


def shapley_r2(r: FloatArray) -> FloatArray:
    """Exact Shapley-value decomposition of R^2 over all 2^k subsets of drivers (one matrix, k <= 20).

    phi_j = sum over subsets S without j of |S|! (k - |S| - 1)! / k! * (R^2(S + j) - R^2(S)).
    Exponential in k: the check on `relative_weights`, not the everyday method.
    """
    r = np.asarray(r, dtype=float)
    k = r.shape[0] - 1
    if k > 20:
        raise ValueError(f"exact Shapley over 2^{k} subsets is too large")
    r2 = np.zeros(1 << k)
    for size in range(1, k + 1):
        subsets = np.array(list(combinations(range(k), size)), dtype=np.intp)
        idx = subsets + 1
        rss = r[idx[:, :, None], idx[:, None, :]]
        rsy = r[idx, 0]
        sol = np.linalg.solve(rss, rsy[..., None])[..., 0]
        masks = (1 << subsets).sum(axis=1)
        r2[masks] = np.sum(rsy * sol, axis=1)
    sizes = np.array([bin(mask).count("1") for mask in range(1 << k)])
    weight = np.array([math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k) if s < k else 0.0
                       for s in range(k + 1)])
    phi = np.zeros(k)
    masks = np.arange(1 << k)
    for j in range(k):
        without = masks[(masks >> j) & 1 == 0]
        phi[j] = np.sum(weight[sizes[without]] * (r2[without | (1 << j)] - r2[without]))
    return phi


# --- the analysis ------------------------------------------------------------------------------

def significance_ranks(draws: FloatArray, confidence: float) -> list[int]:
    """rank_j = 1 + #{i : the percentile interval of w_i - w_j over the resamples lies above 0}."""
    k = draws.shape[1]
    diff = draws[:, :, None] - draws[:, None, :]  # (B, i, j)
    low = np.nanquantile(diff, (1 - confidence) / 2, axis=0)
    beats = low > 0
    np.fill_diagonal(beats, False)
    return [1 + int(beats[:, j].sum()) for j in range(k)]


def _interval(draws: FloatArray, confidence: float) -> tuple[FloatArray, FloatArray]:
    alpha = 1 - confidence
    lo, hi = np.nanquantile(draws, [alpha / 2, 1 - alpha / 2], axis=0)
    return np.asarray(lo), np.asarray(hi)


def analyse_drivers(outcome: ArrayLike, ratings: ArrayLike, drivers: Sequence[str], *,
                    scales: Sequence[tuple[float, float]] | None = None, outcome_name: str = "outcome",
                    confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
                    seed_key: Sequence[object] = (), min_pair_n: int = MIN_PAIR_N) -> DriverAnalysis | None:
    """Importance (relative weight, bootstrap interval, significance rank) and performance (mean,
    bootstrap interval) of each driver for one outcome, over one group of responses.

    `outcome` is (n,), `ratings` (n, k) with NaN for "not rated"; `scales` gives each driver's
    (lowest, highest) rating for the 0..100 performance (default: the observed range). None when
    fewer than two drivers have enough answers to be analysed. Deterministic for a given seed_key.
    """
    y = np.asarray(outcome, dtype=float).reshape(-1)
    x = np.asarray(ratings, dtype=float).reshape(y.size, -1)
    names = list(drivers)
    if x.shape[1] != len(names):
        raise ValueError(f"{x.shape[1]} rating columns for {len(names)} drivers")
    rng = rng_for("drivers", outcome_name, *seed_key)
    moments, shift = block_moments(np.column_stack([y, x]), MAX_BLOCKS, rng)
    total = moments.sum(axis=0)
    r_all, n_all = pairwise_correlations(total)
    excluded: dict[str, str] = {}
    keep: list[int] = []
    for j, name in enumerate(names):
        n_both = int(n_all[0, j + 1])
        if n_both < min_pair_n:
            excluded[name] = f"only {n_both} responses rated it and answered {outcome_name}"
        elif not math.isfinite(r_all[0, j + 1]):
            excluded[name] = f"no variation among the responses that rated it and answered {outcome_name}"
        else:
            keep.append(j)
    if len(keep) < 2:
        return None
    names_kept = [names[j] for j in keep]
    idx = np.array([0] + [j + 1 for j in keep])
    moments = moments[:, :, idx[:, None], idx[None, :]]
    total = total[:, idx[:, None], idx[None, :]]
    g = moments.shape[0]
    counts = rng.multinomial(g, np.full(g, 1.0 / g), size=resamples).astype(float)
    boot = np.tensordot(counts, moments, axes=(1, 0))  # (B, 4, p, p)

    r_point, n_pair = pairwise_correlations(total)
    r_point = nearest_correlation(r_point)
    r_boot, _ = pairwise_correlations(boot)
    ok = np.all(np.isfinite(r_boot), axis=(1, 2))
    boot = boot[ok]
    r_boot = nearest_correlation(r_boot[ok])
    w_point = relative_weights(r_point)
    w_boot = relative_weights(r_boot)
    r2_point = float(w_point.sum())
    r2_boot = w_boot.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share_boot = w_boot / r2_boot[:, None] * 100
    w_lo, w_hi = _interval(w_boot, confidence)
    s_lo, s_hi = _interval(share_boot, confidence)
    r2_lo, r2_hi = _interval(r2_boot[:, None], confidence)
    ranks = significance_ranks(w_boot, confidence)

    # Performance: each driver's mean over everyone who rated it (diagonal moments, plus the shift).
    diag = np.arange(1, len(keep) + 1)
    shift_kept = shift[idx[1:]]
    n_rated = total[0, diag, diag]
    means = total[1, diag, diag] / n_rated + shift_kept
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_boot = boot[:, 1, diag, diag] / boot[:, 0, diag, diag] + shift_kept
    m_lo, m_hi = _interval(mean_boot, confidence)
    if scales is None:
        rated = x[:, keep]
        bounds = list(zip(np.nanmin(rated, axis=0).tolist(), np.nanmax(rated, axis=0).tolist(), strict=True))
    else:
        bounds = [(float(scales[j][0]), float(scales[j][1])) for j in keep]
    perf = [(float(means[i]) - lo) / (hi - lo) * 100 if hi > lo else 50.0
            for i, (lo, hi) in enumerate(bounds)]
    mean_w, mean_perf = float(np.mean(w_point)), float(np.mean(perf))
    rank_counts = {rk: ranks.count(rk) for rk in ranks}
    results = []
    for i, name in enumerate(names_kept):
        important = w_point[i] >= mean_w
        good = perf[i] >= mean_perf
        quadrant = ("maintain" if good else "fix") if important else ("surplus" if good else "monitor")
        results.append(DriverResult(
            driver=name, n=int(n_rated[i]), n_pair=int(n_pair[0, i + 1]),
            weight=float(w_point[i]), weight_low=float(w_lo[i]), weight_high=float(w_hi[i]),
            share=float(w_point[i] / r2_point * 100) if r2_point > 0 else 0.0,
            share_low=float(s_lo[i]), share_high=float(s_hi[i]),
            rank=ranks[i], tied=rank_counts[ranks[i]] > 1,
            mean=float(means[i]), mean_low=float(m_lo[i]), mean_high=float(m_hi[i]),
            performance=perf[i], quadrant=quadrant))
    return DriverAnalysis(outcome=outcome_name, n=int(total[0, 0, 0]), r2=r2_point,
                          r2_low=float(r2_lo[0]), r2_high=float(r2_hi[0]), drivers=results,
                          excluded=excluded)


def priorities(analysis: DriverAnalysis, owned: Sequence[str] | None = None,
               limit: int = 3) -> list[DriverResult]:
    """The drivers to work on first: in the "fix" quadrant (important, below-average performance),
    most important first; `owned` restricts them to a department's drivers."""
    pool = [d for d in analysis.ranked() if d.quadrant == "fix" and (owned is None or d.driver in owned)]
    return pool[:limit]
