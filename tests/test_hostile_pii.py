"""Personal numbers written the way customers write them are masked everywhere a value is shown
(issue 21, item 15): spaces, dots and dashes inside numbers, full-width digits, in comments, the
validation report and the data owners' alert. The variants are `tests/hostile/pii_variants.tsv`.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
from sqlalchemy import Engine

from cxloop.db import session_scope
from cxloop.models import QualityCheck
from cxloop.tasks.masking import mask_pii
from cxloop.tasks.notify import build_notices
from tests.test_notify import make_settings
from tests.test_validate import NOW, PERIOD, add_rows, good_row
from tests.test_validate import make_settings as validate_settings

HOSTILE = Path(__file__).parent / "hostile"
VARIANTS = [tuple(line.split("\t")) for line in
            (HOSTILE / "pii_variants.tsv").read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")]


def _digits(text: str) -> str:
    return re.sub(r"\D", "", unicodedata.normalize("NFKC", text))


def _assert_masked(shown: str, number: str) -> None:
    """Neither the number as written nor its digits (in any spacing or width) are left."""
    assert number not in shown, shown
    digits = _digits(number)
    assert not digits or digits[-7:] not in _digits(shown), shown


@pytest.mark.parametrize(("comment", "number"), VARIANTS, ids=[v[1] for v in VARIANTS])
def test_pii_variants_are_masked(comment: str, number: str) -> None:
    masked = mask_pii(comment)
    _assert_masked(masked, number)
    assert re.search(r"\[(phone|id|number|email)\]", masked), masked


def test_masking_keeps_the_rest_of_the_comment_as_written() -> None:
    assert mask_pii("手机１３８１２３４５６７８，谢谢！") == "手机[phone]，谢谢！"  # full-width comma kept
    for text in ("等了3天, 订单 2026 年 10 月", "送达 2026-10-03 2026-10-04 14:05",
                 "price 1,299.00, 3.5 stars", "订单号 20261003", "第１２３号门店"):
        assert mask_pii(text) == text
    assert (mask_pii(None), mask_pii(""), mask_pii(0), mask_pii(13812345678)) == ("", "", "0", "[phone]")


def test_validation_report_masks_failing_values(engine: Engine, tmp_path: Path) -> None:
    from cxloop.tasks import validate as v

    settings = validate_settings(tmp_path, quality={"max_quarantine_share": 1.0})
    bad = [good_row(60 + i, channel=comment) for i, (comment, _number) in enumerate(VARIANTS)]
    add_rows(engine, [good_row(i) for i in range(20)] + bad)
    gate = v.validate_period(settings, engine, PERIOD, now=NOW, lang="en")
    html = gate.report_path.read_text(encoding="utf-8") if gate.report_path else ""
    assert "channel_in_vocabulary" in html and "[phone]" in html
    for _comment, number in VARIANTS:
        _assert_masked(html, number)


def test_data_owner_alert_masks_failing_values(engine: Engine, tmp_path: Path) -> None:
    with session_scope(engine) as s:
        s.add(QualityCheck(period=PERIOD, suite="feedback", expectation="channel_in_vocabulary",
                           column="channel", success=False, unexpected_count=len(VARIANTS),
                           sample=[{"key": f"r{i}", "value": c} for i, (c, _n) in enumerate(VARIANTS)],
                           observed={"message": f"unexpected {VARIANTS[0][0]}"}))
    settings = make_settings(tmp_path, [], quality={"data_owners": ["json://127.0.0.1:9/o"]})
    [alert] = build_notices(settings, engine, PERIOD, held=True)
    for _comment, number in VARIANTS[:5]:  # the alert quotes the first five examples
        for body in (alert.body_html, alert.body_text):
            _assert_masked(body, number)
