"""cxloop's trained sentiment model scored for many comments at once, with numpy.

The model (`sentiment.build_pipeline`) is TF-IDF over character 1-3-grams inside word
boundaries, then a logistic regression. scikit-learn builds each comment's n-grams in a Python
loop, ~45 us for a 50-character comment: with jieba gone to Rust (`tasks/segmentation.py`), the
larger part of what a distinct comment costs. Here the n-grams of a whole batch are computed as
arrays: each character is its code point (below 2**21), so a 1-, 2- or 3-gram is exactly one
64-bit integer; the model's vocabulary is a sorted array of the same integers; what follows -
counts, sublinear tf, idf, L2 norm, the dot product with the coefficients - is the arithmetic
scikit-learn does, on a sparse matrix. The probabilities are scikit-learn's to rounding
(tests/test_ngram_scorer.py compares them).

Only a pipeline of exactly that shape is scored here (`for_pipeline` returns None otherwise, and
the pipeline's own `predict_proba` is used).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import sparse
from scipy.special import expit

_BITS = 21  # a code point fits in 21 bits
_BATCH = 20_000  # comments per batch: bounded memory (~60 MB for 50-character comments)
_SLOTS = 22  # log2 of the slots of the filter that spares most n-grams the binary search


class NgramScorer:
    """P(positive) of a fitted char_wb TF-IDF + binary logistic regression pipeline."""

    def __init__(self, vocabulary: dict[str, int], idf: np.ndarray | None, coef: np.ndarray,
                 intercept: float, ngram_range: tuple[int, int], lowercase: bool, sublinear: bool,
                 l2: bool) -> None:
        self.lo, self.hi = ngram_range
        self.lowercase, self.sublinear, self.l2 = lowercase, sublinear, l2
        self.idf, self.coef, self.intercept = idf, coef, intercept
        self.width = len(coef)
        self.keys: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # n -> (sorted keys, columns)
        # Most of a comment's n-grams are not in the vocabulary: a table of which hash slots hold
        # a term answers "not there" for most of them at the cost of one look-up.
        self.slots = np.zeros(1 << _SLOTS, dtype=bool)
        for n in range(self.lo, self.hi + 1):
            terms = [(t, c) for t, c in vocabulary.items() if len(t) == n]
            keys = np.array([_key(t) for t, _ in terms], dtype=np.int64)
            cols = np.array([c for _, c in terms], dtype=np.int64)
            order = np.argsort(keys)
            self.keys[n] = keys[order], cols[order]
            self.slots[_slot(keys)] = True

    def score(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty(len(texts))
        for start in range(0, len(texts), _BATCH):
            out[start:start + _BATCH] = self._score(texts[start:start + _BATCH])
        return out

    def _score(self, texts: Sequence[str]) -> np.ndarray:
        # Each comment as scikit-learn's char_wb analyser sees it: lower-cased, its words (split on
        # any whitespace) each padded with one space. Joined, two spaces mark every boundary between
        # words or comments, and no n-gram of a word holds two spaces: that is the test of an n-gram.
        docs = [(" " + "  ".join(words) + " ") if (words := (t.lower() if self.lowercase else t).split())
                else "" for t in texts]
        lengths = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
        points = np.frombuffer("".join(docs).encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        doc_of = np.repeat(np.arange(len(docs)), lengths)
        space = points == 32
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        for n in range(self.lo, self.hi + 1):
            count = len(points) - n + 1
            if count <= 0:
                continue
            key = points[:count].copy()
            whole = np.ones(count, dtype=bool)
            for k in range(1, n):
                key = (key << _BITS) | points[k:k + count]
                whole &= ~(space[k - 1:k - 1 + count] & space[k:k + count])
            sorted_keys, columns = self.keys[n]
            if not len(sorted_keys):
                continue
            maybe = np.flatnonzero(whole & self.slots[_slot(key)])
            key = key[maybe]
            at = np.minimum(np.searchsorted(sorted_keys, key), len(sorted_keys) - 1)
            hit = sorted_keys[at] == key
            rows.append(doc_of[maybe[hit]])
            cols.append(columns[at[hit]])
        row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        col = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
        x = sparse.csr_matrix((np.ones(len(row)), (row, col)), shape=(len(docs), self.width))
        x.sum_duplicates()
        if self.sublinear:
            np.log(x.data, out=x.data)
            x.data += 1
        if self.idf is not None:
            x.data *= self.idf[x.indices]
        if self.l2:
            norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
            norms[norms == 0] = 1.0
            x = sparse.csr_matrix(sparse.diags(1 / norms) @ x)
        return expit(x @ self.coef + self.intercept)


def _slot(keys: np.ndarray) -> np.ndarray:
    """Fibonacci hashing of the keys onto the filter's slots."""
    mixed = keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return (mixed >> np.uint64(64 - _SLOTS)).astype(np.int64)


def _key(term: str) -> int:
    key = 0
    for ch in term:
        key = (key << _BITS) | ord(ch)
    return key


@lru_cache(maxsize=8)
def for_pipeline(pipeline: Any) -> NgramScorer | None:
    """A scorer for `pipeline` when it is cxloop's own shape, else None (once per pipeline). A
    scorer stands for its pipeline (`portable`)."""
    if isinstance(pipeline, NgramScorer):
        return pipeline
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    steps = getattr(pipeline, "steps", None)
    if not steps or len(steps) != 2:
        return None
    vec, clf = steps[0][1], steps[1][1]
    if type(vec) is not TfidfVectorizer or type(clf) is not LogisticRegression:
        return None
    lo, hi = vec.ngram_range
    shaped = (vec.analyzer == "char_wb" and 1 <= lo <= hi <= 3 and vec.input == "content"
              and vec.preprocessor is None and vec.strip_accents is None and not vec.binary
              and vec.norm in ("l2", None) and np.dtype(vec.dtype) == np.float64
              and len(getattr(clf, "classes_", ())) == 2 and hasattr(vec, "vocabulary_"))
    if not shaped:
        return None
    idf = np.asarray(vec.idf_, dtype=np.float64) if vec.use_idf else None
    return NgramScorer(vec.vocabulary_, idf, np.asarray(clf.coef_[0], dtype=np.float64),
                       float(clf.intercept_[0]), (lo, hi), bool(vec.lowercase),
                       bool(vec.sublinear_tf), vec.norm == "l2")


def portable(model: Any) -> Any:
    """`model` as it goes to a worker process: a trained model carries its scorer in place of its
    scikit-learn pipeline (a smaller pickle, and no scikit-learn import in the worker, ~0.7 s);
    the same scores."""
    from cxloop.tasks.sentiment import TrainedModel

    if isinstance(model, TrainedModel) and (scorer := for_pipeline(model.pipeline)) is not None:
        return replace(model, pipeline=scorer)
    return model
