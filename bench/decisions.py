"""How many false actions a month, and how fast a real shortfall is caught, for a model company.

    python bench/decisions.py [--cycles 200] [--trials 200] [--seed 1] [--quick]

A model company (below) answers surveys every month; each simulated month goes through the
project's own KPI code - `kpis.histograms`, `kpis.rows_from_histograms`, the control charts
(`kpis.apply_signals`) and the cycle's decisions (`kpis.judge_cycle`) - exactly as the KPI stage
runs them, and the results that act are counted. "Before" is the rule of the first wave: every
`missed` result (whole interval on the wrong side of a target, crossing cells holding their
parts' targets) and every `signal_low` on enough responses opened an action.

The model company: 6 departments owning 8 journey stages, 20 touchpoints nested in the stages
(sizes from 0.4% to 15% of responses), 8 channels, 12 regions, 4 segments, and three crossings
(department x region, journey stage x channel, touchpoint x region): ~430 scope values. Targets
name every base scope (overall, department, journey stage, touchpoint, channel, region) for NPS,
CSAT, CES top-box and complaint rate. Answers are drawn with the same truth everywhere (so every
scope sits exactly at, or 1 or 3 points above, its target), except where a scenario plants a
shortfall.

Verdict aims run `bench/effects.py`'s worlds through `tasks.effects.estimate_effect`.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cxloop.config import Settings  # noqa: E402
from cxloop.periods import shift_period  # noqa: E402
from cxloop.tasks import kpis  # noqa: E402

KPIS = ("nps", "csat", "ces_top", "complaint_rate")
JUDGED_SCOPES = ("overall", "department", "journey_stage", "touchpoint", "channel", "region")
CROSSINGS = [["department", "region"], ["journey_stage", "channel"], ["touchpoint", "region"]]
STAGE_OWNER = {"s0": "d0", "s1": "d0", "s2": "d1", "s3": "d2", "s4": "d2", "s5": "d3", "s6": "d4", "s7": "d5"}
TOUCHPOINTS = {f"t{i}": f"s{i % 8}" for i in range(20)}  # touchpoint -> its stage
TOUCHPOINT_WEIGHT = np.array([1 / (i + 1) ** 0.9 for i in range(20)])
CHANNEL_WEIGHT = np.array([8, 6, 5, 4, 3, 2, 1, 1], dtype=float)
REGION_WEIGHT = np.array([1 / (i + 1) ** 0.7 for i in range(12)])
# Truth at target: NPS 30 (45% promoters, 15% detractors), CSAT 70%, CES top-box 60%, complaints 8%.
NPS_TARGET, CSAT_TARGET, CES_TARGET, COMPLAINT_TARGET = 30.0, 70.0, 60.0, 8.0
PASSIVES = 0.40


def settings(offset: float = 0.0) -> Settings:
    """The model company's config: targets on every base scope, `offset` points below the truth."""
    targets = []
    for scope in JUDGED_SCOPES:
        for kpi, value in (("nps", NPS_TARGET), ("csat", CSAT_TARGET), ("ces_top", CES_TARGET),
                           ("complaint_rate", COMPLAINT_TARGET)):
            target = value + offset if kpi == "complaint_rate" else value - offset
            targets.append({"kpi": kpi, "scope": scope, "value": target})
    return Settings.model_validate({
        "targets": targets,
        "kpis": {"crossings": CROSSINGS, "bootstrap_resamples": 99, "history_cycles": 12},
    })


@dataclass
class World:
    """Who answers and how: responses per month, and per touchpoint any NPS shortfall."""

    responses: int
    nps_shift: dict[str, float]  # touchpoint -> NPS points below the truth


def month(world: World, rng: np.random.Generator) -> pd.DataFrame:
    """One month's responses with the canonical columns the KPI stage reads."""
    n = world.responses
    tp_names = np.array(list(TOUCHPOINTS))
    tp = tp_names[rng.choice(20, n, p=TOUCHPOINT_WEIGHT / TOUCHPOINT_WEIGHT.sum())]
    stage = np.vectorize(TOUCHPOINTS.__getitem__)(tp)
    dept = np.vectorize(STAGE_OWNER.__getitem__)(stage)
    channel = np.array([f"c{i}" for i in range(8)])[rng.choice(8, n, p=CHANNEL_WEIGHT / CHANNEL_WEIGHT.sum())]
    region = np.array([f"r{i}" for i in range(12)])[rng.choice(12, n, p=REGION_WEIGHT / REGION_WEIGHT.sum())]
    segment = np.array(["new", "returning", "vip", "business"])[rng.integers(0, 4, n)]
    nps_level = np.full(n, NPS_TARGET)
    for name, shift in world.nps_shift.items():
        nps_level[tp == name] -= shift
    share = nps_level / 100
    promoter = (1 - PASSIVES + share) / 2
    u = rng.random(n)
    nps = np.where(u < promoter, rng.choice([9, 10], n),
                   np.where(u < promoter + PASSIVES, rng.choice([7, 8], n), rng.choice([0, 3, 5, 6], n)))
    csat = np.where(rng.random(n) < CSAT_TARGET / 100, rng.choice([4, 5], n), rng.choice([1, 2, 3], n))
    ces = np.where(rng.random(n) < CES_TARGET / 100, rng.choice([5, 6, 7], n), rng.choice([1, 2, 3, 4], n))
    complaint = rng.random(n) < COMPLAINT_TARGET / 100
    return pd.DataFrame({"department": dept, "journey_stage": stage, "touchpoint": tp, "channel": channel,
                         "region": region, "segment": segment, "nps": nps.astype(float),
                         "csat": csat.astype(float), "ces": ces.astype(float),
                         "is_complaint": complaint.astype(float)})


class Company:
    """Months in order through the project's KPI code, keeping the history charts and pooling need."""

    def __init__(self, cfg: Settings, start: str = "2020-01") -> None:
        self.cfg = cfg
        self.period = start
        self.history: kpis.History = {}
        self.previous: dict[tuple[str, str, str], kpis.KpiRow] = {}

    def cycle(self, df: pd.DataFrame) -> list[kpis.KpiRow]:
        hist = kpis.histograms(df, self.cfg)
        rows = kpis.rows_from_histograms(hist, self.cfg, period=self.period)
        kpis.apply_signals(rows, self.history)
        old = [self._old_rule(r) for r in rows]
        kpis.judge_cycle(rows, self.previous, self.cfg, lambda columns: [df])
        for r, was in zip(rows, old, strict=True):
            r.stats["old_rule"] = was
        first = shift_period(self.period, -self.cfg.kpis.history_cycles + 1)
        for r in rows:
            if r.value is not None:
                series = [h for h in self.history.get(r.key, []) if h[0] >= first]
                self.history[r.key] = [*series, (self.period, r.value, r.n)]
        self.previous = {r.key: r for r in rows}
        self.period = shift_period(self.period, 1)
        return rows

    def _old_rule(self, row: kpis.KpiRow) -> bool:
        """The first wave's rule: missed (crossings holding their parts' targets), or signal_low."""
        if row.kpi not in KPIS:
            return False
        target = _old_target(self.cfg, row)
        status = kpis.judge(row.kpi, row.value, row.ci_low, row.ci_high, row.n, target, 30)
        return status == "missed" or (row.signal == "signal_low" and row.n >= 30)


def _old_target(cfg: Settings, row: kpis.KpiRow) -> float | None:
    if kpis.CROSS_SEP not in row.scope:
        return row.target
    for scope in row.scope.split(kpis.CROSS_SEP):
        found = kpis.target_for(cfg, row.kpi, scope, "")
        if found:
            return found[0]
    return None


def acting(rows: list[kpis.KpiRow]) -> list[kpis.KpiRow]:
    return [r for r in rows if (r.stats.get("decision") or {}).get("act")]


def judged(rows: list[kpis.KpiRow]) -> int:
    return sum(1 for r in rows if (r.stats.get("decision") or {}).get("judged"))


# --- the scenarios ---------------------------------------------------------------------------

@dataclass
class NullResult:
    responses: int
    offset: float
    cycles: int
    judged: float
    false_actions: float
    old_false_actions: float
    chart_points: int
    chart_signals: int
    seconds: float


def run_null(responses: int, offset: float, cycles: int, seed: int, warmup: int = 12) -> NullResult:
    """Every scope at (or `offset` above) its target for `cycles` months: every action is false."""
    rng = np.random.default_rng(seed)
    company = Company(settings(offset))
    world = World(responses, {})
    started = time.perf_counter()
    false = old = judged_total = points = signals = 0
    for i in range(warmup + cycles):
        rows = company.cycle(month(world, rng))
        if i < warmup:
            continue
        false += len(acting(rows))
        old += sum(1 for r in rows if r.stats["old_rule"])
        judged_total += judged(rows)
        charted = [r for r in rows if r.stats.get("chart")]
        points += len(charted)
        signals += sum(1 for r in charted if r.signal)
    return NullResult(responses, offset, cycles, judged_total / cycles, false / cycles, old / cycles,
                      points, signals, time.perf_counter() - started)


def caught(rows: list[kpis.KpiRow], touchpoint: str) -> bool:
    """An action on the NPS of the touchpoint itself (not on a broader scope instead)."""
    return any(r.key == ("nps", "touchpoint", touchpoint) for r in acting(rows))


def run_power(trials: int, seed: int, shortfall: float = 12.0, target_n: int = 400,
              responses: int = 20_000, offset: float = 0.0, histories: int = 10) -> dict[str, Any]:
    """A touchpoint of ~`target_n` responses a month drops `shortfall` NPS points and stays down:
    caught in its first cycle, within two; and how many NPS actions the first cycle opens.

    Each trial starts from one of `histories` companies that ran 7 months at target (control
    charts need 6 earlier points; pooling needs the previous month), copied."""
    tp_share = TOUCHPOINT_WEIGHT / TOUCHPOINT_WEIGHT.sum()
    tp = f"t{int(np.argmin(np.abs(tp_share * responses - target_n)))}"
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    warm = []
    for _ in range(histories):
        company = Company(settings(offset))
        for _ in range(7):
            company.cycle(month(World(responses, {}), rng))
        warm.append(company)
    first = second = 0
    actions: list[int] = []
    n_seen = []
    down = World(responses, {tp: shortfall})
    for i in range(trials):
        company = copy.deepcopy(warm[i % histories])
        rows1 = company.cycle(month(down, rng))
        rows2 = company.cycle(month(down, rng))
        n_seen.append(next(r.n for r in rows1 if r.key == ("nps", "touchpoint", tp)))
        hit1, hit2 = caught(rows1, tp), caught(rows2, tp)
        first += hit1
        second += hit1 or hit2
        actions.append(len([r for r in acting(rows1) if r.kpi == "nps"]))
    return {"touchpoint": tp, "n": float(np.mean(n_seen)), "first": first / trials,
            "within_two": second / trials, "nps_actions_first_cycle": float(np.mean(actions)),
            "seconds": time.perf_counter() - started}


def run_nested(trials: int, seed: int, responses: int = 20_000) -> dict[str, Any]:
    """The issue's company: every scope 1 point above target, one large touchpoint collapses
    (NPS 31 -> 8 from month 4, so its stage and department fall too): actions opened in months 4-6."""
    rng = np.random.default_rng(seed)
    tp = "t0"  # the largest touchpoint: its stage and department miss too
    opened_total, nps_actions, explained = [], [], []
    started = time.perf_counter()
    for _ in range(trials):
        company = Company(settings(1.0))
        keys: set[tuple[str, str, str]] = set()
        nps_keys: set[tuple[str, str, str]] = set()
        for m in range(6):
            world = World(responses, {tp: 23.0} if m >= 3 else {})
            rows = company.cycle(month(world, rng))
            for r in acting(rows):
                keys.add(r.key)
                if r.kpi == "nps":
                    nps_keys.add(r.key)
            if m == 3:
                explained.append(sum(1 for r in rows if (r.stats.get("decision") or {}).get("explained_by")))
        opened_total.append(len(keys))
        nps_actions.append(len(nps_keys))
    return {"actions": float(np.mean(opened_total)), "nps_actions": float(np.mean(nps_actions)),
            "one_action_share": float(np.mean([k == 1 for k in nps_actions])),
            "explained_first_month": float(np.mean(explained)), "seconds": time.perf_counter() - started}


def run_verdicts(trials: int, seed: int) -> list[tuple[str, float, str]]:
    import importlib

    effects = importlib.import_module("bench.effects")
    out = []
    for label, world, aim in effects.VERDICT_AIMS:
        r = effects.run("null", trials, seed=seed, resamples=299, **world)
        out.append((f"false improved: {label}", r.improved, aim))
    r = effects.run("effect", trials, seed=seed, resamples=299)
    out.append(("+15 NPS, n=400, 10 comparison scopes: improved", r.improved, ">= 80%"))
    r = effects.run("effect", trials, seed=seed, resamples=299, history=0)
    out.append(("+15 NPS opened on a first-cycle miss: improved", r.improved, "not credited"))
    return out


JOBS: dict[str, Callable[..., Any]] = {"null": run_null, "power": run_power, "nested": run_nested,
                                       "verdicts": run_verdicts}


def _job(job: tuple[str, tuple[Any, ...]]) -> Any:
    name, args = job
    return JOBS[name](*args)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=200, help="simulated months per null scenario")
    ap.add_argument("--trials", type=int, default=200, help="trials of the shortfall and verdict scenarios")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=multiprocessing.cpu_count())
    ap.add_argument("--quick", action="store_true", help="a few cycles and trials: a smoke run")
    args = ap.parse_args(argv)
    cycles, trials = (12, 10) if args.quick else (args.cycles, args.trials)
    nulls = [(responses, offset, cycles if responses < 100_000 else max(cycles // 4, 4))
             for responses in (5_000, 20_000, 100_000) for offset in (0.0, 1.0, 3.0)]
    nested_trials = max(trials // 4, 5)
    jobs: list[tuple[str, tuple[Any, ...]]] = [
        ("power", (trials, args.seed + 1)), ("nested", (nested_trials, args.seed + 2)),
        *[("null", (r, o, c, args.seed)) for r, o, c in nulls], ("verdicts", (trials, args.seed + 3))]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        results = pool.map(_job, jobs, chunksize=1)
    power, nested, *rest = results
    null_results, verdicts = rest[:-1], rest[-1]

    print(f"False actions per cycle, every scope at or above its target (cycles: {cycles}; 100k: "
          f"{max(cycles // 4, 4)})")
    print(f"{'responses/month':>16}{'truth':>14}{'judged':>8}{'before':>9}{'after':>8}"
          f"{'chart pts':>11}{'signals':>9}{'sec':>7}")
    for r in null_results:
        truth = "at target" if r.offset == 0 else f"+{r.offset:g} points"
        rate = r.chart_signals / max(r.chart_points, 1)
        print(f"{r.responses:>16,}{truth:>14}{r.judged:>8.0f}{r.old_false_actions:>9.2f}"
              f"{r.false_actions:>8.2f}{r.chart_points:>11,}{rate:>9.2%}{r.seconds:>7.0f}")
    print("  judged: results a target names, per cycle; before: the first wave's rule (missed or "
          "signal_low), after: results that act (aim <= 0.33 at 20k)")
    print("  signals: control-chart signals per chart point, 6-12 points of history (aim <= 0.5%)")
    print()
    p = power
    print(f"A 12-point NPS shortfall on touchpoint {p['touchpoint']} (n ~ {p['n']:.0f}), 20k responses a "
          f"month, {trials} trials [{p['seconds']:.0f} s]")
    print(f"  caught in its first cycle: {p['first']:.0%}; within two cycles: {p['within_two']:.0%} "
          f"(aim >= 80%); NPS actions in the first cycle: {p['nps_actions_first_cycle']:.2f}")
    print(f"Nested collapse: touchpoint t0 31 -> 8 from month 4, every scope +1 ({nested_trials} trials, "
          f"six months) [{nested['seconds']:.0f} s]")
    print(f"  NPS actions: {nested['nps_actions']:.2f} (aim: one; exactly one in "
          f"{nested['one_action_share']:.0%}); all actions: {nested['actions']:.2f}; broader results "
          f"attached as context in month 4: {nested['explained_first_month']:.1f}")
    print()
    print(f"Verdicts ({trials} trials each, tasks.effects.estimate_effect)")
    for label, share, aim in verdicts:
        print(f"  {label:<58}{share:>7.1%}   aim {aim}")
    print(f"\n{time.perf_counter() - started:.0f} s in all on {args.workers} worker processes")


if __name__ == "__main__":
    main()
