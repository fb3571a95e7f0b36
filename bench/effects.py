"""Simulation harness for the effect judgement: feedback with known truth, verdict rates printed.

    python bench/effects.py [--trials 1000] [--resamples 999] [--seed 1]

Each trial draws NPS answers (promoters/passives/detractors) for one treated scope and its
comparison scopes over some earlier cycles, the baseline cycle and the follow-up cycle, then
runs `tasks.effects.estimate_effect` exactly as the re-measure stage does. The scenarios are
the done-when list of issue 6; `tests/test_effects_simulation.py` runs them with fewer trials.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cxloop.tasks.effects import EffectEstimate, ScopeCells, estimate_effect, judge  # noqa: E402

PASSIVES = 0.35


def nps_answers(nps: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """n per-response NPS scores (+100/0/-100) from a population with the given NPS."""
    share = nps / 100
    p, d = (1 - PASSIVES + share) / 2, (1 - PASSIVES - share) / 2
    if min(p, d) < 0:
        raise ValueError(f"NPS {nps} is not reachable with {PASSIVES:.0%} passives")
    counts = rng.multinomial(n, [p, PASSIVES, d])
    return np.repeat(np.array([100.0, 0.0, -100.0]), counts)


@dataclass
class Trial:
    treated: ScopeCells
    controls: list[ScopeCells]


def _series(levels: list[float], n: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [nps_answers(v, n, rng) for v in levels]


def make_trial(scenario: str, rng: np.random.Generator, *, n: int = 400, comparison: int = 10,
               history: int = 3, wobble: float = 0.0, drift: float = 0.0) -> Trial:
    """One world with known truth. Scenarios: effect, null, shock, worst_of_20, collapse.

    `drift`: the comparison scopes move this many points a cycle (the treated scope does not)."""
    if scenario == "collapse":
        n = 600
        t = _series([36.0] * history + [12.0, 40.0], n, rng)
        ctrl_levels = rng.uniform(20, 40, comparison)
        ctrls = [_series([lv] * (history + 2), n, rng) for lv in ctrl_levels]
    elif scenario == "worst_of_20":
        scopes = [_series([25.0] * (history + 2), n, rng) for _ in range(20)]
        worst = int(np.argmin([s[history].mean() for s in scopes]))
        t = scopes.pop(worst)
        ctrls = scopes
    else:
        levels = rng.uniform(10, 40, comparison + 1)
        shock = 8.0 if scenario == "shock" else 0.0
        effect = {"effect": 15.0, "effect_n1000": 10.0}.get(scenario, 0.0)
        cycles = []
        for i, lv in enumerate(levels):
            path = [lv + rng.normal(0, wobble) + (drift * t if i else 0.0) for t in range(history + 2)]
            path[-1] += shock + (effect if i == 0 else 0.0)
            cycles.append(_series(path, n, rng))
        t, ctrls = cycles[0], cycles[1:]

    def cells(c: list[np.ndarray], name: str) -> ScopeCells:
        return ScopeCells(history=c[:history], pre=c[history], post=c[history + 1], name=name)

    return Trial(cells(t, "treated"), [cells(c, f"c{i}") for i, c in enumerate(ctrls)])


@dataclass
class Rates:
    scenario: str
    trials: int
    improved: float
    naive_improved: float
    mean_effect: float
    mean_change: float
    seconds: float


def run(scenario: str, trials: int, *, seed: int = 1, resamples: int = 999, **world: float) -> Rates:
    """Share of trials judged improved by the DiD estimate and by the naive pre/post change."""
    rng = np.random.default_rng(seed)
    improved = naive = 0
    effects, changes = [], []
    started = time.perf_counter()
    for _ in range(trials):
        if scenario == "effect_n1000":
            trial = make_trial(scenario, rng, n=1000, **world)  # type: ignore[arg-type]
        else:
            trial = make_trial(scenario, rng, **world)  # type: ignore[arg-type]
        est: EffectEstimate = estimate_effect(trial.treated, trial.controls, resamples=resamples, seed=rng)
        improved += est.verdict == "improved"
        naive += judge(est.change_ci_low, est.change_ci_high) == "improved"
        effects.append(est.effect or 0.0)
        changes.append(est.change or 0.0)
    return Rates(scenario, trials, improved / trials, naive / trials, float(np.mean(effects)),
                 float(np.mean(changes)), time.perf_counter() - started)


SCENARIOS = {
    "effect": "real +15 NPS, n=400 per scope and cycle, 10 comparison scopes (target >= 80%)",
    "effect_n1000": "real +10 NPS, n=1000 (target >= 80%)",
    "null": "no real effect (target <= 5%)",
    "shock": "company-wide +8 in the follow-up cycle, no effect (DiD <= 5%; naive pre/post credits it)",
    "worst_of_20": "scope chosen as the worst of 20 identical scopes by chance (target <= 5%)",
    "collapse": "NPS really collapsed 36 -> 12 at n=600 and recovered to 40 (should be improved)",
}


# Issue 16's verdict aims: (label, world, what "improved" should be). Comparison scopes that drift
# 3 points a cycle while the treated one does not; two comparison scopes that each wobble.
VERDICT_AIMS: list[tuple[str, dict[str, float], str]] = [
    ("null, 2 cmp drifting -3", {"comparison": 2, "drift": -3.0}, "<= 5%"),
    ("null, 1 cmp drifting -3", {"comparison": 1, "drift": -3.0}, "<= 5%"),
    ("null, 10 cmp drift -3, h12", {"drift": -3.0, "history": 12}, "<= 5%"),
    ("null, 10 cmp drift -3, h3", {"drift": -3.0}, "a known limit: 3 cycles cannot show a trend"),
    ("null, 2 cmp, wobble sd 3", {"comparison": 2, "wobble": 3.0}, "<= 5%"),
]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--resamples", type=int, default=999)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    print(f"{'scenario':<28}{'trials':>7}{'DiD improved':>14}{'naive pre/post':>16}"
          f"{'mean effect':>13}{'mean change':>13}{'sec':>7}")
    extra: list[tuple[str, dict[str, float]]] = [
        ("effect (no history)", {"history": 0}), ("null, wobble sd 3", {"wobble": 3.0}),
        ("null, 3 comparisons", {"comparison": 3}),
    ]
    extra += [(label, world) for label, world, _ in VERDICT_AIMS]
    for name in SCENARIOS:
        r = run(name, args.trials, seed=args.seed, resamples=args.resamples)
        print(f"{name:<28}{r.trials:>7}{r.improved:>14.1%}{r.naive_improved:>16.1%}"
              f"{r.mean_effect:>13.1f}{r.mean_change:>13.1f}{r.seconds:>7.1f}")
    for label, world in extra:
        base = "effect" if label.startswith("effect") else "null"
        r = run(base, args.trials, seed=args.seed, resamples=args.resamples, **world)
        print(f"{label:<28}{r.trials:>7}{r.improved:>14.1%}{r.naive_improved:>16.1%}"
              f"{r.mean_effect:>13.1f}{r.mean_change:>13.1f}{r.seconds:>7.1f}")
    print()
    for name, text in SCENARIOS.items():
        print(f"  {name}: {text}")


if __name__ == "__main__":
    main()
