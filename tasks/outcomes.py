"""CX linked to business outcomes: what promoters, passives and detractors do afterwards, and what
one NPS point is associated with.

Outcomes (orders, visits, spend, churn/renewal flags by customer and date) are joined to responses by
customer id over a window after each response (`join_outcomes`), so "later visits" are visits after
the answer, not before it. Per NPS group each outcome gets its mean with a bootstrap interval (spend
is skewed: no normal approximation) or, for 0/1 flags such as churn, a Wilson interval.

The value of one NPS point is the slope of the outcome on each response's NPS contribution (+100
promoter, 0 passive, -100 detractor): the average contribution over customers *is* the NPS, so the
slope is the change in the outcome per customer that goes with a one-point higher NPS, if customers
moved between groups as the observed groups differ. Its interval is heteroscedasticity-robust (HC1).
It is an association, never proof of cause: customers who like a company may simply be the ones who
already shop there more; every output that shows it says so (`ASSOCIATION_NOTE`). See
docs/methods.md, "Key drivers" (Outcomes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from numpy.typing import ArrayLike
from scipy.stats import chi2

from cxloop.tasks.stats import rng_for, wilson, z_value

GROUPS = ("promoter", "passive", "detractor")
CONTRIBUTION = {"promoter": 100.0, "passive": 0.0, "detractor": -100.0}
ASSOCIATION_NOTE = {
    "en": "An association between the score and later behaviour, not proof that raising the score causes it.",
    "zh": "这是评分与后续行为之间的相关关系，并不能证明提高评分会带来这些结果。",
}


def nps_groups(scores: ArrayLike) -> np.ndarray:
    """promoter (9-10), passive (7-8), detractor (0-6); None where there is no score."""
    s = np.asarray(scores, dtype=float)
    out = np.full(s.shape, None, dtype=object)
    out[s >= 9] = "promoter"
    out[(s >= 7) & (s < 9)] = "passive"
    out[s < 7] = "detractor"
    return out


@dataclass(frozen=True)
class GroupOutcome:
    group: str
    n: int
    value: float | None  # mean (or rate in % for a flag)
    low: float | None
    high: float | None


@dataclass(frozen=True)
class PointValue:
    """The outcome per customer associated with one NPS point, with its interval."""

    per_point: float
    low: float
    high: float
    n: int


def _bootstrap_mean(values: np.ndarray, resamples: int, rng: np.random.Generator,
                    confidence: float) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean, from resampled counts of the distinct values."""
    uniq, counts = np.unique(values, return_counts=True)
    draws = rng.multinomial(values.size, counts / values.size, size=resamples)
    means = draws @ uniq / values.size
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def outcome_by_group(scores: ArrayLike, outcome: ArrayLike, *, flag: bool = False, confidence: float = 0.95,
                     resamples: int = 2000, seed_key: Sequence[object] = ()) -> list[GroupOutcome]:
    """The outcome's mean per NPS group with its interval; for a 0/1 flag, its rate in %."""
    groups = nps_groups(scores)
    y = np.asarray(outcome, dtype=float)
    rng = rng_for("outcomes", *seed_key)
    out = []
    for group in GROUPS:
        vals = y[(groups == group) & ~np.isnan(y)]
        if vals.size == 0:
            out.append(GroupOutcome(group, 0, None, None, None))
        elif flag:
            lo, hi = wilson(float(vals.sum()), float(vals.size), confidence)
            out.append(GroupOutcome(group, int(vals.size), float(vals.mean() * 100), lo, hi))
        else:
            lo2, hi2 = _bootstrap_mean(vals, resamples, rng, confidence)
            out.append(GroupOutcome(group, int(vals.size), float(vals.mean()), lo2, hi2))
    return out


def value_of_one_point(scores: ArrayLike, outcome: ArrayLike, confidence: float = 0.95) -> PointValue | None:
    """Slope of the outcome on the NPS contribution (+100/0/-100), HC1-robust interval; None when
    fewer than two groups are present."""
    groups = nps_groups(scores)
    y = np.asarray(outcome, dtype=float)
    ok = (groups != None) & ~np.isnan(y)  # noqa: E711 - elementwise on an object array
    contrib = np.array([CONTRIBUTION[g] for g in groups[ok]])
    if np.unique(contrib).size < 2:
        return None
    fit = sm.OLS(y[ok], sm.add_constant(contrib)).fit(cov_type="HC1")
    slope, se = float(fit.params[1]), float(fit.bse[1])
    half = z_value(confidence) * se
    return PointValue(per_point=slope, low=slope - half, high=slope + half, n=int(ok.sum()))


def rate_per_thousand(events: int, exposures: int,
                      confidence: float = 0.95) -> tuple[float, float, float] | None:
    """Events per 1,000 exposures (complaints per 1,000 orders) with the exact Poisson (Garwood)
    interval; None without exposures."""
    if exposures <= 0:
        return None
    alpha = 1 - confidence
    lo = 0.0 if events == 0 else chi2.ppf(alpha / 2, 2 * events) / 2
    hi = chi2.ppf(1 - alpha / 2, 2 * events + 2) / 2
    scale = 1000.0 / exposures
    return events * scale, float(lo) * scale, float(hi) * scale


def join_outcomes(responses: pd.DataFrame, outcomes: pd.DataFrame, window_days: int,
                  measures: Sequence[str], flags: Sequence[str] = ()) -> pd.DataFrame:
    """Each response with its customer's outcomes in the `window_days` after it was submitted.

    `responses` has response_id, customer_id, submitted_at (and any score columns); `outcomes` has
    customer_id, date and the measure/flag columns. Measures are summed over the window (0 when the
    customer did nothing - a customer who never came back is the point, not a missing value); flags
    are 1 when set on any row in the window. Responses without a customer id are dropped: they
    cannot be joined.
    """
    if window_days <= 0:
        raise ValueError("window_days must be positive")
    resp = responses.dropna(subset=["customer_id"]).copy()
    resp["customer_id"] = resp["customer_id"].astype(str)
    out = outcomes.copy()
    out["customer_id"] = out["customer_id"].astype(str)
    start = pd.to_datetime(resp["submitted_at"], utc=True)
    resp["_start"] = start
    resp["_end"] = start + pd.Timedelta(days=window_days)
    out["_date"] = pd.to_datetime(out["date"], utc=True)
    merged = resp[["response_id", "customer_id", "_start", "_end"]].merge(out, on="customer_id", how="inner")
    inside = merged[(merged["_date"] > merged["_start"]) & (merged["_date"] <= merged["_end"])]
    agg: dict[str, str] = {m: "sum" for m in measures}
    agg.update({f: "max" for f in flags})
    summed = inside.groupby("response_id").agg(agg)
    result = resp.drop(columns=["_start", "_end"]).merge(summed, left_on="response_id", right_index=True,
                                                         how="left")
    for col in [*measures, *flags]:
        result[col] = result[col].fillna(0).astype(float)
    return result.reset_index(drop=True)
