"""Benchmark of the comments stage on the labelled data in /work/shared/data: `python bench/comments.py`.

Prints, per dataset, accuracy / macro-F1 and comments/s of
  1. the default model (SnowNLP for Chinese, the hand-written lexicon for English), on a random
     subsample (SnowNLP is slow, ~180 comments/s; `--sample` rows per dataset, default 2,000);
  2. the trained path (`cxloop comments train`: char 1-3-gram TF-IDF + logistic regression),
     always cross-domain: trained on the other Chinese datasets, evaluated on the held-out one
     (the reference case: online_shopping_10_cats + hotel -> waimai_10k). The model is written to a
     temporary directory and deleted: the corpora's licences are unstated, so no model trained on
     them is ever shipped;
  3. theme tagging precision / recall per topic against the hand-labelled aspects of
     asap_dianping (300 restaurant reviews; an aspect counts as mentioned unless labelled -2).

English labels are proxies: Miro in-product NPS comments (promoters 9-10 = positive, detractors
0-6 = negative, passives left out) and feature ratings (4-5 positive, 1-2 negative).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cxloop.config import Settings  # noqa: E402
from cxloop.tasks.comments import analyse_texts, tagger_for  # noqa: E402
from cxloop.tasks.sentiment import (  # noqa: E402
    DefaultModel,
    TrainedModel,
    build_pipeline,
    detect_languages,
    load_trained,
    save_model,
)

DATA = Path("/work/shared/data")

# ASAP aspect columns -> our default topics (aspects without a counterpart are not scored).
ASAP_TOPICS: dict[str, list[str]] = {
    "location": ["location_traffic", "location_distance_from_business_district", "location_easy_to_find",
                 "service_parking_convenience"],
    "waiting_time": ["service_wait_time", "service_serving_speed"],
    "staff_attitude": ["service_waiters_attitude"],
    "price": ["price_level", "price_cost_effective", "price_discount"],
    "store_environment": ["environment_decoration", "environment_noise", "environment_space",
                          "environment_cleaness"],
    "product_quality": ["dish_portion", "dish_taste", "dish_look", "dish_recommendation"],
}


def _clean(df: pd.DataFrame, text: str, label: str) -> pd.DataFrame:
    df = df.dropna(subset=[text, label])
    out = pd.DataFrame({"text": df[text].astype(str).str.lstrip("\ufeff").str.strip(),
                        "label": df[label].astype(int)})
    return out[(out.text != "") & (out.text != "nan")].reset_index(drop=True)


def chinese_sets() -> dict[str, pd.DataFrame]:
    return {
        "waimai_10k": _clean(pd.read_csv(DATA / "waimai_10k/waimai_10k.csv"), "review", "label"),
        "chnsenticorp_htl": _clean(pd.read_csv(DATA / "chnsenticorp_htl/ChnSentiCorp_htl_all.csv"),
                                   "review", "label"),
        "online_shopping_10_cats": _clean(
            pd.read_csv(DATA / "online_shopping_10_cats/online_shopping_10_cats.zip"), "review", "label"),
    }


def english_sets() -> dict[str, pd.DataFrame]:
    nps = pd.read_csv(DATA / "miro_feedback/nps.csv")
    nps = nps[(nps.NPS_Score >= 9) | (nps.NPS_Score <= 6)].assign(label=lambda d: (d.NPS_Score >= 9) * 1)
    ff = pd.read_csv(DATA / "miro_feedback/feature_feedback.csv").dropna(subset=["FF_Score"])
    ff = ff[ff.FF_Score != 3].assign(label=lambda d: (d.FF_Score >= 4) * 1)
    return {"miro_nps (en, proxy)": _clean(nps, "text", "label"),
            "miro_feature (en, proxy)": _clean(ff, "text", "label")}


def scores(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import accuracy_score, f1_score

    pred = (p >= 0.5).astype(int)
    return float(accuracy_score(y, pred)), float(f1_score(y, pred, average="macro"))


class Timer:
    """Wall and CPU time: the CPU rate is what one free core does on a busy shared machine."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    def rates(self, n: int) -> tuple[float, float]:
        return n / max(self.wall, 1e-9), n / max(self.cpu, 1e-9)


def line(name: str, model: str, n: int, acc: float, f1: float, rates: tuple[float, float],
         note: str = "") -> None:
    print(f"{name:<26} {model:<9} {n:>7,} {acc:>8.3f} {f1:>9.3f} "
          f"{rates[0]:>10,.0f} {rates[1]:>10,.0f}  {note}")


def header(title: str) -> None:
    print(f"\n== {title}")
    print(f"{'dataset':<26} {'model':<9} {'n':>7} {'accuracy':>8} {'macro-F1':>9} "
          f"{'wall c/s':>10} {'cpu c/s':>10}")


def bench_default(sets: dict[str, pd.DataFrame], sample: int, seed: int) -> None:
    header(f"default model (SnowNLP zh / lexicon en), random subsample of {sample:,} per dataset")
    model = DefaultModel()
    model.score(["预热"], ["zh"])  # load SnowNLP's bundled model outside the timing
    for name, df in sets.items():
        sub = df.sample(min(sample, len(df)), random_state=seed)
        texts = sub.text.tolist()
        langs = detect_languages(texts)
        with Timer() as t:
            p = model.score(texts, langs)
        acc, f1 = scores(sub.label.to_numpy(), p)
        line(name, "default", len(texts), acc, f1, t.rates(len(texts)),
             "subsample" if len(sub) < len(df) else "")


def bench_trained(sets: dict[str, pd.DataFrame], targets: list[str]) -> TrainedModel | None:
    header("trained path (char_wb 1-3-gram TF-IDF + logistic regression), cross-domain only")
    last = None
    with tempfile.TemporaryDirectory(prefix="cxloop-bench-") as tmp:
        for target in targets:
            train_names = [n for n in sets if n != target]
            train = pd.concat([sets[n] for n in train_names], ignore_index=True)
            t0 = time.perf_counter()
            pipe = build_pipeline()
            pipe.fit(train.text.tolist(), train.label.to_numpy())
            fit_s = time.perf_counter() - t0
            path = save_model(TrainedModel(pipeline=pipe, languages=["zh"], trained_at="bench",
                                           n_train=len(train)), Path(tmp) / "model.joblib")
            model = load_trained(path)  # exactly what `auto` loads at run time
            test = sets[target]
            texts = test.text.tolist()
            langs = ["zh"] * len(texts)
            t0 = time.perf_counter()
            model.score(texts[:1], langs[:1])  # the batch scorer is built once per model and process
            build_s = time.perf_counter() - t0
            with Timer() as t:
                p = model.score(texts, langs)
            acc, f1 = scores(test.label.to_numpy(), p)
            line(target, "trained", len(texts), acc, f1, t.rates(len(texts)),
                 f"trained on {' + '.join(train_names)} ({len(train):,} rows, fit {fit_s:.0f}s, "
                 f"scorer built in {build_s:.1f}s)")
            last = model
    return last


def bench_pipeline(sets: dict[str, pd.DataFrame], model: TrainedModel | None) -> None:
    """Whole-stage throughput (language detection + sentiment + jieba theme tagging), no database."""
    if model is None:
        return
    settings = Settings()
    texts = sets["waimai_10k"].text.tolist()
    tagger = tagger_for(settings)
    tagger.tag("预热 jieba")
    with Timer() as t:
        results = analyse_texts(texts, settings, model=model, tagger=tagger)
    wall, cpu = t.rates(len(texts))
    tagged = sum(bool(r.themes) for r in results) / len(results)
    print(f"\nstage throughput on waimai_10k (trained model + themes): {wall:,.0f} comments/s wall, "
          f"{cpu:,.0f} per CPU-second; "
          f"{tagged:.0%} of comments got at least one theme")


def bench_themes() -> None:
    frames = [pd.read_csv(DATA / f"asap_dianping/{s}_sample.csv", encoding="utf-8-sig")
              for s in ("train", "dev", "test")]
    df = pd.concat(frames, ignore_index=True)
    tagger = tagger_for(Settings())
    t0 = time.perf_counter()
    tags = [set(tagger.tag(t)) for t in df.reviewbody.astype(str)]
    rate = len(df) / (time.perf_counter() - t0)
    print(f"\n== theme tagging vs asap_dianping aspects ({len(df)} reviews, avg "
          f"{df.reviewbody.str.len().mean():.0f} chars, {rate:,.0f} reviews/s)")
    print(f"{'topic':<18} {'gold':>5} {'tagged':>6} {'precision':>9} {'recall':>7} {'F1':>6}   aspects")
    tp_all = fp_all = fn_all = 0
    for topic, cols in ASAP_TOPICS.items():
        gold = (df[cols] != -2).any(axis=1).to_numpy()
        pred = np.array([topic in t for t in tags])
        tp, fp, fn = int((gold & pred).sum()), int((~gold & pred).sum()), int((gold & ~pred).sum())
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
        prec = tp / (tp + fp) if tp + fp else float("nan")
        rec = tp / (tp + fn) if tp + fn else float("nan")
        f1 = 2 * prec * rec / (prec + rec) if tp else 0.0
        print(f"{topic:<18} {int(gold.sum()):>5} {int(pred.sum()):>6} {prec:>9.3f} {rec:>7.3f} {f1:>6.3f}"
              f"   {', '.join(c.split('_', 1)[1] for c in cols)}")
    prec, rec = tp_all / (tp_all + fp_all), tp_all / (tp_all + fn_all)
    f1 = 2 * prec * rec / (prec + rec)
    print(f"{'micro average':<18} {'':>5} {'':>6} {prec:>9.3f} {rec:>7.3f} {f1:>6.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=2000, help="rows per dataset for the default model")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--all-targets", action="store_true",
                    help="trained path: hold out each Chinese dataset in turn (default: waimai_10k only)")
    ap.add_argument("--skip-default", action="store_true")
    args = ap.parse_args()

    zh = chinese_sets()
    en = english_sets()
    if not args.skip_default:
        bench_default(zh, args.sample, args.seed)
        header("default model, English proxy sets (lexicon), in full")
        for name, df in en.items():
            texts = df.text.tolist()
            with Timer() as t:
                p = DefaultModel().score(texts, detect_languages(texts))
            acc, f1 = scores(df.label.to_numpy(), p)
            line(name, "lexicon", len(df), acc, f1, t.rates(len(df)))
    targets = list(zh) if args.all_targets else ["waimai_10k"]
    model = bench_trained(zh, targets)
    bench_pipeline(zh, model)
    bench_themes()


if __name__ == "__main__":
    main()
