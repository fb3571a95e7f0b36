"""The batch scorer gives the trained pipeline's own probabilities (tasks/ngram_scorer.py)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from cxloop.tasks.demo import write_training_set
from cxloop.tasks.ngram_scorer import for_pipeline
from cxloop.tasks.sentiment import TrainedModel, build_pipeline, read_labelled

# Whitespace of every kind, upper case whose lower case is longer (İ), letters beyond the BMP,
# one-character words, empty and blank comments, both languages.
EDGES = ["", "   ", "\n\n", "x", "A  b\tc\u3000d\x1fe", "ÉCOLE İstanbul", "😀😀 ok 𠀀", "Delivery was LATE!!",
         "物流太慢了，客服态度很好", "lone \ud800 surrogate", " 退款 一直 没到账 ", "APP老是闪退 crash again",
         "a" * 500, "好" * 300]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[int]]:
    path = tmp_path_factory.mktemp("labelled") / "labelled.csv"
    write_training_set(path)
    texts, labels = read_labelled(path)
    return list(texts), [int(v) for v in labels]


def _texts(train: list[str]) -> list[str]:
    rng = np.random.default_rng(3)
    mixed = [train[i] + " " + train[j].upper() for i, j in rng.integers(0, len(train), (300, 2))]
    return EDGES + train[:500] + mixed


@pytest.mark.parametrize("shape", [
    {},  # cxloop's own pipeline (build_pipeline)
    {"ngram_range": (2, 3), "sublinear_tf": False, "norm": None},
    {"ngram_range": (1, 1), "use_idf": False, "lowercase": False},
])
def test_the_batch_scorer_gives_the_pipelines_probabilities(labelled: tuple[list[str], list[int]],
                                                          shape: dict[str, object]) -> None:
    texts, labels = labelled
    if shape:
        pipeline = make_pipeline(TfidfVectorizer(analyzer="char_wb", min_df=2, **shape),
                                 LogisticRegression(max_iter=2000))
    else:
        pipeline = build_pipeline()
    pipeline.fit(texts, labels)
    scorer = for_pipeline(pipeline)
    assert scorer is not None
    sample = _texts(texts)
    expected = pipeline.predict_proba(sample)[:, 1]
    got = scorer.score(sample)
    assert np.abs(got - expected).max() < 1e-12
    assert (got == expected).mean() > 0.99  # the same arithmetic, mostly to the last bit
    assert len(np.unique(np.round(got, 3))) > 20  # the sample is scored, not a constant


def test_other_shapes_are_left_to_the_pipeline(labelled: tuple[list[str], list[int]]) -> None:
    texts, labels = labelled
    words = make_pipeline(TfidfVectorizer(analyzer="word"), LogisticRegression()).fit(texts, labels)
    assert for_pipeline(words) is None
    model = TrainedModel(words, ["zh", "en"], "2026-01-01", len(texts))
    sample = _texts(texts)
    assert np.allclose(model.score(sample, ["zh"] * len(sample)), words.predict_proba(sample)[:, 1])


def test_a_trained_model_scores_through_the_batch_scorer(labelled: tuple[list[str], list[int]],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    texts, labels = labelled
    pipeline = build_pipeline().fit(texts, labels)
    model = TrainedModel(pipeline, ["zh", "en"], "2026-01-01", len(texts))
    sample = _texts(texts)
    expected = pipeline.predict_proba(sample)[:, 1]

    def unused(*_: object) -> None:
        raise AssertionError("scored by the pipeline")

    monkeypatch.setattr(pipeline, "predict_proba", unused)
    assert np.abs(model.score(sample, ["zh"] * len(sample)) - expected).max() < 1e-12
