"""The comments stage: sentiment and themes for every comment of a period, in Chinese and English.

Scores say how much, comments say why. Each comment gets a sentiment (negative / neutral /
positive with the probability positive as score, see `tasks/sentiment.py`) and the topics of the
taxonomy it mentions. Topics become KPI scopes (`theme_share`, `theme_negative_share`, computed
by `tasks/kpis/` from `Feedback.themes`), and a department owning a topic (`owns.topic`) gets the
actions its theme triggers.

Chinese is matched on jieba words, never on substrings: "价格" (price) must not match 评价格外
("reviews are especially ..."), which a substring search would. English is matched on lower-case
words with simple plural stripping.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import lru_cache, reduce
from itertools import repeat
from operator import or_
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, Table, insert, select, update

from cxloop.config import CommentsConfig, ConfigError, Settings, TopicConfig, shipped_topic_tables
from cxloop.models import CommentAnalysis, Feedback, utcnow
from cxloop.paths import TEMPLATES
from cxloop.tasks import month, workers
from cxloop.tasks.codes import factorize
from cxloop.tasks.masking import mask_pii
from cxloop.tasks.ngram_scorer import portable
from cxloop.tasks.segmentation import CJK, add_words, current_cutter, segment, taught, teach, token_units
from cxloop.tasks.sentiment import (
    NEGATIVE,
    NEUTRAL,
    POSITIVE,
    SentimentModel,
    TrainedModel,
    detect_languages,
    label_of,
    load_model,
)
from cxloop.vocabulary import split_themes

DEFAULT_TAXONOMY = TEMPLATES / "topics.default.toml"
FEEDBACK: Table = Feedback.__table__  # type: ignore[attr-defined]
_EN_WORD = re.compile(r"[a-z0-9]+")
_V = TypeVar("_V")
log = logging.getLogger(__name__)

# --- taxonomy -----------------------------------------------------------------------------------


def default_topics() -> list[TopicConfig]:
    """The shipped retail / e-commerce / service taxonomy (`templates/topics.default.toml`)."""
    return _default_topics()


@lru_cache(maxsize=1)
def _default_topics() -> list[TopicConfig]:
    try:
        return [TopicConfig(**t) for t in shipped_topic_tables()]
    except Exception as exc:
        raise ConfigError(f"{DEFAULT_TAXONOMY}: invalid default taxonomy: {exc}") from None


def load_taxonomy(settings: Settings) -> list[TopicConfig]:
    """The config's `[[topics]]` when given (they replace the default), else the default taxonomy."""
    topics = settings.topics if settings.topics is not None else default_topics()
    ids = [t.id for t in topics]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"topics: duplicate topic id(s) {dupes}")
    for t in topics:
        if "," in t.id or not t.id.strip():
            raise ConfigError(f"topics: id {t.id!r} must be non-empty and contain no comma")
        for lang, pats in t.patterns.items():
            for p in pats:
                try:
                    re.compile(p)
                except re.error as exc:
                    raise ConfigError(f"topics[{t.id}].patterns.{lang}: bad regular expression "
                                      f"{p!r}: {exc}") from None
    return list(topics)


def topic_name(topic: TopicConfig, lang: str) -> str:
    return topic.name_zh if lang == "zh" else topic.name_en


# --- tagging ---------------------------------------------------------------------------------


@lru_cache(maxsize=1 << 16)  # words repeat: a comment's English words are mostly known ones
def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("es") and word[:-2].endswith(("s", "x", "ch", "sh", "z")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


class _Found(dict[str, _V]):
    """text -> `find(text)`, found on first use and kept, at most `limit` of them: words and tokens
    repeat across comments even where the comments do not."""

    def __init__(self, find: Callable[[str], _V], limit: int = 200_000) -> None:
        super().__init__()
        self._find, self._limit = find, limit

    def __missing__(self, text: str) -> _V:
        found = self._find(text)
        if len(self) < self._limit:
            self[text] = found
        return found


# A Python call per word was a fifth of tagging a comment.
_SINGULARS: _Found[str] = _Found(_singular)


def english_words(text: str) -> list[str]:
    """Lower-case words with simple plural stripping ("deliveries" -> "delivery")."""
    return list(map(_SINGULARS.__getitem__, _EN_WORD.findall(text.lower())))


def _phrase(keyword: str) -> str:
    return " ".join(english_words(keyword))


@dataclass(frozen=True)
class _Matcher:
    id: str
    words: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]


class ThemeTagger:
    """Tags a comment with the ids of the topics it mentions, in taxonomy order."""

    def __init__(self, topics: Sequence[TopicConfig]):
        self.topics = list(topics)
        zh_words: list[str] = []
        matchers = []
        self.max_words = 1
        for t in self.topics:
            words: set[str] = set()
            for kw in t.keywords.get("zh", []):
                kw = kw.strip().lower()
                if kw:
                    words.add(kw if CJK.search(kw) else _phrase(kw))
                    zh_words.append(kw)
            for kw in t.keywords.get("en", []):
                ph = _phrase(kw)
                if ph:
                    words.add(ph)
                    self.max_words = max(self.max_words, ph.count(" ") + 1)
            pats = tuple(re.compile(p, re.IGNORECASE) for lang in ("zh", "en")
                         for p in t.patterns.get(lang, []))
            matchers.append(_Matcher(t.id, frozenset(words), pats))
        self._matchers = matchers
        self._phrases = frozenset(w for m in matchers for w in m.words if " " in w)
        self._starts = frozenset(p.split(" ", 1)[0] for p in self._phrases)
        self._bits: dict[str, int] = {}  # keyword -> the topics holding it, one bit per topic
        for k, m in enumerate(matchers):
            for w in m.words:
                self._bits[w] = self._bits.get(w, 0) | 1 << k
        self._patterned = [(1 << k, m.patterns) for k, m in enumerate(matchers) if m.patterns]
        add_words(zh_words)  # before any token's topics are found (`_token_topics`)
        # token -> the topics of its units, found once per tagger (~20 MB at most)
        self._token_bits: _Found[int] = _Found(self._token_topics)
        self._ids: dict[int, list[str]] = {}  # topics found (one bit each) -> their ids, in order

    def tokens(self, text: str) -> set[str]:
        """Every unit a keyword can match: jieba words (Chinese) and English word n-grams. (`tag`
        matches the same units without making the set.)"""
        units = set(self._english_units(english_words(text)))
        if CJK.search(text):
            units.update(segment(text))
        return units

    def tag(self, text: str | None) -> list[str]:
        if not text or not text.strip():
            return []
        words = english_words(text)
        if self._starts.isdisjoint(words):  # no keyword phrase can begin here: each word is a unit
            hit = reduce(or_, map(self._bits.get, words, repeat(0)), 0)
        else:
            hit = reduce(or_, map(self._bits.get, self._english_units(words), repeat(0)), 0)
        if CJK.search(text):
            hit |= self._chinese_bits(text)
        for bit, patterns in self._patterned:
            if not hit & bit:
                for p in patterns:
                    if p.search(text):
                        hit |= bit
                        break
        if not hit:
            return []
        ids = self._ids.get(hit)
        if ids is None:
            ids = self._ids[hit] = [m.id for k, m in enumerate(self._matchers) if hit >> k & 1]
        return list(ids)

    def _english_units(self, words: list[str]) -> Iterator[str]:
        """A text's English `words` (`english_words`), a keyword phrase as one unit where one
        begins, longest first ("customer service" is not also "service"). Only a phrase's first
        word can begin one, so the other words are not joined with their neighbours at all."""
        i = 0
        while i < len(words):
            unit, step = words[i], 1
            if unit in self._starts:
                for n in range(min(self.max_words, len(words) - i), 1, -1):
                    if (phrase := " ".join(words[i:i + n])) in self._phrases:
                        unit, step = phrase, n
                        break
            yield unit
            i += step

    def _token_topics(self, token: str) -> int:
        """The topics of a token's units (`segmentation.token_units`).

        Never stale, whatever words are taught later: a token's units depend on the cutter only
        through `has_word` of its sub-words, and a sub-word counts only if it is one of the
        tagger's keywords - every Chinese one taught when the tagger was made (and dictionaries
        only grow), the others never taught (only words with Chinese are). So a token's topics
        are kept, and no cutter is held."""
        return reduce(or_, map(self._bits.get, token_units(token, current_cutter()), repeat(0)), 0)

    def _chinese_bits(self, text: str) -> int:
        """The topics of `segment(text)`'s units, each token's found once per tagger: words repeat
        across comments even when the comments do not (the Python side of a distinct comment's
        units cost ~5-10 us). The text is cut whole by the current cutter, as `segment` cuts it."""
        cut = current_cutter().cut(text, False)
        return reduce(or_, map(self._token_bits.__getitem__, cut), 0)




@lru_cache(maxsize=8)
def _tagger_for(key: str) -> ThemeTagger:
    return ThemeTagger([TopicConfig.model_validate_json(j) for j in key.split("\n")])


def _tagger_of(topics: Sequence[TopicConfig]) -> ThemeTagger:
    if not topics:
        return ThemeTagger([])
    return _tagger_for("\n".join(t.model_dump_json() for t in topics))


def tagger_for(settings: Settings) -> ThemeTagger:
    """A tagger for the settings' taxonomy, built once per taxonomy and process."""
    return _tagger_of(load_taxonomy(settings))


# --- the stage ----------------------------------------------------------------------------------


@dataclass
class CommentResult:
    sentiment: str
    score: float
    themes: list[str]
    language: str


def analyse_texts(texts: Sequence[str], settings: Settings, *, declared: Sequence[str | None] | None = None,
                  model: SentimentModel | None = None, tagger: ThemeTagger | None = None
                  ) -> list[CommentResult]:
    """Sentiment and themes for plain texts (no database): used by the stage, the CLI and the bench.

    Each distinct text is analysed once: real exports repeat short comments ("很好", "ok") many
    times, and the result depends only on the text (and its language for the score).
    """
    decl = declared if declared is not None else [None] * len(texts)
    pairs = list(dict.fromkeys(zip(texts, decl, strict=True)))
    langs, scores, tags = analyse_pairs(pairs, settings, model, tagger)
    labels, stored = _as_stored(scores, settings.comments)
    result_of = {key: CommentResult(label, v, tag, lang)
                 for key, lang, label, v, tag in zip(pairs, langs, labels, stored, tags, strict=True)}
    return [replace(result_of[key], themes=list(result_of[key].themes))
            for key in zip(texts, decl, strict=True)]


def _as_stored(scores: np.ndarray, cfg: CommentsConfig) -> tuple[list[str], list[float]]:
    """Each P(positive)'s label and the score as it is stored (6 decimals): one rule for the
    stage, collect's inserts and `analyse_texts`."""
    values = scores.tolist()
    return [label_of(v, cfg) for v in values], [round(v, 6) for v in values]


Analysis = tuple[list[str], np.ndarray, list[list[str]]]  # per text: language, P(positive), topics


def analyse_pairs(pairs: list[tuple[str, str | None]], settings: Settings,
                  model: SentimentModel | None = None, tagger: ThemeTagger | None = None) -> Analysis:
    """Language, score and topics of distinct (comment, declared language) pairs: here, in worker
    processes (many pairs) or on the Dask cluster (`[engine] dask_address`), with the same
    results."""
    model = model or load_model(settings)
    tagger = tagger or tagger_for(settings)
    analysed = None
    if len(pairs) >= PARALLEL_TEXTS:
        analysed = (_on_cluster(settings.engine.dask_address, pairs, model, tagger)
                    if settings.engine.dask_address else _in_parallel(pairs, model, tagger))
    return analysed if analysed is not None else analyse_part(pairs, model, tagger)


def analyse_part(pairs: Sequence[tuple[str, str | None]], model: SentimentModel, tagger: ThemeTagger
                 ) -> Analysis:
    """`analyse_pairs` in this process (a worker's part). A comment's topics do not depend on its
    language: a text declared in two languages is tagged once."""
    langs = detect_languages([t for t, _ in pairs], [d for _, d in pairs])
    scores = model.score([t for t, _ in pairs], langs) if pairs else np.zeros(0)
    tags_of: dict[str, list[str]] = {}
    tags = [tags_of[t] if t in tags_of else tags_of.setdefault(t, tagger.tag(t)) for t, _ in pairs]
    return langs, scores, tags


# Distinct comments from which the analysis is shared among worker processes: about 25-30 us per
# 50-character Chinese comment (the words cut in Rust, `tasks/segmentation.py`, each token's
# topics looked up once; the model's n-grams as arrays, `tasks/ngram_scorer.py`, and the
# languages, `sentiment.detect_languages`), against ~0.3 s to start a worker and to move the
# texts and results: below this many, one process is about as fast on two cores.
PARALLEL_TEXTS = 50_000
_PARTS_PER_WORKER = 4  # parts of unequal cost even out
_worker_state: tuple[SentimentModel, ThemeTagger] | None = None


def _worker_count() -> int:
    return min(workers.cores(), 8)


def _start_worker(model: SentimentModel, topics: list[TopicConfig], words: dict[str, tuple[int, int]]
                  ) -> None:
    global _worker_state
    teach(words)  # the parent's dictionary words: no jieba to load here
    _worker_state = (model, _tagger_of(topics))


def _analyse_part(pairs: list[tuple[str, str | None]]) -> Analysis:
    """`analyse_part` in a worker process."""
    assert _worker_state is not None
    return analyse_part(pairs, *_worker_state)


def _joined(done: list[Analysis]) -> Analysis:
    return ([lang for langs, _, _ in done for lang in langs], np.concatenate([s for _, s, _ in done]),
            [tag for _, _, tags in done for tag in tags])


def _in_parallel(pairs: list[tuple[str, str | None]], model: SentimentModel, tagger: ThemeTagger
                 ) -> Analysis | None:
    """`analyse_part` of many distinct comments, shared among worker processes (the analysis
    is pure Python: threads cannot share it). None where there is one core or no worker can
    start: the caller then analyses them itself, with the same results."""
    count = _worker_count()
    if count < 2:
        return None
    size = -(-len(pairs) // (count * _PARTS_PER_WORKER))
    parts = [pairs[i:i + size] for i in range(0, len(pairs), size)]
    try:
        with ProcessPoolExecutor(count, mp_context=workers.context(), initializer=_start_worker,
                                 initargs=(portable(model), tagger.topics, taught())) as pool:
            done = list(pool.map(_analyse_part, parts))
    except Exception as exc:  # no worker process here, or a model that cannot be sent to one
        log.warning("comment analysis in worker processes failed (%s: %s); analysing here",
                    type(exc).__name__, exc)
        return None
    return _joined(done)


def _on_cluster(address: str, pairs: list[tuple[str, str | None]], model: SentimentModel,
                tagger: ThemeTagger) -> Analysis:
    """`_in_parallel` on the Dask cluster at `address` (`[engine] dask_address`): the same parts,
    the same results. A cluster that fails fails the stage (its retry runs it again)."""
    from cxloop.tasks import dask_work

    size = -(-len(pairs) // (_DASK_PARTS))
    parts = [pairs[i:i + size] for i in range(0, len(pairs), size)]
    return _joined(dask_work.analyse_comments(address, parts, portable(model), tagger.topics, taught()))


_DASK_PARTS = 64  # parts of the distinct comments sent to a cluster: enough to keep ten workers busy


@dataclass
class CommentsSummary:
    """The period's comments after the stage (the same on a re-run, whatever was redone)."""

    period: str
    model: str
    comments: int = 0
    analysed: int = 0
    cleared: int = 0
    negative: int = 0
    neutral: int = 0
    positive: int = 0
    with_themes: int = 0
    seconds: float = 0.0

    def counts(self) -> dict[str, int | float | str]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


ANALYSIS_VERSION = "1"  # bump when the scoring / tagging code changes what it returns
# Per period: the fingerprint its stored analyses carry.
MARK: Table = CommentAnalysis.__table__  # type: ignore[attr-defined]
UPDATE_CHUNK = 20_000


def analysis_fingerprint(settings: Settings, model: SentimentModel) -> str:
    """What a stored analysis depends on besides the comment: model, taxonomy, label thresholds.

    A trained model is identified by the sha256 of its file (or of its pickled pipeline when it
    was built in memory), the default model by name and code version.
    """
    h = hashlib.sha256(f"v{ANALYSIS_VERSION}|{model.name}|".encode())
    model_fp = getattr(model, "fingerprint", "")
    if not model_fp and isinstance(model, TrainedModel):
        import joblib  # on use: only a trained model needs it

        model_fp = joblib.hash(model.pipeline)
    h.update(f"{model_fp}|{settings.comments.negative_below}|{settings.comments.positive_above}|".encode())
    h.update("\n".join(t.model_dump_json() for t in load_taxonomy(settings)).encode())
    return h.hexdigest()


def _marker(conn: Connection, period: str) -> str | None:
    return conn.execute(select(MARK.c.fingerprint).where(MARK.c.period == period)).scalar_one_or_none()


def _set_marker(conn: Connection, period: str, fingerprint: str, model: str) -> None:
    values = {"fingerprint": fingerprint, "model": model, "analysed_at": utcnow()}
    done = conn.execute(update(MARK).where(MARK.c.period == period).values(**values))
    if not done.rowcount:
        conn.execute(insert(MARK).values(period=period, **values))


def analyse_comments(settings: Settings, engine: Engine, period: str,
                     model: SentimentModel | None = None, *,
                     month_rows: month.Month | None = None) -> CommentsSummary:
    """Fill sentiment, sentiment_score and themes for every row of `period` that has a comment.

    Only rows without an analysis are scored (new rows, and rows whose content changed: collect
    clears their sentiment and themes), unless the model, the taxonomy or the label thresholds
    changed since the period was last analysed (fingerprint kept in `comment_analysis`): then
    every row is analysed again. Quarantined rows are analysed too, so a row readmitted later
    already carries its analysis. Re-running writes
    nothing new and returns the same summary (idempotent). Scoring happens outside the write
    transaction; each update is guarded by the comment it was computed from, so a comment changed
    meanwhile by a re-import is never given a stale result. Rows come from `month_rows`, the month
    the cycle shares among its stages (None: read from the database); only rows whose values
    change are written, and the shared frame is patched.
    """
    started = time.perf_counter()
    model = model or load_model(settings)
    fingerprint = analysis_fingerprint(settings, model)
    with engine.connect() as conn:
        full = _marker(conn, period) != fingerprint
    month_rows = month_rows or month.Month(engine, period)
    rows = month_rows.rows(["id", "comment", "language", *RESULT_COLUMNS], having="comment")
    # A kept month's whole column's codes (KPIs ask for them again; a month read from its copy or
    # the database comes without the rows that have no comment): on the rows with a comment they
    # are the codes of those rows alone, as missing comments have none.
    all_codes, texts = factorize(rows["comment"])
    present = all_codes >= 0
    rows = rows[present].reset_index(drop=True)
    text_code = all_codes[present].astype(np.int64)
    stored = rows[list(RESULT_COLUMNS)].notna().to_numpy()
    blank = np.array([not t.strip() for t in texts], dtype=bool)[text_code]
    todo = ~blank & (full | ~stored.all(axis=1))
    clear = blank & stored.any(axis=1)  # a blank comment keeps no analysis
    summary = CommentsSummary(period=period, model=model.name, comments=len(rows),
                              analysed=int((~blank).sum()), cleared=int(blank.sum()))
    kept = rows[~blank & ~todo]
    for label, n in kept["sentiment"].value_counts().items():
        if label in (NEGATIVE, NEUTRAL, POSITIVE):
            setattr(summary, str(label), int(n))
    summary.with_themes = int(kept["themes"].ne("").sum())
    analyse = rows[todo]
    new, distinct = _analyse_rows(analyse, texts, text_code[todo], settings, model, summary)
    changed = _changed(analyse, new)
    written, values = analyse[changed], {c: v[changed] for c, v in new.items()}
    cleared = rows[clear]
    params = list(zip(values["sentiment"].tolist(), values["sentiment_score"].tolist(),
                      values["themes"].tolist(), written["id"].tolist(), written["comment"].tolist(),
                      strict=True))
    params += [(None, None, None, i, c)
               for i, c in zip(cleared["id"].tolist(), cleared["comment"].tolist(), strict=True)]
    with engine.begin() as conn:
        updated = _write(conn, params)
        if full or _marker(conn, period) != fingerprint:
            _set_marker(conn, period, fingerprint, model.name)
    if updated == len(params):
        month_rows.patch(written["id"].to_numpy(), values)
        month_rows.patch(cleared["id"].to_numpy(), dict.fromkeys(RESULT_COLUMNS, None))
    else:  # a comment changed meanwhile: its row kept what it had, so the kept frame is unsure
        month_rows.forget()
    summary.seconds = time.perf_counter() - started
    log.info("comments %s: %d of %d comments analysed now (%s), %d distinct texts, %d rows written",
             period, int(todo.sum()), summary.analysed,
             "all: model or taxonomy changed" if full else "new or changed only", distinct, len(params))
    return summary


RESULT_COLUMNS = ("sentiment", "sentiment_score", "themes")


_Key = tuple[str, str | None]  # a comment and its declared language
_Result = tuple[str, float, str]  # sentiment, score, themes as stored


class InsertAnalysis:
    """The analysis of repeated comments, for collect to write with the rows it inserts.

    Writing an analysis into stored rows is most of what the stage costs when the comments repeat
    (an UPDATE per row: ~1.5 s for a million responses with 20% comments), and a comment that
    repeats costs only its first analysis. So collect's chunked load gives the rows of such
    comments their sentiment, score and themes as it inserts them: a (comment, declared
    language) that occurs `REPEATS` times in a chunk, or was analysed for an earlier chunk
    ("好评", "ok"). A rarer comment is left to the stage: analysing it (~0.2 ms, SnowNLP ~5 ms)
    costs far more than writing it, and the stage shares many among processes, which collect,
    already busy with its inserts, cannot.

    Used only while the period's analysis marker is absent or current: its rows then all carry
    the current analysis or none. Collect sets an absent marker once it wrote an analysis, so
    the stage analyses only the rows still without one.

    With a trained model (tens of microseconds a comment) every comment of a chunk is analysed
    during collect (`in_reader`, `columns(every=True)`): by the chunks' reading process, or by
    the main process when that one waited for chunks (`tasks.collect.chunked.MAIN_WAITED`); on up
    to 2 cores every chunk's, on more only while the reader has time to spare
    (`tasks.collect.chunked.EVERY_CHUNK`). What is analysed is written with the rows, as above,
    and the stage is left the rest."""

    REPEATS = 10  # in a chunk (100k rows)
    _KNOWN = 100_000  # analyses kept across chunks

    def __init__(self, settings: Settings, model: SentimentModel, fingerprint: str) -> None:
        self.settings, self.model, self.fingerprint = settings, model, fingerprint
        self.tagger = tagger_for(settings)
        self.written = False  # whether a row got an analysis
        self._known: dict[_Key, _Result] = {}

    def in_reader(self) -> bool:
        """Whether the reading process may analyse whole chunks: only with a trained model (the
        default one costs ~5 ms a comment, which the stage shares among processes)."""
        return isinstance(self.model, TrainedModel)

    def __getstate__(self) -> dict[str, Any]:
        """As it goes to the reading process: the model's scorer, the topics and the dictionary
        words taught here (no scikit-learn or jieba to load there)."""
        return {"settings": self.settings, "model": portable(self.model), "fingerprint": self.fingerprint,
                "topics": self.tagger.topics, "words": taught()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        teach(state["words"])
        self.settings, self.model, self.fingerprint = state["settings"], state["model"], state["fingerprint"]
        self.tagger = _tagger_of(state["topics"])
        self.written = False
        self._known = {}

    @classmethod
    def start(cls, conn: Connection, settings: Settings, period: str) -> InsertAnalysis | None:
        """None when the stage will analyse the period again anyway (another model or taxonomy
        than its marker's), or the model cannot be loaded (the stage reports that)."""
        try:
            model = load_model(settings)
            fingerprint = analysis_fingerprint(settings, model)
        except Exception:
            return None
        if _marker(conn, period) not in (None, fingerprint):
            return None
        return cls(settings, model, fingerprint)

    def columns(self, records: pd.DataFrame, every: bool = False) -> dict[str, np.ndarray] | None:
        """Sentiment, score and themes per row of `records` (None / NaN where not analysed);
        None when no row is. `every`: every comment, not only the repeated and known ones."""
        if "comment" not in records or not len(records):
            return None
        codes, texts = pd.factorize(records["comment"].to_numpy(dtype=object))
        blank = np.array([not str(t).strip() for t in texts] + [True], dtype=bool)
        if "language" in records:
            lang_code, langs = pd.factorize(records["language"].to_numpy(dtype=object),
                                            use_na_sentinel=False)
        else:
            lang_code, langs = np.zeros(len(codes), dtype=np.int64), np.array([None], dtype=object)
        width = len(langs)
        present = ~blank[codes]
        pair_code, pairs = pd.factorize((codes * width + lang_code)[present])
        keys = [(str(texts[k // width]), None if pd.isna(langs[k % width]) else str(langs[k % width]))
                for k in pairs.tolist()]
        counts = np.bincount(pair_code, minlength=len(keys))
        chosen = [i for i, key in enumerate(keys) if every or counts[i] >= self.REPEATS or key in self._known]
        fresh = self._analyse([keys[i] for i in chosen if keys[i] not in self._known])
        results = [fresh[keys[i]] if keys[i] in fresh else self._known[keys[i]] for i in chosen]
        if len(self._known) + len(fresh) > self._KNOWN:
            self._known.clear()
        self._known.update(fresh)
        if not chosen:
            return None
        n = len(records)
        out = {"sentiment": np.full(n, None, dtype=object), "sentiment_score": np.full(n, np.nan),
               "themes": np.full(n, None, dtype=object)}
        per_pair = np.full(len(keys), -1, dtype=np.int64)
        per_pair[chosen] = np.arange(len(chosen))
        rows = np.flatnonzero(present)
        which = per_pair[pair_code]
        rows, which = rows[which >= 0], which[which >= 0]
        out["sentiment"][rows] = np.array([r[0] for r in results], dtype=object)[which]
        out["sentiment_score"][rows] = np.array([r[1] for r in results], dtype="float64")[which]
        out["themes"][rows] = np.array([r[2] for r in results], dtype=object)[which]
        self.written = self.written or bool(len(rows))
        return out

    def every_comment(self, records: pd.DataFrame, what: str) -> dict[str, np.ndarray] | None:
        """`columns(records, every=True)`, or None when the analysis fails (logged, naming `what`):
        it only spares the comments stage work, which then analyses these rows; the load goes on."""
        try:
            return self.columns(records, every=True)
        except Exception:
            log.warning("%s left to the comments stage", what, exc_info=True)
            return None

    def _analyse(self, keys: list[_Key]) -> dict[_Key, _Result]:
        """The distinct `keys` analysed in this process, as `analyse_texts` would (never in worker
        processes or on a cluster: the chunks' reading process may not start any)."""
        if not keys:
            return {}
        _, scores, tags = analyse_part(keys, self.model, self.tagger)
        labels, stored = _as_stored(scores, self.settings.comments)
        return {key: (label, v, ",".join(t))
                for key, label, v, t in zip(keys, labels, stored, tags, strict=True)}

    def finish(self, conn: Connection, period: str) -> None:
        """Set the period's marker if it had none and a row got an analysis."""
        if self.written and _marker(conn, period) is None:
            _set_marker(conn, period, self.fingerprint, self.model.name)


def _analyse_rows(rows: pd.DataFrame, texts: np.ndarray, text_code: np.ndarray, settings: Settings,
                  model: SentimentModel, summary: CommentsSummary) -> tuple[dict[str, np.ndarray], int]:
    """Per row of `rows` (comment `texts[text_code]`), the new sentiment, score and themes (one
    array each), and the number of distinct texts. Each distinct (comment, declared language) is
    analysed once; the summary counts the rows by result. Nothing to analyse (a re-run) builds no
    tagger, so jieba's dictionary (~0.7 s) is not loaded."""
    if not len(rows):
        return {"sentiment": np.array([], dtype=object), "sentiment_score": np.array([], dtype="float64"),
                "themes": np.array([], dtype=object)}, 0
    lang_code, langs = pd.factorize(rows["language"].to_numpy(dtype=object), use_na_sentinel=False)
    width = len(langs)
    code, pairs = pd.factorize(text_code * width + lang_code)
    declared = [None if pd.isna(lang) else str(lang) for lang in langs[pairs % width]]
    _, scores, tags = analyse_pairs(list(zip(texts[pairs // width].tolist(), declared, strict=True)),
                                    settings, model)
    label_list, stored = _as_stored(scores, settings.comments)
    labels = np.array(label_list, dtype=object)
    themes = np.array([",".join(t) for t in tags], dtype=object)
    n = np.bincount(code, minlength=len(labels))
    for label in (NEGATIVE, NEUTRAL, POSITIVE):
        setattr(summary, label, getattr(summary, label) + int(n[labels == label].sum()))
    summary.with_themes += int(n[themes != ""].sum())
    new = {"sentiment": labels, "sentiment_score": np.array(stored, dtype=np.float64), "themes": themes}
    return {c: v[code] for c, v in new.items()}, len(np.unique(text_code))


def _changed(rows: pd.DataFrame, new: dict[str, np.ndarray]) -> np.ndarray:
    """Rows whose stored result differs from the new one: only they are written."""
    changed = np.zeros(len(rows), dtype=bool)
    for c, v in new.items():
        changed |= rows[c].to_numpy(dtype=v.dtype) != v  # NaN (empty) differs from everything
    return changed


def _write(conn: Connection, params: list[tuple[Any, ...]]) -> int:
    """UPDATE the rows (sentiment, score, themes, id, comment), each guarded by its comment;
    returns the number of rows changed. SQLite: the driver's executemany (faster there than a
    temporary table and UPDATE ... FROM, which SQLite materialises first); PostgreSQL: COPY into a
    temporary table and one UPDATE ... FROM (about half the time of executemany at 200k rows)."""
    if not params:
        return 0
    if conn.dialect.name == "postgresql":
        driver = conn.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cur:
            cur.execute("CREATE TEMP TABLE comment_results (sentiment varchar, sentiment_score float8, "
                        "themes varchar, id bigint, comment text) ON COMMIT DROP")
            with cur.copy("COPY comment_results FROM STDIN") as copy:
                for row in params:
                    copy.write_row(row)
            cur.execute("ANALYZE comment_results")  # without statistics it joins row by row
            cur.execute(f"UPDATE {FEEDBACK.name} AS f SET sentiment = r.sentiment, "
                        "sentiment_score = r.sentiment_score, themes = r.themes FROM comment_results AS r "
                        "WHERE f.id = r.id AND f.comment = r.comment")
            return int(cur.rowcount)
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (f"UPDATE {FEEDBACK.name} SET sentiment = {mark}, sentiment_score = {mark}, themes = {mark} "
           f"WHERE id = {mark} AND comment = {mark}")
    updated = 0
    for i in range(0, len(params), UPDATE_CHUNK):
        updated += conn.exec_driver_sql(sql, params[i:i + UPDATE_CHUNK]).rowcount
    return updated


# --- reading the results back (CLI `themes`, reports, digests) --------------------------------


@dataclass
class ThemeRow:
    topic: str
    name: str
    owner: str | None
    count: int
    share: float | None
    share_low: float | None
    share_high: float | None
    negative: int
    negative_share: float | None
    negative_low: float | None
    negative_high: float | None
    example: str
    example_sentiment: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _wilson(k: int, n: int, confidence: float) -> tuple[float | None, float | None]:
    """The KPI stage's Wilson interval, as shares (0-1) rather than percent."""
    from cxloop.tasks.stats import wilson  # on use: scipy (~1.6 s) stays out of the fork server's preload

    low, high = wilson(k, n, confidence)
    return (None, None) if low is None or high is None else (low / 100, high / 100)


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def pick_examples(rows: Sequence[Any], k: int = 1) -> list[Any]:
    """Representative comments: the clearest complaints first (lowest score), mid-length preferred.

    The loop exists to fix problems, so a theme is illustrated by what hurts; a theme with no
    negative comment is shown by its most positive one.
    """
    negatives = [r for r in rows if r.sentiment == NEGATIVE]
    pool = negatives or list(rows)
    sign = 1 if negatives else -1

    def key(r: Any) -> tuple[int, float]:
        length = len(r.comment.strip())
        return (0 if 8 <= length <= 200 else 1, sign * (r.sentiment_score or 0.5))

    return sorted(pool, key=key)[:k]


def theme_overview(settings: Settings, engine: Engine, period: str, lang: str | None = None,
                   examples: int = 1) -> list[ThemeRow]:
    """Per topic: comments with it, share of analysed comments and negative share (Wilson intervals).

    Denominator: non-quarantined comments of the period that were analysed. Sorted by count, so
    the hot topics come first. Example comments are PII-masked; escaping is the renderer's job.
    """
    lang = lang or settings.project.language
    fb = FEEDBACK
    with engine.connect() as conn:
        rows = conn.execute(
            select(fb.c.id, fb.c.comment, fb.c.sentiment, fb.c.sentiment_score, fb.c.themes)
            .where(fb.c.period == period, fb.c.quarantined.is_(False), fb.c.themes.is_not(None))
            .order_by(fb.c.id)
        ).all()
    n = len(rows)
    conf = settings.kpis.confidence
    by_topic: dict[str, list[Any]] = {}
    for r in rows:
        for tid in split_themes(r.themes):
            by_topic.setdefault(tid, []).append(r)
    out = []
    for t in load_taxonomy(settings):
        hits = by_topic.get(t.id, [])
        neg = sum(r.sentiment == NEGATIVE for r in hits)
        s_low, s_high = _wilson(len(hits), n, conf)
        n_low, n_high = _wilson(neg, len(hits), conf)
        ex = pick_examples(hits, examples)
        out.append(ThemeRow(
            topic=t.id, name=topic_name(t, lang), owner=settings.owner_of("topic", t.id),
            count=len(hits), share=len(hits) / n if n else None, share_low=s_low, share_high=s_high,
            negative=neg, negative_share=neg / len(hits) if hits else None,
            negative_low=n_low, negative_high=n_high,
            example=" | ".join(_clip(mask_pii(r.comment)) for r in ex),
            example_sentiment=ex[0].sentiment if ex else None,
        ))
    out.sort(key=lambda r: -r.count)
    return out


def analysed_counts(engine: Engine, period: str) -> tuple[int, int]:
    """(rows of the period with a non-empty comment, of which analysed); to tell "not run yet"."""
    fb = FEEDBACK
    with engine.connect() as conn:
        rows = conn.execute(
            select(fb.c.comment, fb.c.sentiment)
            .where(fb.c.period == period, fb.c.quarantined.is_(False), fb.c.comment.is_not(None))
        ).all()
    with_comment = [r for r in rows if r.comment.strip()]
    return len(with_comment), sum(r.sentiment is not None for r in with_comment)


__all__ = ["NEGATIVE", "NEUTRAL", "POSITIVE", "CommentsSummary", "ThemeRow", "ThemeTagger",
           "analyse_comments", "analyse_texts", "default_topics", "load_taxonomy", "segment",
           "tagger_for", "theme_overview"]
