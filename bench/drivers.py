"""Key drivers and outcomes on real survey data, checked against exact Shapley regression, and timed.

    python bench/drivers.py [--data ../shared/data] [--rows 1000000] [--resamples 400]

1. Airline passenger satisfaction (Kaggle teejmahal20, test split, 25,976 passengers): 14 service
   ratings (1-5, 0 = not rated -> missing) -> satisfied (0/1). The driver ranking with intervals,
   ties and the priority quadrant, as the report shows it.
2. The check: on the passengers who rated all 14 services, relative weights against the exact
   Shapley decomposition of R^2 over all 2^14 = 16,384 subsets, computed here independently (normal
   equations from numpy's covariance, one subset at a time) - and `tasks.drivers.shapley_r2` against
   the same.
3. Time for 14 drivers x `--rows` responses (synthetic, 10% not rated), the analysis alone.
4. Garden-centre NPS survey (BenaventC/NPSgame, 13,954 answers): visits (NbPassageKS) and basket
   value (CaTicket) per NPS group, and what one NPS point is associated with. Those columns are the
   customers' *earlier* behaviour, so this is an association, not an effect of the score.
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import combinations
from math import factorial
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cxloop.tasks.drivers import DriverAnalysis, analyse_drivers, shapley_r2  # noqa: E402
from cxloop.tasks.outcomes import ASSOCIATION_NOTE, outcome_by_group, value_of_one_point  # noqa: E402

AIRLINE_DRIVERS = [
    "Inflight wifi service", "Departure/Arrival time convenient", "Ease of Online booking", "Gate location",
    "Food and drink", "Online boarding", "Seat comfort", "Inflight entertainment", "On-board service",
    "Leg room service", "Baggage handling", "Checkin service", "Inflight service", "Cleanliness",
]


def print_analysis(a: DriverAnalysis) -> None:
    print(f"outcome {a.outcome}: n={a.n}, R^2={a.r2:.3f} (95% CI {a.r2_low:.3f} to {a.r2_high:.3f})")
    print(f"{'rank':>5} {'driver':34} {'n':>6} {'share of R^2 % (95% CI)':>24} "
          f"{'mean (95% CI)':>20} quadrant")
    for d in a.ranked():
        rank = f"={d.rank}" if d.tied else str(d.rank)
        share = f"{d.share:5.1f} ({d.share_low:4.1f}-{d.share_high:4.1f})"
        mean = f"{d.mean:.2f} ({d.mean_low:.2f}-{d.mean_high:.2f})"
        print(f"{rank:>5} {d.driver[:34]:34} {d.n:>6} {share:>24} {mean:>20} {d.quadrant}")
    for name, why in a.excluded.items():
        print(f"  left out: {name}: {why}")


def independent_shapley(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Exact Shapley values of R^2 from the covariance matrix, subset by subset (no shared code)."""
    k = x.shape[1]
    cov = np.cov(np.column_stack([y, x]), rowvar=False)
    var_y = cov[0, 0]
    r2 = np.zeros(1 << k)
    for size in range(1, k + 1):
        for subset in combinations(range(k), size):
            idx = [i + 1 for i in subset]
            sxx = cov[np.ix_(idx, idx)]
            sxy = cov[idx, 0]
            coef = np.linalg.lstsq(sxx, sxy, rcond=None)[0]
            r2[sum(1 << i for i in subset)] = float(sxy @ coef) / var_y
    phi = np.zeros(k)
    for mask in range(1 << k):
        s = bin(mask).count("1")
        if s == k:
            continue
        w = factorial(s) * factorial(k - s - 1) / factorial(k)
        for j in range(k):
            if not mask >> j & 1:
                phi[j] += w * (r2[mask | 1 << j] - r2[mask])
    return phi


def airline(data: Path, resamples: int) -> None:
    df = pd.read_csv(data / "airline_satisfaction" / "test.csv")
    ratings = df[AIRLINE_DRIVERS].astype(float).replace(0.0, np.nan).to_numpy()
    y = (df["satisfaction"] == "satisfied").astype(float).to_numpy()
    print(f"\n== Airline: 14 service ratings -> satisfied ({len(df)} passengers; "
          f"{np.isnan(ratings).any(axis=1).mean():.1%} left at least one service not rated)")
    t = time.perf_counter()
    a = analyse_drivers(y, ratings, AIRLINE_DRIVERS, scales=[(1, 5)] * 14, outcome_name="satisfied",
                        resamples=resamples, seed_key=("airline",))
    took = time.perf_counter() - t
    assert a is not None
    print_analysis(a)
    print(f"analysis with {resamples} bootstrap resamples: {took:.2f} s")

    complete = ~np.isnan(ratings).any(axis=1)
    yc, xc = y[complete], ratings[complete]
    print(f"\n== Check on the {int(complete.sum())} passengers who rated all 14: "
          "relative weights vs exact Shapley over 2^14 subsets")
    t = time.perf_counter()
    exact = independent_shapley(yc, xc)
    t_exact = time.perf_counter() - t
    ac = analyse_drivers(yc, xc, AIRLINE_DRIVERS, outcome_name="satisfied", resamples=resamples,
                         seed_key=("airline-complete",))
    assert ac is not None
    rw = np.array([d.weight for d in ac.drivers])
    ours = shapley_r2(np.corrcoef(np.column_stack([yc, xc]), rowvar=False))
    print(f"{'driver':34} {'relative wt':>11} {'exact Shapley':>13} {'diff':>8} {'RW 95% CI':>17}")
    for d, s in zip(ac.drivers, exact, strict=True):
        inside = "" if d.weight_low <= s <= d.weight_high else "  outside"
        print(f"{d.driver[:34]:34} {d.weight:11.4f} {s:13.4f} {d.weight - s:+8.4f} "
              f"({d.weight_low:.4f}-{d.weight_high:.4f}){inside}")
    order_rw = list(np.argsort(-rw))
    order_sh = list(np.argsort(-exact))
    print(f"sum: relative weights {rw.sum():.6f}, exact Shapley {exact.sum():.6f} (both = R^2)")
    print(f"max |relative weight - Shapley| = {np.abs(rw - exact).max():.4f} "
          f"({np.abs(rw - exact).max() / exact.sum():.1%} of R^2); same order: {order_rw == order_sh}; "
          f"top 5 the same: {set(order_rw[:5]) == set(order_sh[:5])}")
    print(f"tasks.drivers.shapley_r2 vs this independent computation: max diff "
          f"{np.abs(ours - exact).max():.2e}; exact Shapley took {t_exact:.1f} s")


def timing(rows: int, resamples: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(1, 6, size=(rows, 14)).astype(float)
    y = x @ rng.uniform(0, 1, 14) + rng.normal(0, 2, rows)
    x[rng.random(x.shape) < 0.1] = np.nan
    names = [f"d{i}" for i in range(14)]
    times = []
    for _ in range(3):
        t = time.perf_counter()
        analyse_drivers(y, x, names, scales=[(1, 5)] * 14, resamples=resamples, seed_key=("timing",))
        times.append(time.perf_counter() - t)
    print(f"\n== Time: 14 drivers x {rows:,} responses (10% not rated), {resamples} resamples")
    print(f"best of 3: {min(times):.2f} s (runs: {', '.join(f'{t:.2f}' for t in times)})")


def garden(data: Path) -> None:
    df = pd.read_csv(data / "nps_garden_retail" / "nps_utf8.csv", na_values=["NA"])
    df = df.dropna(subset=["nps"])
    print(f"\n== Garden centre: NPS vs visits and basket value ({len(df)} answers with a score)")
    print(f"{'outcome':22} {'group':10} {'n':>6} {'mean (95% CI)':>26}")
    for col, label in (("NbPassageKS", "visits (NbPassageKS)"), ("CaTicket", "basket EUR (CaTicket)")):
        vals = df[col].astype(float).to_numpy()
        for g in outcome_by_group(df["nps"].to_numpy(), vals, seed_key=("garden", col)):
            print(f"{label:22} {g.group:10} {g.n:>6} {g.value:10.2f} ({g.low:.2f} to {g.high:.2f})")
        v = value_of_one_point(df["nps"].to_numpy(), vals)
        assert v is not None
        print(f"{label:22} one NPS point ~ {v.per_point:+.4f} per customer (95% CI {v.low:+.4f} to "
              f"{v.high:+.4f}, n={v.n})")
    print(ASSOCIATION_NOTE["en"] + " Here the visits and basket are earlier behaviour, not later.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--resamples", type=int, default=400)
    args = parser.parse_args()
    airline(args.data, args.resamples)
    garden(args.data)
    timing(args.rows, args.resamples)


if __name__ == "__main__":
    main()
