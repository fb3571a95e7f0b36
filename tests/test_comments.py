"""Comments stage: segmentation, taxonomy, tagging, sentiment, the company model, the DB round trip, CLI."""

from __future__ import annotations

import json
import logging
import random
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, select, update

import cxloop.tasks.month as month
from cxloop.config import ConfigError, Settings, settings_from_dict
from cxloop.db import session_scope
from cxloop.models import Feedback
from cxloop.tasks.comments import (
    FEEDBACK,
    ThemeTagger,
    analyse_comments,
    analyse_texts,
    default_topics,
    load_taxonomy,
    tagger_for,
    theme_overview,
)
from cxloop.tasks.segmentation import cut, jieba_module, segment
from cxloop.tasks.sentiment import (
    DefaultModel,
    ModelError,
    detect_language,
    detect_languages,
    english_probability,
    load_model,
    normalise_labels,
)
from tests.cli import cxloop

PERIOD = "2026-10"


def make_settings(tmp_path: Path, **extra: Any) -> Settings:
    return settings_from_dict(extra, base_dir=tmp_path, env={})


# --- segmentation and tagging -----------------------------------------------------------------


def test_multichar_keyword_is_one_token_and_substrings_inside_other_words_do_not_match(
        tmp_path: Path) -> None:
    tagger = tagger_for(make_settings(tmp_path))
    assert "物流" in segment("物流太慢了")
    assert tagger.tag("物流太慢了") == ["delivery"]
    # 评价格外好 = "the reviews are especially good": 价格 (price) is only a substring across 评价|格外.
    assert "价格" in "这家店评价格外好"
    assert "价格" not in segment("这家店评价格外好")
    assert "price" not in tagger.tag("这家店评价格外好")
    # 服务器 (server) is its own word, not 服务 (service).
    assert "服务" not in segment("服务器又崩了")
    assert "staff_attitude" not in tagger.tag("服务器又崩了")
    # ... while a keyword inside a dictionary phrase (价格便宜 = "price is cheap") still counts.
    assert tagger.tag("价格便宜量又足") == ["price"]


# Real review sentences (online shopping, take-away, hotel) where a taxonomy keyword added to the
# dictionary decides the cut (等了, 速度快 next to 速度, 太差), each cut as jieba cuts it.
_SENTENCES = [
    "等了两个礼拜，竟然通知说缺货，缺货就不要摆出来。", "总算到货了,等了五天啊,不容易啊!包装不错",
    "物流速度快，产品满意，一次满意的购物！", "屏大，电量足，声音好，速度快。照相比其他高端机略有不足。",
    "质量太差了，客服也不理人", "服务员态度太差，房间隔音不好", "送餐速度太慢了，等了一个多小时",
    "这家店评价格外好", "服务器又崩了", "价格便宜量又足", "退款一直没到账，APP老是闪退",
    "快递小哥很热情，送货上门", "酒店前台办理入住很慢 check-in took 40 min",
]


def test_the_rust_cutter_cuts_as_jieba_does_with_the_taxonomy_words_added(tmp_path: Path) -> None:
    tagger_for(make_settings(tmp_path))  # adds the shipped taxonomy's words to the dictionary
    jieba = jieba_module()
    for text in _SENTENCES:
        assert cut(text) == jieba.lcut(text, HMM=False), text
    assert "等了" in cut(_SENTENCES[0]) and "速度快" in cut(_SENTENCES[2])  # as jieba cuts them


def test_config_keyword_unknown_to_jieba_is_added_to_its_dictionary(tmp_path: Path) -> None:
    loyalty = {"id": "loyalty", "name_zh": "会员", "name_en": "Loyalty",
               "keywords": {"zh": ["星享卡"], "en": ["loyalty card"]}}
    tagger = tagger_for(make_settings(tmp_path, topics=[loyalty]))
    assert "星享卡" in segment("我的星享卡积分没了")
    assert tagger.tag("我的星享卡积分没了") == ["loyalty"]
    assert tagger.tag("My loyalty cards stopped working") == ["loyalty"]
    assert tagger.tag("my loyalty was tested, card declined") == []  # words must be consecutive


def _tags_of_units(tagger: ThemeTagger, text: str) -> list[str]:
    """What `tag` must answer: the topics of `tokens(text)`, then the patterns (the reference)."""
    if not text.strip():
        return []
    hit = 0
    for unit in tagger.tokens(text):
        hit |= tagger._bits.get(unit, 0)
    for bit, patterns in tagger._patterned:
        if not hit & bit and any(p.search(text) for p in patterns):
            hit |= bit
    return [m.id for k, m in enumerate(tagger._matchers) if hit >> k & 1]


def test_tagging_matches_the_units_of_each_comment_exactly(tmp_path: Path) -> None:
    """`tag` looks each token's topics up once and skips phrases that cannot start at a word: the
    same topics as the units of `tokens`, in Chinese, English and both, before and after the
    dictionary learns a word that cuts some of the same texts differently."""
    tagger = tagger_for(make_settings(tmp_path))
    rng = random.Random(7)
    zh = [k for t in default_topics() for k in t.keywords.get("zh", [])]
    en = [k for t in default_topics() for k in t.keywords.get("en", [])]
    filler = ["今天", "我们", "格外", "服务器", "评价", "一般般", "APP", "iPhone", "  ", "，", "。", "!",
              "check-in", "Boxes", "deliveries", "customers", "service,", "the", "43分钟"]
    texts = [*_SENTENCES, "", " ", "Customer service", "customer, service", "Deliverance"]
    for _ in range(3000):
        words = rng.choices(zh + en + filler, k=rng.randint(1, 9))
        texts.append(rng.choice(["", " "]).join(words))
    for text in texts:
        assert tagger.tag(text) == _tags_of_units(tagger, text), text
    assert "星享卡积分" not in segment("我的星享卡积分没了")
    tagger_for(make_settings(tmp_path, topics=[{"id": "loyalty", "name_zh": "会员", "name_en": "Loyalty",
                                               "keywords": {"zh": ["星享卡积分"]}}]))
    assert "星享卡积分" in segment("我的星享卡积分没了")  # cut otherwise now; the tagger's memo is older
    for text in [*texts[:500], "我的星享卡积分没了", "星享卡积分到账了"]:
        assert tagger.tag(text) == _tags_of_units(tagger, text), text


def test_english_tagging_words_plurals_phrases_and_patterns(tmp_path: Path) -> None:
    tagger = tagger_for(make_settings(tmp_path))
    assert tagger.tag("Two deliveries arrived damaged") == ["delivery", "product_quality"]
    assert tagger.tag("Customer service never answered my emails") == ["customer_service"]
    assert tagger.tag("We waited 45 minutes at the counter") == ["waiting_time"]
    assert tagger.tag("I was double charged and still have no refund") == ["returns_refunds", "billing"]
    assert tagger.tag("Deliverance is a film") == []  # no prefix matching
    assert tagger.tag("") == [] and tagger.tag("   ") == []


def test_many_distinct_comments_are_analysed_in_worker_processes_alike(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import cxloop.tasks.comments as comments

    club = {"id": "club", "name_zh": "会员", "name_en": "Club",
            "keywords": {"zh": ["橙享会员卡"], "en": ["club card"]}}  # unknown to jieba
    settings = make_settings(tmp_path, topics=[club])
    texts = ["我的橙享会员卡积分没了", "物流太慢了，包装也破了", "价格便宜量又足", "服务器又崩了",
             "My club card stopped working", "Excellent quality and really friendly staff",
             "物流太慢了，包装也破了", "The courier never showed up", "质量很好，物流很快，非常满意"]
    declared = [None, "zh", None, None, "en", None, "en", None, None]
    model = DefaultModel()
    alone = analyse_texts(texts, settings, declared=declared, model=model)
    assert alone[0].themes == ["club"] and alone[4].themes == ["club"]
    monkeypatch.setattr(comments, "PARALLEL_TEXTS", 2)
    monkeypatch.setattr(comments, "_worker_count", lambda: 2)  # a one-core machine too
    monkeypatch.setattr(comments, "_PARTS_PER_WORKER", 2)  # parts of two or three texts
    with caplog.at_level(logging.WARNING, logger="cxloop.tasks.comments"):
        assert analyse_texts(texts, settings, declared=declared, model=model) == alone
    assert "worker processes failed" not in caplog.text  # the workers did it, not the fallback


def test_taxonomy_default_and_from_config(tmp_path: Path) -> None:
    topics = default_topics()
    ids = [t.id for t in topics]
    for expected in ("delivery", "product_quality", "price", "staff_attitude", "waiting_time",
                     "returns_refunds", "app_website", "billing"):
        assert expected in ids
    assert all(t.keywords.get("zh") and t.keywords.get("en") for t in topics)
    assert load_taxonomy(make_settings(tmp_path)) == topics

    own = [{"id": "coffee", "name_zh": "咖啡", "name_en": "Coffee", "keywords": {"zh": ["拿铁"]}}]
    settings = make_settings(tmp_path, topics=own)
    assert [t.id for t in load_taxonomy(settings)] == ["coffee"]  # replaces, not extends
    assert tagger_for(settings).tag("物流太慢，拿铁很苦") == ["coffee"]

    with pytest.raises(ConfigError, match="duplicate topic id"):
        load_taxonomy(make_settings(tmp_path, topics=own + own))
    bad = [{"id": "x", "name_zh": "x", "name_en": "x", "patterns": {"en": ["(unclosed"]}}]
    with pytest.raises(ConfigError, match=r"topics\[x\]\.patterns\.en"):
        load_taxonomy(make_settings(tmp_path, topics=bad))
    with pytest.raises(ConfigError, match="name_en"):
        make_settings(tmp_path, topics=[{"id": "y", "name_zh": "y"}])


def test_empty_taxonomy_tags_nothing() -> None:
    assert ThemeTagger([]).tag("物流太慢") == []


# --- sentiment ----------------------------------------------------------------------------------


def test_language_detection() -> None:
    assert detect_language("物流太慢了") == "zh"
    assert detect_language("APP老是闪退，客服也不理人") == "zh"
    assert detect_language("The app keeps crashing") == "en"
    assert detect_language("The app keeps crashing", "zh-CN") == "zh"
    assert detect_language("物流太慢了", "en") == "en"


def test_languages_of_many_comments_at_once_as_one_by_one() -> None:
    rng = random.Random(3)
    letters = ("abcXYZ 中文字\u3400\u4dbf\u4dc0\uf900\ufaff\ufb00😀\ud800é,.1@AZ[`az{"
               "\u33ff\u4e00\u9fff\ua000\uf8ff")
    texts = ["".join(rng.choices(letters, k=rng.randint(0, 12))) for _ in range(5000)]
    texts += ["", "APP老是闪退", "The app keeps crashing", "ok 好"]
    declared = [rng.choice([None, "", "zh-CN", " EN ", "fr", "中文", "english"]) for _ in texts]
    from cxloop.tasks.segmentation import CJK

    def by_regex(text: str, said: str | None = None) -> str:
        """The rule as `detect_language`'s docstring says it, one text at a time."""
        d = (said or "").strip().lower()
        if d.startswith("zh") or d in {"cn", "chinese", "中文"}:
            return "zh"
        if d.startswith("en") or d == "english":
            return "en"
        cjk, latin = len(CJK.findall(text)), len(re.findall("[A-Za-z]", text))
        return ("en" if latin else "zh") if not cjk else ("zh" if cjk / (cjk + latin) >= 0.2 else "en")

    one_by_one = [by_regex(t, d) for t, d in zip(texts, declared, strict=True)]
    assert detect_languages(texts, declared) == one_by_one
    assert [detect_language(t, d) for t, d in zip(texts, declared, strict=True)] == one_by_one
    assert detect_languages(texts) == [by_regex(t) for t in texts]
    assert detect_languages([]) == []
    # The code point ranges stand for the regular expressions, over every code point.
    from cxloop.tasks.sentiment import _CJK_POINTS, _LATIN_POINTS

    for pattern, ranges in ((CJK, _CJK_POINTS), (re.compile("[A-Za-z]"), _LATIN_POINTS)):
        everything = "".join(map(chr, range(0x110000)))
        assert {ord(c) for c in pattern.findall(everything)} == {
            p for lo, hi in ranges for p in range(lo, hi + 1)}


def test_default_sentiment_on_obvious_comments(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    texts = ["太难吃了，送餐又慢，再也不会点了，差评", "质量很好，物流很快，非常满意，推荐购买",
             "Terrible service, the staff were rude and my order was late",
             "Excellent quality and really friendly staff, highly recommend",
             "The delivery was not bad at all", "The food was not good"]
    got = [r.sentiment for r in analyse_texts(texts, settings, model=DefaultModel())]
    assert got == ["negative", "positive", "negative", "positive", "positive", "negative"]
    assert english_probability("my order number is 123") == 0.5  # no opinion words: neutral
    assert english_probability("good, but the delivery was terrible") < 0.3  # "but" decides


def test_label_normalisation() -> None:
    y, keep = normalise_labels(["1", "0", "positive", "差评", "neutral", 1])
    assert y[keep].tolist() == [1, 0, 1, 0, 1] and keep.tolist() == [True, True, True, True, False, True]
    with pytest.raises(ModelError, match="row 3: label 'maybe'"):
        normalise_labels(["1", "maybe"], "x.csv")


# --- the company model --------------------------------------------------------------------------

POS_ZH = ["质量很好", "物流很快", "非常满意", "味道不错", "服务热情", "包装完好", "性价比高", "下次还来"]
NEG_ZH = ["质量太差", "物流太慢", "非常失望", "味道难吃", "态度恶劣", "包装破损", "退款困难", "再也不买"]
POS_EN = ["great quality", "fast delivery", "very happy", "friendly staff", "good value"]
NEG_EN = ["awful quality", "late delivery", "very unhappy", "rude staff", "poor value"]


def write_labelled_csv(path: Path, n: int = 300, seed: int = 1) -> Path:
    rng = random.Random(seed)
    lines = ["comment,label"]
    for i in range(n):
        positive = i % 2 == 0
        if i % 5 == 0:
            words = rng.sample(POS_EN if positive else NEG_EN, 2)
            text = " and ".join(words)
        else:
            text = "，".join(rng.sample(POS_ZH if positive else NEG_ZH, 3))
        lines.append(f"{text},{'positive' if positive else 'negative'}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path




def test_train_writes_model_then_auto_uses_it(engine: Engine, db_url: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "cxloop.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n[comments]\nmodel_path = "models/s.joblib"\n',
                      encoding="utf-8")
    data = write_labelled_csv(tmp_path / "labelled.csv")
    code, out, err = cxloop(capsys, monkeypatch, config, "comments", "train", "--data", str(data))
    assert code == 0, err
    assert "accuracy 1.000" in out and "macro-F1 1.000" in out and "tested on 60 held out" in out
    model_file = tmp_path / "models" / "s.joblib"
    assert model_file.exists()

    settings = settings_from_dict({"comments": {"model_path": "models/s.joblib"}}, tmp_path, env={})
    model = load_model(settings)
    assert model.name == "trained"
    # A phrase combination never seen in training, scored by the company model.
    add_feedback(engine, "r1", "包装破损，退款困难")
    add_feedback(engine, "r2", "性价比高，下次还来")
    summary = analyse_comments(settings, engine, PERIOD)
    assert summary.model == "trained" and summary.analysed == 2
    assert stored(engine) == {"r1": ("negative", "product_quality,returns_refunds,packaging"),
                              "r2": ("positive", "price")}

    # Errors a user can fix: exit 1 with the file and column named, no traceback.
    code, _, err = cxloop(capsys, monkeypatch, config, "comments", "train", "--data", str(data),
                          "--text-column", "review")
    assert code == 1 and "no column 'review'" in err and "labelled.csv" in err
    model_file.write_bytes(b"not a model")
    code, _, err = cxloop(capsys, monkeypatch, config, "comments", "analyse", "--period", PERIOD)
    assert code == 1 and "cannot read the sentiment model" in err


def test_read_labelled_gb18030_columns_guessed_and_errors(tmp_path: Path) -> None:
    from cxloop.tasks.sentiment import read_labelled, train

    path = tmp_path / "导出.csv"
    path.write_bytes("评论,标签,渠道\n物流很快,好评,app\n太慢了,差评,web\n\n  ,好评,web\n".encode("gb18030"))
    texts, labels = read_labelled(path)
    assert texts == ["物流很快", "太慢了"] and labels == ["好评", "差评"]
    with pytest.raises(ModelError, match=r"the label; pass --label-column \(columns: 评论, stars"):
        read_labelled(_rename(path, tmp_path / "x.csv", "标签", "stars"))
    with pytest.raises(ModelError, match="need at least 20"):
        train(texts, labels, source=str(path))
    with pytest.raises(ModelError, match="both positive and negative"):
        train(["好"] * 30, ["1"] * 30)


def _rename(src: Path, dst: Path, old: str, new: str) -> Path:
    dst.write_text(src.read_bytes().decode("gb18030").replace(old, new), encoding="utf-8")
    return dst


def test_trained_model_required_but_missing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, comments={"model": "trained"})
    with pytest.raises(ModelError, match="comments train"):
        load_model(settings)
    assert load_model(make_settings(tmp_path)).name == "snownlp"  # auto without a file


# --- database round trip ------------------------------------------------------------------------


def add_feedback(engine: Engine, rid: str, comment: str | None, period: str = PERIOD,
                 language: str | None = None, quarantined: bool = False) -> None:
    with session_scope(engine) as s:
        s.add(Feedback(source="survey", response_id=rid, period=period, channel="app",
                       submitted_at=datetime(2026, 10, 5, tzinfo=UTC), comment=comment,
                       language=language, content_hash=rid, quarantined=quarantined))


def stored(engine: Engine) -> dict[str, tuple[str | None, str | None]]:
    fb = FEEDBACK
    with engine.connect() as conn:
        return {r.response_id: (r.sentiment, r.themes)
                for r in conn.execute(select(fb.c.response_id, fb.c.sentiment, fb.c.themes))}


def full_rows(engine: Engine) -> list[tuple[Any, ...]]:
    fb = FEEDBACK
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(fb.c.response_id, fb.c.sentiment, fb.c.sentiment_score, fb.c.themes, fb.c.updated_at)
            .order_by(fb.c.response_id))]


def test_analyse_comments_round_trip_and_idempotent(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    add_feedback(engine, "a", "送餐太慢了，等了两个小时，饭都凉了，差评")
    add_feedback(engine, "b", "The staff were rude and I never got my refund", language="en")
    add_feedback(engine, "c", "非常满意，下次还来")
    add_feedback(engine, "d", None)
    add_feedback(engine, "e", "   ")
    add_feedback(engine, "f", "物流太慢", period="2026-09")
    add_feedback(engine, "g", "质量太差了，完全是假货", quarantined=True)

    summary = analyse_comments(settings, engine, PERIOD)
    assert (summary.comments, summary.analysed, summary.cleared) == (5, 4, 1)
    assert summary.negative == 3 and summary.positive == 1 and summary.with_themes == 3
    got = stored(engine)
    assert got["a"] == ("negative", "delivery,waiting_time")
    assert got["b"] == ("negative", "staff_attitude,returns_refunds")
    assert got["c"] == ("positive", "")  # analysed, no theme: empty string, not NULL
    assert got["d"] == (None, None) and got["e"] == (None, None)
    assert got["f"] == (None, None)  # another period is untouched
    assert got["g"] == ("negative", "product_quality")  # quarantined rows too (readmission)
    scores = {r[0]: r[2] for r in full_rows(engine)}
    assert 0 <= scores["a"] < 0.4 < 0.6 < scores["c"] <= 1

    before = full_rows(engine)
    again = analyse_comments(settings, engine, PERIOD)
    assert full_rows(engine) == before
    assert again.counts() | {"seconds": 0} == summary.counts() | {"seconds": 0}


def test_theme_routes_to_owning_department(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, departments={
        "logistics": {"name": "Logistics", "owns": {"topic": ["delivery", "packaging"]}},
        "service": {"name": "Service", "owns": {"topic": ["staff_attitude"]}},
    })
    assert settings.owner_of("topic", "delivery") == "logistics"
    assert settings.owner_of("topic", "staff_attitude") == "service"
    assert settings.owner_of("topic", "price") is None
    add_feedback(engine, "a", "快递太慢，包装也破了")
    analyse_comments(settings, engine, PERIOD)
    rows = {r.topic: r for r in theme_overview(settings, engine, PERIOD)}
    assert rows["delivery"].owner == "logistics" and rows["packaging"].owner == "logistics"
    assert rows["delivery"].count == 1 and rows["price"].owner is None and rows["price"].count == 0


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_themes_json(engine: Engine, db_url: str, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "cxloop.toml"
    config.write_text(f'[project]\nlanguage = "zh"\n[database]\nurl = "{db_url}"\n'
                      '[departments.logistics]\nname = "物流部"\nowns = { topic = ["delivery"] }\n',
                      encoding="utf-8")
    comments = ["快递太慢了，打电话13812345678也没人接", "物流很快，包装很好", "送货员态度很差，物流太慢",
                "价格便宜，质量也不错", "<script>alert(1)</script> 物流慢死了"]
    for i, c in enumerate(comments):
        add_feedback(engine, f"r{i}", c)
    code, _, err = cxloop(capsys, monkeypatch, config, "themes", "--period", PERIOD)
    assert code == 1 and "comments analyse --period 2026-10" in err  # not analysed yet

    code, out, err = cxloop(capsys, monkeypatch, config, "comments", "analyse", "--period", PERIOD,
                            "--format", "json")
    assert code == 0, err
    assert json.loads(out)[0]["analysed"] == 5

    code, out, err = cxloop(capsys, monkeypatch, config, "themes", "--period", PERIOD, "--format", "json")
    assert code == 0, err
    rows = {r["topic"]: r for r in json.loads(out)}
    delivery = rows["delivery"]
    assert delivery["name"] == "物流配送" and delivery["owner"] == "logistics"
    assert delivery["count"] == 4 and delivery["share"] == 0.8
    assert 0.3 < delivery["share_low"] < 0.8 < delivery["share_high"] <= 1
    assert delivery["negative"] == 3 and delivery["negative_share"] == 0.75
    assert "13812345678" not in out and "[phone]" in out or "13812345678" not in delivery["example"]
    assert rows["billing"]["count"] == 0 and rows["billing"]["share"] == 0.0
    assert list(rows)[0] == "delivery"  # hottest topic first

    code, out, _ = cxloop(capsys, monkeypatch, config, "themes", "--period", PERIOD, "--format", "csv")
    assert code == 0 and out.splitlines()[0].startswith("topic,name,owner,count,share")
    code, out, _ = cxloop(capsys, monkeypatch, config, "themes", "--period", PERIOD)
    assert code == 0 and "delivery" in out and "物流配送" in out


def test_only_unanalysed_rows_unless_taxonomy_changed(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    add_feedback(engine, "a", "快递太慢了")
    add_feedback(engine, "b", "快递太慢了")  # a repeated text is analysed once, stored for both
    analyse_comments(settings, engine, PERIOD)
    assert stored(engine)["a"] == stored(engine)["b"] == ("negative", "delivery")
    with engine.begin() as conn:  # an analysed row is kept; a row cleared by collect is redone
        conn.execute(update(FEEDBACK).where(FEEDBACK.c.response_id == "a").values(themes="kept"))
        conn.execute(update(FEEDBACK).where(FEEDBACK.c.response_id == "b").values(
            sentiment=None, sentiment_score=None, themes=None))
    again = analyse_comments(settings, engine, PERIOD)
    assert again.analysed == 2 and again.with_themes == 2
    assert stored(engine) == {"a": ("negative", "kept"), "b": ("negative", "delivery")}
    changed = make_settings(tmp_path, topics=[{"id": "speed", "name_en": "Speed", "name_zh": "速度",
                                               "keywords": {"zh": ["太慢"]}}])
    analyse_comments(changed, engine, PERIOD)  # new taxonomy: every row again
    assert stored(engine) == {"a": ("negative", "speed"), "b": ("negative", "speed")}


def test_in_a_cycle_run_the_month_is_read_once_and_only_changed_rows_are_written(
        engine: Engine, tmp_path: Path, month_reads: list[str],
        caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path)
    add_feedback(engine, "a", "快递太慢了")
    add_feedback(engine, "b", "快递太慢了", language="zh")
    add_feedback(engine, "c", "ok", language="en")
    add_feedback(engine, "d", "  ")
    add_feedback(engine, "e", None)
    with engine.begin() as conn:  # a blank comment keeps no analysis: cleared
        conn.execute(update(FEEDBACK).where(FEEDBACK.c.response_id == "d").values(
            sentiment="neutral", sentiment_score=0.5, themes=""))
    reads = month_reads
    caplog.set_level(logging.INFO, logger="cxloop.tasks.comments")
    speed = make_settings(tmp_path, topics=[{"id": "speed", "name_en": "Speed", "name_zh": "速度",
                                             "keywords": {"zh": ["太慢"]}}])
    shared = month.Month(engine, PERIOD, keep=True)
    analyse_comments(settings, engine, PERIOD, month_rows=shared)
    analyse_comments(settings, engine, PERIOD, month_rows=shared)  # nothing new
    analyse_comments(speed, engine, PERIOD, month_rows=shared)  # every row analysed again, "ok" unchanged
    kept = shared.rows()
    assert reads == [PERIOD]
    pd.testing.assert_frame_equal(kept, month.Month(engine, PERIOD).rows())
    written = [r.getMessage().rsplit(", ", 1)[1] for r in caplog.records if "rows written" in r.getMessage()]
    assert written == ["4 rows written", "0 rows written", "2 rows written"]
    assert stored(engine) == {"a": ("negative", "speed"), "b": ("negative", "speed"), "c": ("neutral", ""),
                              "d": (None, None), "e": (None, None)}


def test_words_taught_while_other_threads_cut_break_no_cut(tmp_path: Path) -> None:
    """rjieba lets other threads run while it cuts: a word added to a cutter in use would fail
    ('Already borrowed'), so taught words give a new cutter, swapped in whole."""
    import threading

    from cxloop.tasks.segmentation import add_words

    tagger_for(make_settings(tmp_path))
    text = "物流太慢了，客服态度很好，等了五天才到货。" * 200
    errors: list[BaseException] = []
    stop = threading.Event()

    def cutting() -> None:
        try:
            while not stop.is_set():
                cut(text)
        except BaseException as exc:  # noqa: BLE001 - any failure is the test's finding
            errors.append(exc)

    threads = [threading.Thread(target=cutting) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for k in range(8):
            add_words([f"测试新词{chr(0x4e00 + k)}"])
            cut("测试")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert "测试新词一" in cut("这是测试新词一吗")
