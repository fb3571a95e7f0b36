"""Personal data never reaches a human text, and HTML templates escape customer text."""

from __future__ import annotations

from typing import Any

import pytest

from cxloop.tasks.masking import mask_pii
from cxloop.tasks.rendering import environment, translate


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ("请致电13812345678", "13812345678"),
        ("phone +86 138-1234-5678 please", "1234-5678"),
        ("邮箱 zhang.san@example.com", "zhang.san@example.com"),
        ("身份证 11010519491231002X", "11010519491231002X"),
        ("卡号 6222021234567890123", "6222021234567890123"),
        ("座机 010-12345678", "12345678"),
    ],
)
def test_personal_data_is_masked(text: str, gone: str) -> None:
    masked = mask_pii(text)
    assert gone not in masked
    assert "[" in masked


def test_ordinary_text_and_numbers_survive() -> None:
    assert mask_pii("等了3天, 订单 2026 年 10 月") == "等了3天, 订单 2026 年 10 月"
    assert mask_pii(None) == ""


def test_html_templates_autoescape_and_text_do_not() -> None:
    env = environment("en")
    autoescape: Any = env.autoescape
    assert autoescape("notice.html") is True
    assert autoescape("notice.txt") is False
    assert env.from_string("{{ c }}").render(c="<script>") == "&lt;script&gt;"


def test_translation_falls_back_to_english() -> None:
    assert translate("no such text", "zh") == "no such text"
    assert translate("anything", "en") == "anything"
