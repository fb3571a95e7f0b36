"""Personal data masking for anything that quotes a customer (notices, actions, reports).

Masking happens before a comment leaves the database for a human: a head of department needs the
complaint, not the customer's phone number.
"""

from __future__ import annotations

import re

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[email]"),
    # Mainland resident ID: 17 digits + digit or X.
    (re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)"), "[id]"),
    # Bank cards and other long digit runs (before phones, so a card is not half-masked).
    (re.compile(r"(?<!\d)\d{13,19}(?!\d)"), "[number]"),
    # Mainland mobiles, optionally +86, with spaces or dashes.
    (re.compile(r"(?<!\d)(?:\+?86[-\s]?)?1[3-9]\d[-\s]?\d{4}[-\s]?\d{4}(?!\d)"), "[phone]"),
    # Landlines (0xx-xxxxxxxx) and international numbers.
    (re.compile(r"(?<!\d)0\d{2,3}[-\s]?\d{7,8}(?!\d)"), "[phone]"),
    (re.compile(r"\+\d{1,3}[-\s]?\(?\d{1,4}\)?(?:[-\s]?\d{2,4}){2,4}"), "[phone]"),
]


def mask_pii(text: str | None) -> str:
    """Replace e-mail addresses, ID card numbers, phone and card numbers with placeholders."""
    if not text:
        return ""
    for pattern, placeholder in _PATTERNS:
        text = pattern.sub(placeholder, text)
    return text
