"""Sentiment of customer comments: a shippable default and a company model trained on its own data.

Every model returns, per comment, the probability that it is positive (0..1); the comments stage
turns that into negative / neutral / positive with the configured thresholds.

- Default (`snownlp`): Chinese through SnowNLP (MIT; its Naive Bayes model ships inside the
  package, nothing is downloaded), English through a small hand-written opinion lexicon with
  negation and intensifiers (below). SnowNLP manages only about 180 comments/s on one core: fine
  for a few thousand comments a month, too slow for large volumes.
- Trained (`cxloop comments train`): character 1-3-gram TF-IDF (`char_wb`, so no word segmentation
  is needed) + logistic regression, fitted on the company's labelled comments. Thousands of
  comments per second, and it learns the company's own domain words.

No model trained on the benchmark corpora in `shared/data` is ever shipped: their licences are
unstated, so `bench/comments.py` trains at run time into a temporary directory.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cxloop.config import CommentsConfig, Settings

POSITIVE, NEUTRAL, NEGATIVE = "positive", "neutral", "negative"
MODEL_FORMAT = 1


class ModelError(Exception):
    """A model that cannot be used (missing file, wrong format, bad training data)."""


def detect_language(text: str, declared: str | None = None) -> str:
    """"zh" or "en": the row's declared language when it says so, else the share of CJK letters.

    A comment counts as Chinese when at least a fifth of its letters are CJK characters, so an
    English brand name inside a Chinese comment ("APP老是闪退") does not make it English.
    One text at a time costs ~0.1 ms (numpy's set-up): for many, call `detect_languages`.
    """
    return detect_languages([text], [declared])[0]


def _declared(declared: str | None) -> str | None:
    if declared:
        d = declared.strip().lower()
        if d.startswith("zh") or d in {"cn", "chinese", "中文"}:
            return "zh"
        if d.startswith("en") or d == "english":
            return "en"
    return None


def _by_letters(cjk: int, latin: int) -> str:
    if cjk == 0:
        return "en" if latin else "zh"
    return "zh" if cjk / (cjk + latin) >= 0.2 else "en"


# The letters counted: `segmentation.CJK`'s ranges (tests compare them) and ASCII's.
_CJK_POINTS = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))
_LATIN_POINTS = ((ord("A"), ord("Z")), (ord("a"), ord("z")))


def detect_languages(texts: Sequence[str], declared: Sequence[str | None] | None = None) -> list[str]:
    """The language of each text, by the rule `detect_language` states: the letters of
    `_LETTERS_BATCH` texts at a time counted as code points in numpy (two regex scans per text cost
    ~4 us a comment, a tenth of a distinct comment's analysis)."""
    if declared is not None and len(declared) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(declared)} declared languages")
    said = [_declared(d) for d in declared] if declared is not None else [None] * len(texts)
    out = [s or "" for s in said]
    todo = [i for i, s in enumerate(said) if s is None]
    for start in range(0, len(todo), _LETTERS_BATCH):
        part = todo[start:start + _LETTERS_BATCH]
        for i, cjk, latin in zip(part, *_letters([texts[i] for i in part]), strict=True):
            out[i] = _by_letters(cjk, latin)
    return out


_LETTERS_BATCH = 20_000  # texts counted at once: ~30 bytes per character (50-character texts: 30 MB)


def _letters(texts: list[str]) -> tuple[list[int], list[int]]:
    """The number of CJK and of Latin letters of each text."""
    points = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
    starts = ends - np.diff(ends, prepend=0)
    counts = []
    for ranges in (_CJK_POINTS, _LATIN_POINTS):
        inside = np.zeros(len(points), dtype=bool)
        for lo, hi in ranges:
            inside |= (points >= lo) & (points <= hi)
        running = np.concatenate([[0], np.cumsum(inside)])
        counts.append((running[ends] - running[starts]).tolist())
    return counts[0], counts[1]


def label_of(score: float, cfg: CommentsConfig) -> str:
    """negative below `negative_below`, positive above `positive_above`, neutral in between."""
    if score < cfg.negative_below:
        return NEGATIVE
    if score > cfg.positive_above:
        return POSITIVE
    return NEUTRAL


class SentimentModel(Protocol):
    name: str

    def score(self, texts: Sequence[str], languages: Sequence[str]) -> np.ndarray:
        """Probability positive per text; `languages` are "zh"/"en" from `detect_language`."""
        ...


# --- English: a short hand-written opinion lexicon --------------------------------------------
# Written for cxloop (no third-party lexicon, so no licence question). Weights 1 (mild) to 3 (strong).
def _words(text: str) -> list[str]:
    return text.split()


_EN_LEXICON: dict[str, float] = {
    **dict.fromkeys(_words(
        "good nice fine great loved lovely liked enjoy enjoyed happy pleased glad helpful "
        "friendly polite kind fast quick quickly easy easily smooth clean fresh tasty "
        "delicious comfortable convenient recommend recommended reliable efficient "
        "professional satisfied thanks thank fair cheap affordable worth improved "
        "resolved solved works working better best"), 1.5),
    **dict.fromkeys(_words(
        "excellent amazing awesome fantastic perfect wonderful outstanding superb "
        "brilliant incredible exceptional love impressive delighted"), 3.0),
    **dict.fromkeys(_words(
        "bad poor slow late wrong broken damaged dirty rude unhelpful unfriendly "
        "expensive overpriced difficult hard confusing annoying annoyed disappointed "
        "disappointing unhappy problem problems issue issues complaint complain fail "
        "failed failure error errors bug bugs crash crashes crashed missing lost cold "
        "stale noisy crowded waste wasted unacceptable unreliable useless mess messy "
        "worse delay delayed cancel cancelled ignored"), -1.5),
    **dict.fromkeys(_words(
        "terrible horrible awful worst hate hated disgusting pathetic ridiculous scam "
        "fraud nightmare furious appalling dreadful atrocious"), -3.0),
}
_NEGATORS = frozenset(_words(
    "not no never none nobody nothing neither nor cannot cant dont doesnt didnt isnt "
    "wasnt arent werent wont wouldnt couldnt shouldnt hardly barely without lack "
    "lacks lacking"))
_INTENSIFIERS = {"very": 1.4, "really": 1.4, "so": 1.3, "extremely": 1.7, "super": 1.4,
                 "too": 1.3, "absolutely": 1.6, "totally": 1.4, "incredibly": 1.6, "quite": 1.1,
                 "pretty": 1.1, "most": 1.3, "highly": 1.4, "slightly": 0.6, "somewhat": 0.7}
_CONTRAST = frozenset({"but", "however", "although", "though", "yet"})
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def english_polarity(text: str) -> float:
    """Summed word polarity with 3-word negation scope, intensifiers and "but" weighting."""
    words = [w.replace("'", "") for w in _WORD.findall(text.lower())]
    total = 0.0
    negate_left = 0
    boost = 1.0
    weight = 1.0
    for w in words:
        if w in _CONTRAST:
            total *= 0.5  # what follows "but" is what the customer means
            weight = 1.5
            negate_left = 0
            continue
        if w in _NEGATORS or w.endswith("nt") and w[:-2] in {"is", "was", "do", "does", "did", "are",
                                                                 "were", "wo", "would", "could",
                                                                 "should", "ca", "have", "has"}:
            negate_left = 3
            continue
        if w in _INTENSIFIERS:
            boost *= _INTENSIFIERS[w]
            continue
        value = _EN_LEXICON.get(w)
        if value is not None:
            if negate_left:
                value = -value * 0.75
            total += value * boost * weight
        boost = 1.0
        negate_left = max(negate_left - 1, 0)
    if "!" in text and total:
        total *= 1.2
    return total


def english_probability(text: str) -> float:
    """Polarity squashed to 0..1 (0.5 = no opinion words)."""
    return 1.0 / (1.0 + math.exp(-english_polarity(text)))


class DefaultModel:
    """SnowNLP for Chinese, the English lexicon for English; no training, nothing downloaded."""

    name = "snownlp"

    def score(self, texts: Sequence[str], languages: Sequence[str]) -> np.ndarray:
        out = np.empty(len(texts), dtype=float)
        snow: Any = None
        for i, (text, lang) in enumerate(zip(texts, languages, strict=True)):
            if lang == "en":
                out[i] = english_probability(text)
                continue
            if snow is None:
                from snownlp import SnowNLP  # loads its bundled model once (~1 s)

                snow = SnowNLP
            out[i] = float(snow(text).sentiments) if text.strip() else 0.5
        return out


@dataclass
class TrainedModel:
    """A fitted scikit-learn pipeline plus what it was trained on (stored together with joblib)."""

    pipeline: Any
    languages: list[str]
    trained_at: str
    n_train: int
    metrics: dict[str, float] = field(default_factory=dict)
    source: str = ""
    name: str = "trained"
    fingerprint: str = ""  # sha256 of the model file it was loaded from ("" when built in memory)

    def score(self, texts: Sequence[str], languages: Sequence[str]) -> np.ndarray:
        """P(positive); comments in a language it never saw fall back to the default model."""
        out = np.full(len(texts), 0.5)
        known = [i for i, lang in enumerate(languages) if lang in self.languages]
        other = [i for i, lang in enumerate(languages) if lang not in self.languages]
        if known:
            from cxloop.tasks.ngram_scorer import for_pipeline

            scorer = for_pipeline(self.pipeline)  # the same probabilities, several times faster
            chosen = [texts[i] for i in known]
            out[known] = (scorer.score(chosen) if scorer is not None
                          else self.pipeline.predict_proba(chosen)[:, 1])
        if other:
            out[other] = DefaultModel().score([texts[i] for i in other], [languages[i] for i in other])
        return out


def build_pipeline(c: float = 1.0) -> Any:
    """Character 1-3-grams inside word boundaries + class-balanced logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer  # on use: scikit-learn takes ~1.8 s
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), min_df=2, sublinear_tf=True),
        LogisticRegression(C=c, max_iter=2000, class_weight="balanced"),
    )


_POS_LABELS = {"1", "1.0", "pos", "positive", "good", "true", "yes", "好评", "正面", "积极", "满意"}
_NEG_LABELS = {"0", "0.0", "-1", "-1.0", "neg", "negative", "bad", "false", "no", "差评", "负面",
               "消极", "不满意"}
_NEUTRAL_LABELS = {"neutral", "neu", "中性", "中评", "2", "mixed"}


def normalise_labels(labels: Sequence[Any], where: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """(y as 0/1, mask of rows kept); neutral rows are dropped, anything unknown is an error."""
    y = np.zeros(len(labels), dtype=int)
    keep = np.ones(len(labels), dtype=bool)
    for i, raw in enumerate(labels):
        v = str(raw).strip().lower()
        if v in _POS_LABELS:
            y[i] = 1
        elif v in _NEG_LABELS:
            y[i] = 0
        elif v in _NEUTRAL_LABELS:
            keep[i] = False
        else:
            raise ModelError(f"{where}: row {i + 2}: label {raw!r} is not a sentiment label; use "
                             "1/0, positive/negative, pos/neg or 好评/差评 (neutral rows are skipped)")
    return y, keep


@dataclass
class TrainResult:
    model: TrainedModel
    accuracy: float
    macro_f1: float
    n_train: int
    n_test: int
    dropped: int
    per_second: float
    seconds: float


def train(texts: Sequence[str], labels: Sequence[Any], *, test_size: float = 0.2, seed: int = 42,
          source: str = "", min_rows: int = 20) -> TrainResult:
    """Fit on a stratified split, report accuracy / macro-F1 on the held-out part, then refit on all.

    The stored model is refitted on every row (more data is better); the printed figures come from
    the held-out split, so they are honest estimates of the refitted model, not training accuracy.
    """
    from sklearn.metrics import accuracy_score, f1_score  # on use: scikit-learn takes ~1.8 s
    from sklearn.model_selection import train_test_split

    where = source or "training data"
    y_all, keep = normalise_labels(labels, where)
    x = [str(t) for t, k in zip(texts, keep, strict=True) if k]
    y = y_all[keep]
    if len(x) < min_rows:
        raise ModelError(f"{where}: {len(x)} labelled comments; need at least {min_rows}")
    counts = np.bincount(y, minlength=2)
    if counts.min() < 2:
        raise ModelError(f"{where}: needs both positive and negative examples (have {counts[1]} "
                         f"positive, {counts[0]} negative)")
    started = time.perf_counter()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    pipe = build_pipeline()
    pipe.fit(x_tr, y_tr)
    t0 = time.perf_counter()
    pred = pipe.predict(x_te)
    per_second = len(x_te) / max(time.perf_counter() - t0, 1e-9)
    acc = float(accuracy_score(y_te, pred))
    f1 = float(f1_score(y_te, pred, average="macro"))
    final = build_pipeline()
    final.fit(x, y)
    langs = detect_languages(list(x))
    seen = sorted({lang for lang in set(langs) if langs.count(lang) >= max(10, 0.05 * len(langs))})
    model = TrainedModel(
        pipeline=final, languages=seen or sorted(set(langs)),
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"), n_train=len(x),
        metrics={"accuracy": acc, "macro_f1": f1, "n_test": len(x_te)}, source=source,
    )
    return TrainResult(model=model, accuracy=acc, macro_f1=f1, n_train=len(x_tr), n_test=len(x_te),
                       dropped=int((~keep).sum()), per_second=per_second,
                       seconds=time.perf_counter() - started)


def train_from_file(settings: Settings, path: Path, text_column: str | None = None,
                    label_column: str | None = None, test_size: float = 0.2) -> tuple[TrainResult, Path]:
    """`cxloop comments train`: read a labelled file, train, store at `comments.model_path`."""
    texts, labels = read_labelled(path, text_column, label_column)
    result = train(texts, labels, test_size=test_size, source=str(path))
    return result, save_model(result.model, settings.resolve(settings.comments.model_path))


def save_model(model: TrainedModel, path: Path) -> Path:
    import joblib  # on use, with scikit-learn: only training and trained models need them

    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": MODEL_FORMAT, "kind": "cxloop-sentiment", "pipeline": model.pipeline,
               "languages": model.languages, "trained_at": model.trained_at,
               "n_train": model.n_train, "metrics": model.metrics, "source": model.source}
    tmp = path.with_suffix(path.suffix + ".tmp")
    joblib.dump(payload, tmp)
    tmp.replace(path)  # never leave a half-written model where `auto` would pick it up
    return path


def load_trained(path: Path) -> TrainedModel:
    """Load a model written by `save_model` (a joblib pickle: only load files you created).

    Loaded once per process and file version (path, size, modification time): a cycle, the demo's
    six cycles or a test re-running the stage do not unpickle the same model again and again.
    """
    if not path.exists():
        raise ModelError(f"{path}: no trained sentiment model (run `cxloop comments train --data FILE`)")
    st = path.stat()
    return _load_trained(str(path.resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=4)
def _load_trained(path_str: str, size: int, mtime_ns: int) -> TrainedModel:
    import joblib  # on use, with scikit-learn: only training and trained models need them

    path = Path(path_str)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        payload = joblib.load(path)
    except Exception as exc:  # corrupt or foreign file
        raise ModelError(f"{path}: cannot read the sentiment model: {exc}") from None
    if not isinstance(payload, dict) or payload.get("kind") != "cxloop-sentiment":
        raise ModelError(f"{path}: not a cxloop sentiment model")
    if payload.get("format") != MODEL_FORMAT:
        raise ModelError(f"{path}: model format {payload.get('format')} is not supported; retrain it")
    return TrainedModel(pipeline=payload["pipeline"], languages=list(payload["languages"]),
                        trained_at=payload["trained_at"], n_train=int(payload["n_train"]),
                        metrics=dict(payload.get("metrics", {})), source=str(payload.get("source", "")),
                        fingerprint=digest)


def load_model(settings: Settings) -> SentimentModel:
    """The model `settings.comments.model` asks for: auto = the trained file if present, else default."""
    choice = settings.comments.model
    path = settings.resolve(settings.comments.model_path)
    if choice == "snownlp":
        return DefaultModel()
    if choice == "trained" or path.exists():
        return load_trained(path)
    return DefaultModel()


def read_labelled(path: Path, text_column: str | None = None,
                  label_column: str | None = None) -> tuple[list[str], list[Any]]:
    """Texts and labels from a CSV / Excel / JSON-lines file; columns guessed when not given."""
    import pandas as pd  # on use: the rule-based scorer does not need it

    if not path.exists():
        raise ModelError(f"{path}: file not found")
    suffix = path.suffix.lower()
    try:
        if suffix in {".xlsx", ".xls"}:
            df = pd.read_excel(path, dtype=str)
        elif suffix in {".jsonl", ".ndjson"}:
            df = pd.read_json(path, lines=True, dtype=False)
        else:
            try:
                df = pd.read_csv(path, dtype=str, encoding="utf-8-sig", keep_default_na=False)
            except UnicodeDecodeError:
                df = pd.read_csv(path, dtype=str, encoding="gb18030", keep_default_na=False)
    except (ValueError, OSError) as exc:
        raise ModelError(f"{path}: cannot read: {exc}") from None
    cols = [str(c) for c in df.columns]

    def pick(given: str | None, candidates: tuple[str, ...], what: str) -> str:
        if given:
            if given not in cols:
                raise ModelError(f"{path}: no column {given!r} ({what}); columns: {', '.join(cols)}")
            return given
        for c in candidates:
            for col in cols:
                if col.strip().lower() == c:
                    return col
        raise ModelError(f"{path}: cannot tell which column is the {what}; pass "
                         f"--{what.replace(' ', '-')}-column (columns: {', '.join(cols)})")

    tcol = pick(text_column, ("comment", "review", "text", "content", "评论", "内容"), "text")
    lcol = pick(label_column, ("label", "sentiment", "polarity", "标签", "情感"), "label")
    df = df[[tcol, lcol]]
    df = df[df[tcol].astype(str).str.strip() != ""]
    return df[tcol].astype(str).tolist(), df[lcol].tolist()
