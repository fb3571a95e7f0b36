"""cxloop's trained sentiment model scored for many comments at once, with numpy.

The model (`sentiment.build_pipeline`) is TF-IDF over character 1-3-grams inside word
boundaries, then a logistic regression. scikit-learn builds each comment's n-grams in a Python
loop, ~45 us for a 50-character comment: with jieba gone to Rust (`tasks/segmentation.py`), the
larger part of what a distinct comment costs. Here the n-grams of a whole batch are computed as
arrays: each character is its code point (below 2**21), so a 1-, 2- or 3-gram is exactly one
64-bit integer; the model's vocabulary is a hash table of the same integers; what follows -
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
import pandas as pd
from scipy import sparse
from scipy.special import expit

_BITS = 21  # a code point fits in 21 bits
_BATCH = 20_000  # comments per batch: bounded memory (~60 MB for 50-character comments)


class NgramScorer:
    """P(positive) of a fitted char_wb TF-IDF + binary logistic regression pipeline."""

    def __init__(self, vocabulary: dict[str, int], idf: np.ndarray | None, coef: np.ndarray,
                 intercept: float, ngram_range: tuple[int, int], lowercase: bool, sublinear: bool,
                 l2: bool) -> None:
        self.lo, self.hi = ngram_range
        self.lowercase, self.sublinear, self.l2 = lowercase, sublinear, l2
        self.idf, self.coef, self.intercept = idf, coef, intercept
        self.width = len(coef)
        self.keys: dict[int, tuple[pd.Index, np.ndarray]] = {}  # n -> (keys, their columns)
        for n in range(self.lo, self.hi + 1):
            terms = [t for t in vocabulary if len(t) == n]
            # pandas' hash table answers a look-up ~9x faster than a binary search in 500,000 keys
            self.keys[n] = (pd.Index(_keys(terms, n)),
                            np.fromiter((vocabulary[t] for t in terms), dtype=np.int64, count=len(terms)))

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
        points = _points("".join(docs))
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
            keys, columns = self.keys[n]
            at = keys.get_indexer(key)
            hit = np.flatnonzero(whole & (at >= 0))
            rows.append(doc_of[hit])
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
        if self.l2:  # as scikit-learn's row normalisation: each row's squares summed in order, divided
            per_row = np.diff(x.indptr)
            norms = np.sqrt(np.bincount(np.repeat(np.arange(x.shape[0]), per_row),
                                        weights=x.data * x.data, minlength=x.shape[0]))
            norms[norms == 0] = 1.0
            x.data /= np.repeat(norms, per_row)
        return expit(x @ self.coef + self.intercept)


def _points(text: str) -> np.ndarray:
    """The code points of `text` (a lone surrogate too, as scikit-learn reads it)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)


def _keys(terms: list[str], n: int) -> np.ndarray:
    """The key of each n-character term (a vocabulary of 500,000 terms in ~0.1 s)."""
    points = _points("".join(terms)).reshape(len(terms), n)
    keys = points[:, 0].copy()
    for k in range(1, n):
        keys = (keys << _BITS) | points[:, k]
    return keys


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
              and len(getattr(clf, "classes_", ())) == 2 and hasattr(vec, "vocabulary_")
              # before scikit-learn 1.8, multinomial on two classes gives expit(2 d), not expit(d)
              and getattr(clf, "multi_class", "auto") in ("auto", "ovr", "warn", "deprecated"))
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
