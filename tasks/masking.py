"""Personal data masking for anything that quotes a customer (notices, actions, reports).

Masking happens before a comment leaves the database for a human: a head of department needs the
complaint, not the customer's phone number.

Customers do not write numbers the way a regular expression expects: `6222 0212 3456 7890 123`,
`138.1234.5678`, `110101 19900307 1234` and full-width `１３８１２３４５６７８` are the same card,
phone and ID numbers. So the text is matched in its NFKC form (full-width digits, letters and
punctuation become ASCII, one character for one) and a run of digit groups joined by single
spaces, dots or dashes is judged by its digits alone; what is replaced is the customer's original
text, the rest of the comment keeps its own characters.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import cache

_SEP = r"[ .\-\u2010-\u2015]"
# A run of digit groups (3+ digits each, so dates such as 2026-10-03 are not one run), optionally
# after +86 and ending in the check letter X of a resident ID.
_DIGIT_RUN = re.compile(
    rf"(?<![\d+])(?:\+?86{_SEP}?)?\d{{3,}}(?:{_SEP}\d{{3,}})*(?:[Xx](?![A-Za-z0-9]))?(?!\d)")
_MOBILE = re.compile(r"(?:86)?1[3-9]\d{9}")

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[email]"),
    # Landlines (0xx-xxxxxxxx) and international numbers.
    (re.compile(r"(?<!\d)0\d{2,3}[-\s]?\d{7,8}(?!\d)"), "[phone]"),
    (re.compile(r"\+\d{1,3}[-\s]?\(?\d{1,4}\)?(?:[-\s]?\d{2,4}){2,4}"), "[phone]"),
]


def _digit_placeholder(run: str) -> str | None:
    """What a run of digits is, by its digits alone: an ID (17 digits and a check digit or X),
    a mobile (11 digits, optionally after 86) or landline number, a card or other long number
    (13 or more digits); None leaves it as written."""
    digits = re.sub(r"[^\dXx]", "", run)
    if digits[-1] in "Xx":
        return "[id]" if len(digits) == 18 else None
    if len(digits) == 18:
        return "[id]"
    if _MOBILE.fullmatch(digits) or (digits[0] == "0" and 10 <= len(digits) <= 12):
        return "[phone]"  # a mobile, or a landline: 0, a 2-3 digit area code, 7-8 digits
    if len(digits) >= 13:
        return "[number]"
    return None


@cache
def _ascii_forms() -> dict[int, str]:
    """Every BMP character whose NFKC form is one ASCII character (full-width digits, letters and
    punctuation, the ideographic space, ...) mapped to it: a one-to-one, length-keeping table."""
    table: dict[int, str] = {}
    for cp in range(0x80, 0x10000):
        norm = unicodedata.normalize("NFKC", chr(cp))
        if len(norm) == 1 and norm.isascii():
            table[cp] = norm
    return table


def _substitute(pattern: re.Pattern[str], replace: Callable[[str], str | None], text: str,
                norm: str) -> tuple[str, str]:
    """`pattern.sub` matched on the normalised text `norm`, replacing the original characters (both
    have the same length, so a match's span is the original's); returns both texts after it."""
    out: list[str] = []
    out_norm: list[str] = []
    last = 0
    for m in pattern.finditer(norm):
        placeholder = replace(m.group())
        if placeholder is not None:
            out += [text[last:m.start()], placeholder]
            out_norm += [norm[last:m.start()], placeholder]
            last = m.end()
    if not out:
        return text, norm
    return "".join([*out, text[last:]]), "".join([*out_norm, norm[last:]])


def mask_pii(text: object) -> str:
    """Replace e-mail addresses, ID card numbers, phone and card numbers with placeholders."""
    if text is None:
        return ""
    masked = str(text)
    if not masked:
        return ""
    norm = masked if masked.isascii() else masked.translate(_ascii_forms())
    masked, norm = _substitute(_PATTERNS[0][0], lambda _m: _PATTERNS[0][1], masked, norm)
    masked, norm = _substitute(_DIGIT_RUN, _digit_placeholder, masked, norm)
    for pattern, placeholder in _PATTERNS[1:]:
        masked, norm = _substitute(pattern, lambda _m, p=placeholder: p, masked, norm)  # type: ignore[misc]
    return masked
