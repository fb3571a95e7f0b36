"""Nonsense config values exit 2 naming the key, before anything runs (issue 21, item 10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxloop.config import settings_from_dict
from tests.cli import cxloop

BAD = [
    ('[comments]\nnegative_below = 0.7\npositive_above = 0.3\n', "comments", "negative_below"),
    ('[quality]\nvolume_band = [2.0, 0.5]\n', "quality.volume_band", "low <= high"),
    ('[quality]\nvolume_band = [-1.0, 2.0]\n', "quality.volume_band", "low <= high"),
    ('[quality]\nseverity = { nps_in_scal = "warning" }\n', "quality.severity", "nps_in_scal"),
    ('[kpis]\nmin_n_per_kpi = { NPS = 100 }\n', "kpis.min_n_per_kpi", "NPS"),
    ('[kpis]\nmin_n_per_kpi = { nps = 0 }\n', "kpis.min_n_per_kpi", "at least 1"),
    ('[schedule]\ncron = "61 * * * *"\n', "schedule.cron", "61 * * * *"),
    ('[schedule]\ncron = "every month"\n', "schedule.cron", "every month"),
    ('[schedule]\ncron = "0 6 31 2 *"\n', "schedule.cron", "0 6 31 2 *"),
    ('[actions]\ndue_days = {}\n', "actions.due_days", "high, medium, low"),
    ('[actions]\ndue_days = { high = 7, medium = 14, urgent = 1 }\n', "actions.due_days", "urgent"),
]


@pytest.mark.parametrize(("toml", "key", "words"), BAD, ids=[f"{b[1]}:{b[2]}" for b in BAD])
def test_nonsense_value_exits_2_naming_the_key(toml: str, key: str, words: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cxloop.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "cx.db"}"\n{toml}', encoding="utf-8")
    code, _, err = cxloop(capsys, monkeypatch, cfg, "imports")
    assert code == 2 and key in err and words in err, err
    assert "Traceback" not in err


def test_sensible_values_still_load(tmp_path: Path) -> None:
    (tmp_path / "expectations").mkdir()
    (tmp_path / "expectations" / "mine.json").write_text(
        '{"expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "region"},'
        ' "meta": {"id": "region_present"}}]}', encoding="utf-8")
    settings = settings_from_dict({
        "comments": {"negative_below": 0.5, "positive_above": 0.5},
        "quality": {"volume_band": [0.0, 3.0],
                    "severity": {"nps_in_scale": "warning", "region_present": "critical",
                                 "expect_column_values_to_be_unique": "warning"}},
        "kpis": {"min_n_per_kpi": {"nps": 100}},
        "schedule": {"cron": "@monthly"},
        "actions": {"due_days": {"high": 7, "medium": 14, "low": 0}},
    }, base_dir=tmp_path, env={})
    assert settings.schedule.cron == "@monthly" and settings.quality.severity["region_present"] == "critical"
