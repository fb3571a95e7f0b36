"""Voice of the customer: the most negative comments per topic, masked, for the page."""

from __future__ import annotations

from collections import Counter

import numpy as np
from numpy.typing import NDArray

from cxloop.config import Settings
from cxloop.tasks.codes import factorize
from cxloop.tasks.masking import mask_pii
from cxloop.tasks.rendering import translate
from cxloop.tasks.report.data import Voice
from cxloop.tasks.report.feedback import FeedbackSummary
from cxloop.tasks.report.scorecard import _topic_names
from cxloop.vocabulary import (
    split_themes,
)


def _voices(page: FeedbackSummary, settings: Settings, lang: str, top: int = 6,
            per_theme: int = 2) -> tuple[list[Voice], int]:
    """Most frequent complaint themes, each with its most negative comments as examples."""
    neg = page.negatives
    total = int(neg["count"].sum())
    names = _topic_names(settings, lang)
    counts: Counter[str] = Counter()
    # Themes counted in the order they first occur (within a row too: not a set, whose order
    # changes with PYTHONHASHSEED), so that equal counts always rank the same.
    for themes, weight in neg.sort_values("first")[["themes", "count"]].itertuples(index=False, name=None):
        for theme in split_themes(themes if isinstance(themes, str) else None):
            counts[theme] += int(weight)
    comments = page.comments["comment"].to_numpy()
    text_codes = factorize(page.comments["comment"])[0]  # once for every page
    mask = page.comment_mask
    seen: set[str] = set()
    voices = []

    def pick(positions: NDArray[np.int64]) -> list[str]:
        if mask is not None:
            positions = positions[mask[positions]]
        # Only the first row of each distinct comment can add a text: a repeat of a comment
        # adds nothing a first one did not (thousands of rows repeat a few dozen comments).
        positions = positions[np.sort(np.unique(text_codes[positions], return_index=True)[1])]
        out = []
        for pos in positions.tolist():
            raw = str(comments[pos])
            text = page._texts.get(raw)
            if text is None:
                # Mask before shortening, so a cut can never leave half a phone number unmasked.
                text = page._texts[raw] = mask_pii(" ".join(raw.split()))
            if len(text) < 6 or text in seen:
                continue
            seen.add(text)
            out.append(text if len(text) <= 280 else text[:279] + "…")
            if len(out) >= per_theme:
                break
        return out

    for theme, count in counts.most_common(top):
        voices.append(Voice(names.get(theme, theme), count, count / max(total, 1),
                            pick(page.by_theme.get(theme, np.zeros(0, dtype=np.int64)))))
    if not voices and total:
        everything = np.arange(len(comments), dtype=np.int64)
        voices.append(Voice(translate("Unclassified complaints", lang), total, 1.0,
                            pick(everything)[:4] if per_theme < 4 else pick(everything)))
    return voices, total
