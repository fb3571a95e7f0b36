"""KPI engine without a database: each KPI by hand, edge cases, scopes, targets, status, signals,
the exact merge of chunk histograms (hypothesis) and the calibration of `missed`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from cxloop.config import Settings, settings_from_dict
from cxloop.tasks import kpis, stats


def make_settings(**data: Any) -> Settings:
    return settings_from_dict(data, Path("/tmp"), env={})


def frame(rows: list[Any]) -> pd.DataFrame:
    cols = list(kpis.KPI_COLUMNS)
    df = pd.DataFrame(rows)
    for c in cols:
        if c not in df.columns:
            df[c] = None
    return df


def by_key(rows: list[kpis.KpiRow]) -> dict[tuple[str, str, str], kpis.KpiRow]:
    return {r.key: r for r in rows}


def compute(df: pd.DataFrame, settings: Settings | None = None) -> dict[tuple[str, str, str], kpis.KpiRow]:
    settings = settings or make_settings()
    return by_key(kpis.rows_from_histograms(kpis.histograms(df, settings), settings, period="2026-10"))


# ------------------------------------------------------------------------------------------
# Each KPI by hand
# ------------------------------------------------------------------------------------------


def test_nps_csat_ces_by_hand() -> None:
    # NPS: 4 promoters (9, 10, 10, 9), 3 passives (7, 8, 8), 3 detractors (0, 5, 6) -> 10.
    nps = [9, 10, 10, 9, 7, 8, 8, 0, 5, 6]
    csat = [5, 4, 4, 3, 2, 5, 1, None, None, None]  # 4 of 7 answered 4-5
    ces = [7, 6, 5, 4, 3, 2, 1, 7, None, None]  # mean 35/8, 4 of 8 answered 5-7
    df = frame([{"nps": a, "csat": b, "ces": c, "channel": "web"} for a, b, c in zip(nps, csat, ces,
                                                                                        strict=True)])
    r = compute(df)
    assert r[("nps", "overall", "all")].value == pytest.approx(10.0)
    assert r[("nps", "overall", "all")].n == 10
    lo, hi = stats.adjusted_wald_net(4, 3, 3)
    assert (r[("nps", "overall", "all")].ci_low, r[("nps", "overall", "all")].ci_high) == (lo, hi)
    assert r[("csat", "overall", "all")].value == pytest.approx(400 / 7)
    assert r[("csat", "overall", "all")].n == 7
    assert r[("csat", "overall", "all")].ci_low == pytest.approx(stats.wilson(4, 7)[0])
    assert r[("ces", "overall", "all")].value == pytest.approx(35 / 8)
    assert r[("ces", "overall", "all")].method == "bootstrap_poisson"
    assert r[("ces_top", "overall", "all")].value == pytest.approx(50.0)
    assert r[("responses", "overall", "all")].value == 10
    assert r[("responses", "overall", "all")].ci_low is None


def test_cx_index_and_nets_by_hand() -> None:
    rows = [
        {"cx_success": 7, "cx_effort": 6, "cx_emotion": 2},
        {"cx_success": 1, "cx_effort": 6, "cx_emotion": 4},
        {"cx_success": 5, "cx_effort": 2, "cx_emotion": 7},
        {"cx_success": 6, "cx_effort": None, "cx_emotion": 6},
    ]
    r = compute(frame(rows))
    success = (2 - 1) / 4 * 100  # 7, 6 positive; 1 negative
    effort = (2 - 1) / 3 * 100
    emotion = (2 - 1) / 4 * 100
    assert r[("cx_success", "overall", "all")].value == pytest.approx(success)
    assert r[("cx_effort", "overall", "all")].value == pytest.approx(effort)
    assert r[("cx_effort", "overall", "all")].n == 3
    assert r[("cx_index", "overall", "all")].value == pytest.approx((success + effort + emotion) / 3)
    assert r[("cx_index", "overall", "all")].method == "delta"
    assert r[("cx_index", "overall", "all")].n == 4


def test_complaint_rate_and_times_by_hand() -> None:
    rows = [
        {"is_complaint": True, "first_response_hours": 1.0, "resolution_hours": 10.0},
        {"is_complaint": False, "first_response_hours": 2.0, "resolution_hours": 20.0},
        {"is_complaint": False, "first_response_hours": 30.0, "resolution_hours": 100.0},
        {"is_complaint": None, "first_response_hours": 4.0, "resolution_hours": 80.0},
        {"is_complaint": True, "first_response_hours": None, "resolution_hours": None},
    ]
    s = make_settings(kpis={"first_response_sla_hours": 24, "resolution_sla_hours": 72})
    r = compute(frame(rows), s)
    assert r[("complaint_rate", "overall", "all")].value == pytest.approx(50.0)
    assert r[("complaint_rate", "overall", "all")].n == 4
    assert r[("first_response_hours", "overall", "all")].value == pytest.approx(3.0)  # median 1,2,4,30
    assert r[("first_response_hours", "overall", "all")].n == 4
    assert r[("first_response_p90", "overall", "all")].value == pytest.approx(30.0)
    assert r[("first_response_sla", "overall", "all")].value == pytest.approx(75.0)
    assert r[("resolution_hours", "overall", "all")].value == pytest.approx(50.0)  # (20 + 80) / 2
    assert r[("resolution_sla", "overall", "all")].value == pytest.approx(50.0)


def test_durations_from_timestamps_when_not_precomputed() -> None:
    t0 = pd.Timestamp("2026-10-01T00:00:00Z")
    df = pd.DataFrame({
        "opened_at": [t0, t0, t0],
        "first_response_at": [t0 + pd.Timedelta(hours=2), t0 + pd.Timedelta(hours=5),
                              t0 - pd.Timedelta(hours=1)],
        "resolved_at": [None, t0 + pd.Timedelta(hours=50), None],
    })
    assert kpis.kpi_value("first_response_hours", df) == (3.5, 2)  # the negative duration is dropped
    assert kpis.kpi_value("resolution_hours", df) == (50.0, 1)


def test_time_bins_round_trip() -> None:
    hours = np.array([0.0, 0.04, 9.96, 10.2, 57.3, 99.9, 100.4, 999.6, 1000.0, 1234.0])
    labels = kpis.time_labels(kpis.time_codes(hours))
    assert list(labels) == [0.0, 0.0, 10.0, 10.0, 57.5, 100.0, 100.0, 1000.0, 1000.0, 1230.0]
    assert list(kpis.time_codes(np.array([np.nan, -1.0]))) == [-1, -1]


def test_theme_shares_for_topic_scope_only() -> None:
    rows = [
        {"themes": "delivery", "has_comment": True, "sentiment": "negative", "nps": 0},
        {"themes": "delivery,price", "has_comment": True, "sentiment": "positive", "nps": 10},
        {"themes": "price", "has_comment": True, "sentiment": "negative", "nps": 3},
        {"themes": "", "has_comment": True, "sentiment": "neutral", "nps": 8},
        {"themes": None, "has_comment": False, "sentiment": None, "nps": 9},
    ]
    df = frame(rows)
    r = compute(df)
    assert r[("theme_share", "topic", "delivery")].value == pytest.approx(50.0)  # 2 of 4 comments
    assert r[("theme_share", "topic", "delivery")].n == 4
    assert r[("theme_negative_share", "topic", "delivery")].value == pytest.approx(25.0)
    assert r[("theme_negative_share", "topic", "price")].value == pytest.approx(25.0)
    assert r[("nps", "topic", "delivery")].value == pytest.approx(0.0)  # one promoter, one detractor
    assert not any(k[0] in kpis.TOPIC_ONLY and k[1] != "topic" for k in r)
    assert kpis.kpi_value("theme_share", df, topic="delivery") == (50.0, 4)
    with pytest.raises(ValueError, match="topic"):
        kpis.response_scores("theme_share", df)


def test_response_scores_mean_is_the_kpi() -> None:
    rng = np.random.default_rng(1)
    n = 300
    df = pd.DataFrame({
        "nps": rng.integers(0, 11, n).astype(float), "csat": rng.integers(1, 6, n).astype(float),
        "ces": rng.integers(1, 8, n).astype(float), "cx_success": rng.integers(1, 8, n).astype(float),
        "cx_effort": rng.integers(1, 8, n).astype(float), "cx_emotion": rng.integers(1, 8, n).astype(float),
        "is_complaint": rng.random(n) < 0.1, "first_response_hours": rng.exponential(10, n),
        "resolution_hours": rng.exponential(50, n),
    })
    df.loc[::7, "csat"] = np.nan
    for kpi in ("nps", "csat", "ces", "ces_top", "cx_index", "cx_success", "cx_effort", "cx_emotion",
                "complaint_rate", "first_response_sla", "resolution_sla"):
        value, count = kpis.kpi_value(kpi, df)
        scores = kpis.response_scores(kpi, df)
        assert scores.size == count, kpi
        assert scores.mean() == pytest.approx(value), kpi


# ------------------------------------------------------------------------------------------
# Edge cases
# ------------------------------------------------------------------------------------------


def test_no_responses_gives_insufficient_overall_rows() -> None:
    r = compute(frame([]))
    nps = r[("nps", "overall", "all")]
    assert (nps.n, nps.value, nps.ci_low, nps.status) == (0, None, None, "insufficient")
    assert r[("responses", "overall", "all")].value == 0
    assert {k[1] for k in r} == {"overall"}


def test_all_promoters_and_single_response() -> None:
    r = compute(frame([{"nps": 10, "department": "a"}] * 40 + [{"nps": 3, "department": "b"}]))
    a = r[("nps", "department", "a")]
    assert a.value == 100.0 and a.ci_high == 100.0 and 80 < (a.ci_low or 0) < 90
    assert type(a.value) is float
    b = r[("nps", "department", "b")]
    assert (b.value, b.n, b.status) == (-100.0, 1, "insufficient")
    assert b.ci_low is not None and b.ci_high is not None and b.ci_high - b.ci_low > 100


def test_missing_and_out_of_scale_scores_are_not_counted() -> None:
    r = compute(frame([{"nps": 10}, {"nps": None}, {"nps": 11}, {"nps": 7.5}, {"nps": 0}]))
    assert r[("nps", "overall", "all")].n == 2
    assert r[("nps", "overall", "all")].value == 0.0
    assert r[("responses", "overall", "all")].value == 5


def test_blank_scope_values_are_dropped_and_crossings_join_values() -> None:
    df = frame([{"department": "logistics", "region": "east", "nps": 9},
                {"department": "logistics", "region": " ", "nps": 9},
                {"department": None, "region": "east", "nps": 9}])
    s = make_settings(kpis={"crossings": [["department", "region"]]})
    r = compute(df, s)
    assert r[("nps", "department", "logistics")].n == 2
    assert r[("nps", "region", "east")].n == 2
    assert r[("nps", "department x region", "logistics | east")].n == 1
    sf = kpis.scope_frame(df, "department x region")
    assert list(sf["scope_value"]) == ["logistics | east"]
    assert list(kpis.scope_frame(df, "overall")["scope_value"]) == ["all"] * 3
    topic = kpis.scope_frame(frame([{"themes": "a,b"}, {"themes": "b"}, {"themes": ""}]), "topic")
    assert sorted(topic["scope_value"]) == ["a", "b", "b"]
    with pytest.raises(ValueError, match="unknown scope"):
        kpis.scope_frame(df, "planet")


# ------------------------------------------------------------------------------------------
# Targets and status
# ------------------------------------------------------------------------------------------


def test_target_precedence_and_min_n() -> None:
    s = make_settings(
        kpis={"min_n": 30, "min_n_per_kpi": {"csat": 50}},
        targets=[
            {"kpi": "nps", "scope": "department", "value": 20},
            {"kpi": "nps", "scope": "department", "match": "logistics", "value": 10, "min_n": 80},
            {"kpi": "nps", "scope": "overall", "value": 30},
            {"kpi": "csat", "scope": "department", "value": 70},
            {"kpi": "nps", "scope": "region", "match": "east", "value": 5},
        ],
    )
    assert kpis.target_for(s, "nps", "department", "logistics") == (10.0, 80)
    assert kpis.target_for(s, "nps", "department", "sales") == (20.0, 30)
    assert kpis.target_for(s, "nps", "overall", "all") == (30.0, 30)
    assert kpis.target_for(s, "csat", "department", "sales") == (70.0, 50)
    assert kpis.target_for(s, "nps", "channel", "web") is None
    assert kpis.target_for(s, "ces", "department", "sales") is None
    # A crossing cell is judged only when a target names the crossing: its parts' targets are not
    # inherited (hundreds of cells nobody set a target for were most of the false actions).
    assert kpis.target_for(s, "nps", "department x region", "sales | east") is None
    crossed = make_settings(targets=[
        {"kpi": "nps", "scope": "department", "value": 20},
        {"kpi": "nps", "scope": "department x region", "value": 15},
        {"kpi": "nps", "scope": "department x region", "match": "sales | east", "value": 12},
    ])
    assert kpis.target_for(crossed, "nps", "department x region", "sales | east") == (12.0, 30)
    assert kpis.target_for(crossed, "nps", "department x region", "logistics | west") == (15.0, 30)
    assert "department x region" in kpis.scope_names(crossed)


@pytest.mark.parametrize(("kpi", "value", "lo", "hi", "n", "target", "status"), [
    ("nps", 25.0, 15.0, 35.0, 100, 20.0, "met"),
    ("nps", 20.0, 10.0, 30.0, 100, 20.0, "met"),
    ("nps", 15.0, 5.0, 25.0, 100, 20.0, "at_risk"),
    ("nps", 5.0, -3.0, 13.0, 100, 20.0, "missed"),
    ("nps", 5.0, -3.0, 13.0, 29, 20.0, "insufficient"),
    ("nps", 5.0, -3.0, 13.0, 100, None, "no_target"),
    ("nps", None, None, None, 0, 20.0, "insufficient"),
    ("complaint_rate", 8.0, 6.0, 10.0, 500, 10.0, "met"),
    ("complaint_rate", 11.0, 9.0, 13.0, 500, 10.0, "at_risk"),
    ("complaint_rate", 14.0, 12.0, 16.0, 500, 10.0, "missed"),
    ("resolution_hours", 80.0, 75.0, 90.0, 200, 72.0, "missed"),
    ("responses", 20.0, None, None, 20, 50.0, "missed"),
    ("responses", 60.0, None, None, 60, 50.0, "met"),
])
def test_each_status(kpi: str, value: float | None, lo: float | None, hi: float | None, n: int,
                     target: float | None, status: str) -> None:
    assert kpis.judge(kpi, value, lo, hi, n, target, 30) == status


def test_status_through_the_pipeline() -> None:
    rng = np.random.default_rng(4)
    rows = []
    # good: NPS ~ 60; noisy: NPS ~ 15 at n=60 (target 20 within the interval); bad: NPS ~ -40
    for dept, probs, n in (("good", [0.1, 0.2, 0.7], 200), ("noisy", [0.25, 0.35, 0.4], 60),
                           ("bad", [0.6, 0.2, 0.2], 200), ("tiny", [0.2, 0.2, 0.6], 10)):
        cls = rng.choice(3, n, p=probs)
        rows += [{"department": dept, "nps": [3, 8, 10][c]} for c in cls]
    s = make_settings(targets=[{"kpi": "nps", "scope": "department", "value": 20}])
    r = compute(frame(rows), s)
    assert r[("nps", "department", "good")].status == "met"
    assert r[("nps", "department", "noisy")].status in ("at_risk", "met")
    noisy = r[("nps", "department", "noisy")]
    assert noisy.ci_low is not None and noisy.ci_high is not None and noisy.ci_low < 20 < noisy.ci_high
    assert r[("nps", "department", "bad")].status == "missed"
    assert r[("nps", "department", "tiny")].status == "insufficient"
    assert r[("nps", "overall", "all")].status == "no_target"


# ------------------------------------------------------------------------------------------
# Signals from history
# ------------------------------------------------------------------------------------------


def _row(kpi: str, value: float, n: int = 400) -> kpis.KpiRow:
    return kpis.KpiRow(kpi=kpi, scope="overall", scope_value="all", n=n, value=value, ci_low=None,
                       ci_high=None, method="")


def test_signals_respect_direction() -> None:
    hist = [(f"2026-{m:02d}", float(v), 400) for m, v in enumerate([30, 33, 29, 32, 31, 28, 32, 30], 1)]
    drop = _row("nps", 10.0)
    kpis.apply_signals([drop], {drop.key: hist})
    assert drop.signal == "signal_low" and drop.stats["chart"]["chart"] == "xmr"
    rise = _row("nps", 50.0)
    kpis.apply_signals([rise], {rise.key: hist})
    assert rise.signal == "signal_high"
    wobble = _row("nps", 33.0)
    kpis.apply_signals([wobble], {wobble.key: hist})
    assert wobble.signal is None and wobble.stats["chart"]["rule"] is None
    # Complaint rate: a rise is the worse direction, charted on Laney p'.
    chist = [(f"2026-{m:02d}", v, 2000) for m, v in enumerate([5.0, 5.4, 4.8, 5.1, 5.3, 4.9, 5.2], 1)]
    worse = _row("complaint_rate", 9.0, 2000)
    kpis.apply_signals([worse], {worse.key: chist})
    assert worse.signal == "signal_low" and worse.stats["chart"]["chart"] == "laney_p"
    better = _row("complaint_rate", 2.0, 2000)
    kpis.apply_signals([better], {better.key: chist})
    assert better.signal == "signal_high"


def test_no_signal_without_enough_history_or_for_counts() -> None:
    short = _row("nps", -50.0)
    kpis.apply_signals([short], {short.key: [("2026-01", 30.0, 400)] * 5})
    assert short.signal is None and "chart" not in short.stats
    count = _row("responses", 10.0)
    kpis.apply_signals([count], {count.key: [(f"2026-{m:02d}", 1000.0, 1000) for m in range(1, 9)]})
    assert count.signal is None


# ------------------------------------------------------------------------------------------
# Histograms merge exactly
# ------------------------------------------------------------------------------------------

_opt_int = st.one_of(st.none(), st.integers(0, 10))
_row_strategy = st.fixed_dictionaries({
    "department": st.sampled_from(["a", "b", None, ""]),
    "region": st.sampled_from(["east", "west"]),
    "channel": st.sampled_from(["web", "app"]),
    "nps": _opt_int,
    "csat": st.one_of(st.none(), st.integers(1, 5)),
    "ces": st.one_of(st.none(), st.integers(1, 7)),
    "cx_success": st.one_of(st.none(), st.integers(1, 7)),
    "cx_effort": st.one_of(st.none(), st.integers(1, 7)),
    "cx_emotion": st.one_of(st.none(), st.integers(1, 7)),
    "is_complaint": st.one_of(st.none(), st.booleans()),
    "first_response_hours": st.one_of(st.none(), st.floats(0, 500, allow_nan=False)),
    "resolution_hours": st.one_of(st.none(), st.floats(0, 2000, allow_nan=False)),
    "themes": st.sampled_from(["", None, "delivery", "price", "delivery,price"]),
    "has_comment": st.booleans(),
    "sentiment": st.sampled_from(["negative", "positive", None]),
})


def _comparable(rows: list[kpis.KpiRow]) -> list[tuple[Any, ...]]:
    return sorted((r.kpi, r.scope, r.scope_value, r.n, r.value, r.ci_low, r.ci_high, r.status,
                   tuple(r.stats["bins"]), tuple(r.stats["counts"])) for r in rows)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_row_strategy, min_size=0, max_size=60),
       cuts=st.lists(st.integers(0, 60), max_size=4))
def test_merging_histograms_of_any_split_equals_the_whole(rows: list[dict[str, Any]],
                                                         cuts: list[int]) -> None:
    s = make_settings(kpis={"crossings": [["department", "region"]], "bootstrap_resamples": 99},
                      targets=[{"kpi": "nps", "scope": "department", "value": 0}])
    df = frame(rows)
    whole = kpis.rows_from_histograms(kpis.histograms(df, s), s)
    bounds = sorted({0, len(df), *[min(c, len(df)) for c in cuts]})
    parts = [kpis.histograms(df.iloc[a:b], s) for a, b in zip(bounds, bounds[1:], strict=False)]
    merged = kpis.rows_from_histograms(kpis.merge_histograms(parts), s)
    assert _comparable(merged) == _comparable(whole)


def test_stored_stats_recompute_and_merge() -> None:
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"nps": rng.integers(0, 11, 200).astype(float),
                       "resolution_hours": rng.exponential(40, 200)})
    first, second = df.iloc[:120], df.iloc[120:]
    r1 = compute(first)[("nps", "overall", "all")]
    r2 = compute(second)[("nps", "overall", "all")]
    whole = compute(df)[("nps", "overall", "all")]
    again = kpis.kpi_from_stats("nps", r1.stats)
    assert (again.value, again.n, again.ci_low) == (r1.value, r1.n, r1.ci_low)
    pooled = kpis.kpi_from_stats("nps", kpis.merge_stats(r1.stats, r2.stats))
    assert (pooled.value, pooled.n, pooled.ci_low, pooled.ci_high) == (
        whole.value, whole.n, whole.ci_low, whole.ci_high)
    p90 = compute(df)[("resolution_p90", "overall", "all")]
    assert kpis.kpi_from_stats("resolution_p90", p90.stats).value == p90.value


# ------------------------------------------------------------------------------------------
# Calibration (simulation, fixed seed)
# ------------------------------------------------------------------------------------------


def _nps_items(counts: np.ndarray) -> list[kpis.HistItem]:
    return [kpis.HistItem("nps", np.array([0.0, 7.0, 9.0]), np.array([d, m, p], dtype=float))
            for p, m, d in counts]


def test_no_true_difference_rarely_missed() -> None:
    rng = np.random.default_rng(2026)
    missed = total = 0
    for _ in range(50):  # 50 trials x 40 scopes at n=200, target = true NPS 20
        items = _nps_items(rng.multinomial(200, [0.4, 0.4, 0.2], size=40))
        for m in kpis.measure_many(items):
            missed += kpis.judge("nps", m.value, m.ci_low, m.ci_high, m.n, 20.0, 30) == "missed"
            total += 1
    assert missed / total < 0.05


def test_true_twelve_point_shortfall_mostly_missed() -> None:
    rng = np.random.default_rng(7)
    items = _nps_items(rng.multinomial(400, [0.34, 0.40, 0.26], size=400))  # true NPS 8, target 20
    hits = sum(kpis.judge("nps", m.value, m.ci_low, m.ci_high, m.n, 20.0, 30) == "missed"
               for m in kpis.measure_many(items))
    assert hits / 400 >= 0.8


def test_interval_coverage_of_proportions_and_means() -> None:
    rng = np.random.default_rng(9)
    covered = {"csat": 0, "ces": 0}
    trials = 300
    probs = np.array([0.05, 0.05, 0.1, 0.2, 0.25, 0.2, 0.15])
    true_ces = float(np.dot(np.arange(1, 8), probs))
    for t in range(trials):
        hits = rng.binomial(150, 0.8)
        ces = rng.multinomial(150, probs).astype(float)
        m_csat, m_ces = kpis.measure_many([
            kpis.HistItem("csat", np.array([3.0, 4.0]), np.array([150 - hits, hits], dtype=float)),
            kpis.HistItem("ces", np.arange(1.0, 8.0), ces, (t,)),
        ], resamples=499)
        covered["csat"] += m_csat.ci_low <= 80 <= m_csat.ci_high  # type: ignore[operator]
        covered["ces"] += m_ces.ci_low <= true_ces <= m_ces.ci_high  # type: ignore[operator]
    for name, k in covered.items():
        assert 0.91 <= k / trials <= 0.99, (name, k / trials)


def test_labels_cover_every_kpi() -> None:
    from cxloop.config import KPI_NAMES
    from cxloop.vocabulary import KPI_LABELS, KPI_STATUS_LABELS, SCOPE_LABELS

    assert set(KPI_LABELS) == set(KPI_NAMES) == set(kpis.SPECS)
    for labels in (KPI_LABELS, SCOPE_LABELS, KPI_STATUS_LABELS):
        assert all(set(v) == {"en", "zh"} and all(v.values()) for v in labels.values())
    assert set(SCOPE_LABELS) == set(kpis.BASE_SCOPES)
    assert {"complaint_rate", "theme_negative_share", "resolution_p90"} <= kpis.LOWER_IS_BETTER
    assert "nps" not in kpis.LOWER_IS_BETTER and "ces" not in kpis.LOWER_IS_BETTER
    assert not math.isnan(stats.z_value(0.95))
