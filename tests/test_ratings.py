"""Attribute ratings: declared in the config, read from a source's columns ("not rated" stays
missing), stored per response and read back for the key-driver analysis, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, Table, func, insert, select

from cxloop.config import ConfigError, Settings, settings_from_dict
from cxloop.models import Feedback, FeedbackRating
from cxloop.tasks.drivers import analyse_drivers
from cxloop.tasks.ratings import analyse_month, ratings_from_frame, read_ratings, store_ratings

BASE = datetime(2026, 10, 5, tzinfo=UTC)
FB: Table = Feedback.__table__  # type: ignore[attr-defined]
FR: Table = FeedbackRating.__table__  # type: ignore[attr-defined]
DRIVERS = [
    {"name": "seat", "label_en": "Seat comfort", "label_zh": "座椅舒适度", "scale": [1, 5], "not_rated": [0],
     "touchpoint": "cabin"},
    {"name": "checkout", "label_en": "Checkout speed", "label_zh": "结账速度", "scale": [0, 10],
     "journey_stage": "purchase"},
]


def make_settings(tmp_path: Path, **extra: Any) -> Settings:
    data: dict[str, Any] = {
        "sources": [{"name": "web", "kind": "csv", "path": "x.csv",
                     "drivers": {"seat": "Seat comfort", "checkout": "结账速度"}}],
        "drivers": DRIVERS,
        "departments": {"ops": {"name": "Operations", "owns": {"touchpoint": ["cabin"]}},
                        "store": {"name": "Stores", "owns": {"journey_stage": ["purchase"]}}},
    }
    data.update(extra)
    return settings_from_dict(data, tmp_path, env={})


def test_drivers_are_declared_with_labels_scale_and_an_owner(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    seat, checkout = settings.drivers
    assert (seat.label_zh, seat.scale, seat.not_rated) == ("座椅舒适度", (1, 5), [0])
    assert settings.driver_owner(seat) == "ops"
    assert settings.driver_owner(checkout) == "store"
    assert settings.driver_analysis.outcome == "nps"


@pytest.mark.parametrize(("extra", "message"), [
    ({"drivers": [{"name": "seat", "scale": [5, 1]}]}, "drivers[0]"),
    ({"drivers": [{"name": "seat"}, {"name": "seat"}]}, "duplicate driver name(s) ['seat']"),
    ({"drivers": [{"name": "seat"}]}, "sources[0].drivers: undeclared driver(s) ['checkout']"),
    ({"drivers": [{"name": "seat comfort"}]}, "drivers[0].name"),
    ({"driver_analysis": {"outcome": "revenue"}}, "driver_analysis.outcome"),
])
def test_invalid_driver_config_names_the_key(tmp_path: Path, extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_settings(tmp_path, **extra)
    assert message in str(err.value)


def test_not_rated_is_missing_and_out_of_scale_is_left_out_and_counted(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    frame = pd.DataFrame({"Seat comfort": ["5", "0", "", None, "7", "3"],
                          "结账速度": [10, 0, 4, None, 11, 2.5]})
    ratings = ratings_from_frame(settings, settings.sources[0], frame)
    assert ratings.drivers == ["seat", "checkout"]
    np.testing.assert_array_equal(ratings.values[:, 0], [5, np.nan, np.nan, np.nan, np.nan, 3])
    np.testing.assert_array_equal(ratings.values[:, 1], [10, 0, 4, np.nan, np.nan, 2.5])  # 0 is a rating here
    assert ratings.out_of_scale == {"seat": 1, "checkout": 1}
    with pytest.raises(KeyError, match="'Seat comfort' \\(mapped to driver seat\\)"):
        ratings_from_frame(settings, settings.sources[0], frame.drop(columns=["Seat comfort"]))


def test_ratings_are_stored_per_response_and_read_back_for_the_analysis(engine: Engine,
                                                                        tmp_path: Path) -> None:
    """Planted: nps driven by seat (strongly) and checkout (weakly); 20% not rated. What is stored
    and read back gives the same analysis as the in-memory ratings, and a re-run duplicates nothing."""
    settings = make_settings(tmp_path)
    rng = np.random.default_rng(3)
    n = 600
    seat = rng.integers(1, 6, n).astype(float)
    checkout = np.clip(seat * 2 + rng.integers(-3, 4, n), 0, 10).astype(float)
    nps = np.clip(np.round(seat * 2 + 0.2 * checkout + rng.normal(0, 1.5, n)), 0, 10)
    frame = pd.DataFrame({"Seat comfort": seat, "结账速度": checkout})
    frame[rng.random((n, 2)) < 0.2] = np.nan
    frame.loc[0, "Seat comfort"] = 0  # "not rated" as the export writes it
    with engine.begin() as conn:
        conn.execute(insert(FB), [
            {"source": "web", "response_id": f"r{i}", "period": "2026-10", "submitted_at": BASE,
             "channel": "web", "content_hash": "h", "nps": int(nps[i]), "department": ("a", "b")[i % 2],
             "quarantined": i >= n - 10} for i in range(n)])
    ratings = ratings_from_frame(settings, settings.sources[0], frame)
    ids = [f"r{i}" for i in range(n)]
    assert store_ratings(engine, "web", "2026-10", ids + ["unknown"], ratings) == n
    assert store_ratings(engine, "web", "2026-10", ids, ratings) == n  # re-run: replaced
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(FeedbackRating)).scalar_one() == n
        first = conn.execute(select(FR.c.ratings).join(FB, FB.c.id == FR.c.feedback_id)
                             .where(FB.c.response_id == "r0")).scalar_one()
        scores: dict[int, int] = {row[0]: row[1] for row in conn.execute(select(FB.c.id, FB.c.nps))}
    assert "seat" not in first  # not rated: absent, not zero
    fids, values = read_ratings(engine, "2026-10", ["seat", "checkout"])
    assert len(fids) == n
    np.testing.assert_array_equal(values, ratings.values)  # rows come back in insertion (id) order
    y = np.asarray([scores[int(f)] for f in fids], dtype=np.float64)
    from_db = analyse_drivers(y, values, ["seat", "checkout"], seed_key=("db",))
    in_memory = analyse_drivers(nps, ratings.values, ["seat", "checkout"], seed_key=("db",))
    assert from_db == in_memory and from_db is not None
    assert from_db.ranked()[0].driver == "seat" and not from_db.ranked()[0].tied
    assert read_ratings(engine, "2026-09", ["seat"])[1].shape == (0, 1)

    month = analyse_month(engine, make_settings(tmp_path, driver_analysis={"min_n": 250}), "2026-10",
                          ("overall", "department"))
    assert set(month) == {("overall", "all"), ("department", "a"), ("department", "b")}
    overall = month[("overall", "all")]
    assert overall.n == n - 10  # quarantined responses are not analysed
    assert overall.ranked()[0].driver == "seat"
    assert month[("department", "a")].n == (n - 10) // 2
    assert analyse_month(engine, make_settings(tmp_path, driver_analysis={"min_n": 400}), "2026-10",
                         ("overall", "department")).keys() == {("overall", "all")}
