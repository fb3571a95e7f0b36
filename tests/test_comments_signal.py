"""A theme whose negative share jumps against its history opens an action for the topic's owner.

The whole chain with real parts: comments -> company model + jieba themes -> theme KPIs with a
control chart -> signal_low -> action routed by `owns.topic`.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, select
from sqlmodel import col

from cxloop.config import settings_from_dict
from cxloop.db import session_scope
from cxloop.models import Action, Feedback, KpiResult
from cxloop.periods import shift_period
from cxloop.tasks.actions import open_actions
from cxloop.tasks.comments import analyse_comments
from cxloop.tasks.kpis import compute_kpis
from cxloop.tasks.sentiment import train_from_file
from tests.test_comments import write_labelled_csv

POSITIVE = ["物流很快，非常满意", "快递很快，下次还来"]
NEGATIVE = ["物流太慢，非常失望，再也不买", "快递太慢了，非常失望"]
OTHER = ["性价比高，味道不错", "价格很贵，味道难吃"]


def add_month(engine: Engine, period: str, negative_share: float, rng: random.Random, n: int = 120) -> None:
    year, month = map(int, period.split("-"))
    with session_scope(engine) as s:
        for i in range(n):
            if i % 3 == 2:
                text = rng.choice(OTHER)
            else:
                text = rng.choice(NEGATIVE if rng.random() < negative_share else POSITIVE)
            rid = f"{period}-{i}"
            s.add(Feedback(source="survey", response_id=rid, period=period, channel="app",
                           submitted_at=datetime(year, month, 10, tzinfo=UTC), comment=text,
                           content_hash=rid))


def test_theme_negative_share_signal_opens_action_for_owner(engine: Engine, tmp_path: Path) -> None:
    settings = settings_from_dict({
        "comments": {"model_path": "sentiment/model.joblib"},
        "departments": {"logistics": {"name": "Logistics", "owns": {"topic": ["delivery"]}},
                        "sales": {"name": "Sales", "owns": {"topic": ["price"]}}},
    }, tmp_path, env={})
    train_from_file(settings, write_labelled_csv(tmp_path / "labelled.csv"))
    rng = random.Random(3)
    last = "2026-10"
    history = [shift_period(last, -k) for k in range(8, 0, -1)]
    for period, share in [(p, 0.2) for p in history] + [(last, 0.75)]:
        add_month(engine, period, share, rng)
        summary = analyse_comments(settings, engine, period)
        assert summary.model == "trained" and summary.analysed == 120
        compute_kpis(settings, engine, period)

    with session_scope(engine) as s:
        result = s.execute(select(KpiResult).where(
            col(KpiResult.period) == last, col(KpiResult.kpi) == "theme_negative_share",
            col(KpiResult.scope) == "topic", col(KpiResult.scope_value) == "delivery")).scalar_one()
        # KPI definition: negative comments about the topic among all comments (n = comments).
        assert result.n == 120 and result.value is not None and result.value > 40
        assert result.signal == "signal_low"

    assert open_actions(settings, engine, last) is not None
    with session_scope(engine) as s:
        actions = s.execute(select(Action)).scalars().all()
        theme_actions = [a for a in actions if a.scope == "topic"]
        assert [(a.kpi, a.scope_value, a.department) for a in theme_actions] == [
            ("theme_negative_share", "delivery", "logistics")]
