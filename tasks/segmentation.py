"""Chinese word segmentation for topic matching: jieba's dictionary and algorithm, cut in Rust.

Topic keywords are matched on words, never on substrings (see `tasks/comments.py`), so every
Chinese comment is segmented. jieba does that in Python at ~110 us for a 50-character comment:
two thirds of the comment analysis. rjieba is the same algorithm (jieba-rs) over the same
dictionary, about nine times faster. Two differences of bookkeeping are made up here, so that
the words come out as jieba's:

- jieba decides the frequency of each taxonomy keyword added to the dictionary
  (`jieba.add_word`, which suggests one that keeps the keyword whole), and the same frequency
  goes to rjieba; a worker process is handed those frequencies (`taught`, `teach`) and loads
  no jieba at all;
- jieba adds a re-added word's new frequency to the dictionary's total without taking the old one
  off, rjieba takes it off; the difference goes to the total through a word of private-use
  characters, which no comment's Chinese text can hold (jieba cuts only runs of Han characters,
  letters and digits).

What is left are exact ties between two cuts of a repeated character ("好好好"), which the two
break differently: measured on 76,892 distinct real comments (online shopping, take-away and hotel
reviews), 16 comments were cut differently and none was tagged differently (docs/methods.md).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_TOTAL_WORD = "\ue000\ue000"  # carries rjieba's share of the total that jieba counts and it does not

_lock = threading.Lock()
# Taxonomy words taught so far -> (the frequency jieba gave each, its frequency before: 0 if new).
_taught: dict[str, tuple[int, int]] = {}
_jieba_module: Any = None
_cutter: Any = None


def jieba_module() -> Any:
    """The jieba module, imported and silenced once: it decides the taught words' frequencies."""
    global _jieba_module
    if _jieba_module is None:
        import jieba  # on use: ~0.7 s with its dictionary, for Chinese comments only

        jieba.setLogLevel(60)  # silence "Building prefix dict ..." on stderr
        _jieba_module = jieba
    return _jieba_module


def initialize() -> None:
    """Load both dictionaries (the warm-up does it while Prefect's server starts)."""
    jieba_module().initialize()
    _rjieba()


def _rjieba() -> Any:
    """The cutter, with every word taught so far. Taught words give a new cutter, swapped in whole:
    rjieba lets other threads run while it cuts, and a word added to a cutter in use fails."""
    global _cutter
    if _cutter is None:
        with _lock:
            if _cutter is None:
                import rjieba  # its dictionary: ~0.2 s

                cutter = rjieba.Jieba()
                for word, (freq, _) in _taught.items():
                    cutter.add_word(word, freq, None)
                extra = sum(before for _, before in _taught.values())
                if extra:  # what jieba's total counts and rjieba's does not
                    cutter.add_word(_TOTAL_WORD, extra, None)
                _cutter = cutter
    return _cutter


def add_words(words: Iterable[str]) -> None:
    """Teach the segmenter the taxonomy's Chinese keywords so that each is cut as one word."""
    new = [w for w in dict.fromkeys(words) if w and CJK.search(w) and w not in _taught]
    if not new:
        return
    global _cutter
    jieba = jieba_module()
    jieba.initialize()
    with _lock:
        for w in new:
            if w not in _taught:
                before = jieba.dt.FREQ.get(w, 0)
                jieba.add_word(w)
                _taught[w] = (jieba.dt.FREQ[w], before)
                _cutter = None  # the next cut builds a cutter with it


def taught() -> dict[str, tuple[int, int]]:
    """The words taught so far with their frequencies, for `teach` in a worker process."""
    return dict(_taught)


def teach(words: dict[str, tuple[int, int]]) -> None:
    """Give this process's cutter words another process taught (`taught`): a worker process
    cuts as its parent does without loading jieba's dictionary (~0.7 s a worker)."""
    global _cutter
    with _lock:
        for w, value in words.items():
            if w not in _taught:
                _taught[w] = value
                _cutter = None


def cut(text: str) -> list[str]:
    """jieba's words of `text` (`jieba.lcut(text, HMM=False)`), taxonomy words included. HMM is
    off: it only guesses words missing from the dictionary, and every keyword is in it."""
    return list(_rjieba().cut(text, False))


def segment(text: str) -> list[str]:
    """Words of `text`, lower-cased, plus the dictionary sub-words of 4+ character phrases
    (`token_units` of each of jieba's tokens).

    jieba's dictionary holds phrases such as 价格便宜 / 服务周到; their 2-3 character dictionary
    words (价格, 服务) are added, so a keyword inside a phrase still counts. Words of 2-3
    characters are kept whole: 服务器 (server) does not yield 服务 (service).
    """
    cutter = _rjieba()  # one cutter for both calls, whatever another thread teaches meanwhile
    return [unit for token in cutter.cut(text, False) for unit in token_units(token, cutter)]


def current_cutter() -> Any:
    """The cutter `segment` uses now; a new one once words are taught (`add_words`, `teach`)."""
    return _rjieba()


def token_units(token: str, cutter: Any) -> list[str]:
    """What `segment` makes of one of `cutter.cut(text, False)`'s tokens: the token lower-cased
    and stripped (nothing if blank), then, for a 4+ character phrase with Chinese in it, its 2-
    and 3-character sub-words that are dictionary words."""
    word = token.strip().lower()
    if not word:
        return []
    if len(word) < 4 or not CJK.search(word):
        return [word]
    return [word, *(sub for n in (2, 3) for i in range(len(word) - n + 1)
                    if cutter.has_word(sub := word[i:i + n]))]
