"""Demo data: a retailer's feedback for several months, with stories a new user can follow.

Three sources as real exports look: a survey tool's CSV (UTF-8 with BOM, Chinese headers and
labels), the hotline's ticket export (GBK, as Chinese Excel saves it) and the app's JSON lines
(English keys, English and Chinese comments). Planted stories:
- delivery collapses in month 3 (action for logistics), recovers in month 4 (verified);
- hotline complaints rise from month 4 and stay up (action for customer service, later escalated);
- marketing's awareness and consideration stages sit at their NPS target: some months a little
  under it, inside the noise ("at risk", no action);
- month 5's app export is broken (a handful of rows): the gate holds that cycle.
The survey also asks five attribute ratings (key drivers, each owned by a department; delivery speed
matters most and performs worst) and carries the member number, and the CRM's order export
(`data/crm/orders.csv`, GBK) says what each member did in the months after answering: promoters
order more and churn less. In the last month the survey also asks whether the company may call back
(and on which number): the demo replays that month's daily follow-up runs (`tasks/demo_followup.py`).
These are drawn from their own random streams, so the story above - every draw it makes - is the
same with or without them.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from cxloop.periods import shift_period

TZ = ZoneInfo("Asia/Shanghai")
STAGES = {"awareness": "认知", "consideration": "考虑", "purchase": "购买", "delivery": "配送",
          "use": "使用", "after_sales": "售后"}
STAGE_SHARE = {"awareness": 0.08, "consideration": 0.08, "purchase": 0.2, "delivery": 0.3,
               "use": 0.22, "after_sales": 0.12}
TOUCHPOINT_OF = {"awareness": ["social", "website"], "consideration": ["website", "store"],
                 "purchase": ["store", "website", "app"], "delivery": ["courier"],
                 "use": ["app", "website"], "after_sales": ["store", "website"]}
TOUCHPOINTS = {"website": "官网", "app": "APP", "store": "门店", "hotline": "热线", "courier": "快递员",
               "social": "社交媒体"}
CHANNELS = {"survey": "问卷", "store": "门店", "web": "官网", "wechat": "微信", "email": "邮件"}
REGIONS = {"east": "华东", "north": "华北", "south": "华南", "west": "西部"}
SEGMENTS = {"new": "新客", "returning": "老客", "vip": "会员"}
CSAT_LABELS = {1: "非常不满意", 2: "不满意", 3: "一般", 4: "满意", 5: "非常满意"}
# Attribute ratings (1-5): column, mean rating, how strongly the NPS answer moves it, share not rated.
DRIVERS = {"delivery_speed": ("配送速度", 2.9, 0.75, 0.0), "product_quality": ("产品质量", 3.7, 0.45, 0.0),
           "staff_service": ("服务态度", 3.8, 0.3, 0.25), "value_for_money": ("性价比", 3.5, 0.25, 0.0),
           "app_ease": ("APP易用性", 3.9, 0.1, 0.2)}
# What members do in the 120 days after answering, by NPS group: orders (Poisson mean), churn chance.
ORDERS_AFTER = {"promoter": 2.6, "passive": 2.0, "detractor": 1.3}
CHURN_AFTER = {"promoter": 0.06, "passive": 0.12, "detractor": 0.27}

# Comment phrases by topic and tone (zh, en). Topics match the default taxonomy's keywords.
PHRASES: dict[str, dict[str, list[str]]] = {
    "delivery": {
        "neg_zh": ["快递太慢了，等了五天才到", "物流信息一直不更新，配送太慢", "包裹破损，快递员态度也差",
                   "配送延误，送货时间一改再改"],
        "pos_zh": ["送货很快，第二天就到了", "快递员很准时，包装完好", "物流很快，配送服务好"],
        "neg_en": ["Delivery took forever and the parcel arrived damaged", "The courier never showed up",
                   "Shipping was slow and tracking never updated"],
        "pos_en": ["Fast delivery, arrived the next day", "The courier was friendly and on time"],
    },
    "quality": {
        "neg_zh": ["质量很差，用了两天就坏了", "做工粗糙，和图片不一样"],
        "pos_zh": ["质量很好，做工精细", "产品质量不错，很耐用"],
        "neg_en": ["Poor quality, it broke after two days"],
        "pos_en": ["Great quality, well made"],
    },
    "staff": {
        "neg_zh": ["客服态度很差，问题一直没解决", "热线等了半小时没人接，客服推来推去"],
        "pos_zh": ["客服态度很好，问题很快解决了", "店员很热情，服务周到"],
        "neg_en": ["The support agent was rude and unhelpful"],
        "pos_en": ["Helpful staff, solved my problem quickly"],
    },
    "price": {
        "neg_zh": ["价格太贵了，不值这个价"],
        "pos_zh": ["价格实惠，性价比高"],
        "neg_en": ["Too expensive for what you get"],
        "pos_en": ["Good value for money"],
    },
    "app": {
        "neg_zh": ["APP老是闪退，下单很麻烦", "网站支付总是失败"],
        "pos_zh": ["APP很好用，下单方便"],
        "neg_en": ["The app keeps crashing at checkout", "Website payment failed twice"],
        "pos_en": ["The app is easy to use"],
    },
    "refund": {
        "neg_zh": ["退款太慢，申请退货两周了还没处理"],
        "pos_zh": ["退货很顺利，退款很快"],
        "neg_en": ["Refund still not processed after two weeks"],
        "pos_en": ["Easy return and quick refund"],
    },
}
TOPIC_OF_STAGE = {"awareness": ["price"], "consideration": ["price", "quality"], "purchase": ["app", "price"],
                  "delivery": ["delivery"], "use": ["quality", "app"], "after_sales": ["refund", "staff"]}


@dataclass
class Truth:
    """True promoter/detractor shares of one scope in one month."""

    promoters: float = 0.56
    detractors: float = 0.12


@dataclass
class DemoPlan:
    periods: list[str]
    rows_per_month: int = 3000
    seed: int = 7
    stage_truth: dict[tuple[str, str], Truth] = field(default_factory=dict)
    complaint_rate: dict[str, float] = field(default_factory=dict)
    broken_app_period: str | None = None

    def truth(self, period: str, stage: str) -> Truth:
        usual = Truth(0.47, 0.17) if stage in ("awareness", "consideration") else Truth()
        return self.stage_truth.get((period, stage), usual)


# The demo's months are fixed, not taken from today's date: the same command tells the same story
# on any day (its answers depend on the calendar of the months they fall in).
DEMO_LAST_PERIOD = "2026-10"


def default_plan(last_period: str = DEMO_LAST_PERIOD, months: int = 6, rows_per_month: int = 3000,
                 seed: int = 7) -> DemoPlan:
    periods = [shift_period(last_period, i - months + 1) for i in range(months)]
    plan = DemoPlan(periods=periods, rows_per_month=rows_per_month, seed=seed)
    if months >= 3:
        plan.stage_truth[(periods[2], "delivery")] = Truth(0.28, 0.42)
    for p in periods[3:] if months >= 4 else []:
        plan.complaint_rate[p] = 0.32
    if months >= 5:
        plan.broken_app_period = periods[4]
    return plan


def _nps(rng: random.Random, t: Truth) -> int:
    u = rng.random()
    if u < t.promoters:
        return rng.choice([9, 10])
    if u < t.promoters + t.detractors:
        return rng.choice([0, 2, 3, 4, 5, 5, 6, 6])
    return rng.choice([7, 8])


def _tone(nps: int) -> str:
    return "pos" if nps >= 9 else "neg" if nps <= 6 else "mixed"


def _comment(rng: random.Random, stage: str, nps: int, lang: str) -> str:
    tone = _tone(nps)
    if tone == "mixed":
        tone = rng.choice(["pos", "neg"])
    topic = rng.choice(TOPIC_OF_STAGE[stage])
    return rng.choice(PHRASES[topic][f"{tone}_{lang}"])


def _scale(rng: random.Random, nps: int, top: int) -> int:
    """A 1..top score that agrees with the NPS answer most of the time."""
    centre = 1 + (top - 1) * (nps / 10)
    return max(1, min(top, round(rng.gauss(centre, top / 6))))


def _local_time(rng: random.Random, period: str) -> datetime:
    year, month = (int(x) for x in period.split("-"))
    start = datetime(year, month, 1, 8, 0)
    days = (datetime(year + (month == 12), month % 12 + 1, 1) - datetime(year, month, 1)).days
    return start + timedelta(days=rng.randrange(days), minutes=rng.randrange(13 * 60))


def _ratings(extra: random.Random, nps: int) -> list[str]:
    """The attribute ratings of one answer, from the demo's own stream (`extra`): each leans with the
    NPS answer by its driver's weight; some are left empty (not rated)."""
    cells = []
    for _, mean, weight, skipped in DRIVERS.values():
        value = mean + weight * (nps - 7) / 2.5 + extra.gauss(0, 0.8)
        cells.append("" if extra.random() < skipped else str(max(1, min(5, round(value)))))
    return cells


@dataclass
class Answer:
    """A member's answer, for the CRM export."""

    member: str
    at: datetime
    nps: int


def _write_survey(folder: Path, rng: random.Random, plan: DemoPlan, period: str, n: int,
                  extra: random.Random | None = None, consent: random.Random | None = None) -> list[Answer]:
    """The survey export; with `extra` (the demo's second stream) also the attribute ratings and the
    member number of each answer, returned for the CRM export. The consent question (may we call
    you back, and on which number) has columns in every month and answers only with `consent` (its
    own stream): the month the survey started asking. That month's rows are in time order, as the
    survey tool exports them, so the demo can replay the daily follow-up run over it."""
    header = ["编号", "提交时间", "渠道", "旅程阶段", "触点", "地区", "客户类型", "推荐意愿", "满意度",
              "办理容易程度", "解决问题", "省心程度", "心理感受", "评论"]
    if extra is not None:
        header += ["会员号", *(column for column, *_ in DRIVERS.values()), "同意回访", "联系电话"]
    answers: list[Answer] = []
    rows: list[tuple[datetime, list[str | int]]] = []
    path = folder / f"survey_{period}.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        stages = list(STAGE_SHARE)
        for i in range(n):
            stage = rng.choices(stages, weights=[STAGE_SHARE[s] for s in stages])[0]
            nps = _nps(rng, plan.truth(period, stage))
            comment = _comment(rng, stage, nps, "zh") if rng.random() < 0.55 else ""
            if i == 7:
                comment = "快递太慢 <script>alert('x')</script> 请回电 13812345678"
            channel = rng.choice(list(CHANNELS.values()))
            nps_cell: str | int = nps
            if i in (11, 12):  # a couple of typos every month: the gate quarantines them
                nps_cell = 11
            at = _local_time(rng, period)
            row = [f"S{period.replace('-', '')}-{i:05d}", at.strftime("%Y/%m/%d %H:%M"), channel,
                   STAGES[stage], TOUCHPOINTS[rng.choice(TOUCHPOINT_OF[stage])],
                   rng.choice(list(REGIONS.values())),
                   rng.choice(list(SEGMENTS.values())), nps_cell, CSAT_LABELS[_scale(rng, nps, 5)],
                   _scale(rng, nps, 7), _scale(rng, nps, 7), _scale(rng, nps, 7), _scale(rng, nps, 7),
                   comment]
            if extra is not None:
                member = f"M{period.replace('-', '')[2:]}{i:05d}" if extra.random() < 0.9 else ""
                row += [member, *_ratings(extra, nps), *_consent(consent)]
                if member:
                    answers.append(Answer(member, at, nps))
            rows.append((at, row))
        if consent is not None:
            rows.sort(key=lambda r: r[0])
        w.writerows(row for _, row in rows)
    return answers


def _consent(consent: random.Random | None) -> list[str]:
    """Whether the customer agreed to a call back (60% do) and the number they gave."""
    if consent is None:
        return ["", ""]
    if consent.random() < 0.6:
        return ["是", f"1{consent.choice('3589')}{consent.randrange(10**9):09d}"]
    return ["否", ""]


def _write_orders(path: Path, extra: random.Random, answers: list[Answer]) -> None:
    """The CRM's order export (GBK, as Chinese Excel saves it): each member's orders in the 120 days
    after answering, and a churn flag on the day a churned member cancelled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="gbk", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["会员号", "日期", "订单数", "消费金额", "是否流失"])
        for a in answers:
            group = "promoter" if a.nps >= 9 else "passive" if a.nps >= 7 else "detractor"
            days = sorted(extra.uniform(0.5, 120) for _ in range(_poisson(extra, ORDERS_AFTER[group])))
            for d in days:
                spend = round(extra.lognormvariate(5.0, 0.5), 2)
                w.writerow([a.member, (a.at + timedelta(days=d)).strftime("%Y-%m-%d"), 1, spend, "否"])
            if extra.random() < CHURN_AFTER[group]:
                w.writerow([a.member, (a.at + timedelta(days=extra.uniform(10, 85))).strftime("%Y-%m-%d"),
                            0, 0, "是"])


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth; the means here are small)."""
    limit, k, p = pow(2.718281828459045, -mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _write_hotline(folder: Path, rng: random.Random, plan: DemoPlan, period: str, n: int) -> None:
    header = ["工单号", "来电时间", "首次响应时间", "解决时间", "是否投诉", "满意度", "地区", "通话备注"]
    rate = plan.complaint_rate.get(period, 0.08)
    slow = period in plan.complaint_rate
    path = folder / f"hotline_{period}.csv"
    with path.open("w", encoding="gbk", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i in range(n):
            opened = _local_time(rng, period)
            complaint = rng.random() < rate
            first = opened + timedelta(hours=rng.expovariate(1 / (20 if slow else 4)))
            resolved = first + timedelta(hours=rng.expovariate(1 / (60 if slow else 24)))
            csat = rng.choice([1, 2, 2, 3]) if complaint else rng.choice([3, 4, 4, 5, 5])
            note = rng.choice(PHRASES["staff"]["neg_zh"] + PHRASES["refund"]["neg_zh"]) if complaint \
                else (rng.choice(PHRASES["staff"]["pos_zh"]) if rng.random() < 0.4 else "")
            w.writerow([f"H{period.replace('-', '')}{i:05d}", opened.strftime("%Y-%m-%d %H:%M:%S"),
                        first.strftime("%Y-%m-%d %H:%M:%S"), resolved.strftime("%Y-%m-%d %H:%M:%S"),
                        "是" if complaint else "否", csat, rng.choice(list(REGIONS.values())), note])


def _write_app(folder: Path, rng: random.Random, plan: DemoPlan, period: str, n: int) -> None:
    if period == plan.broken_app_period:
        n = max(5, n // 40)  # the broken export: a fraction of the usual volume
    path = folder / f"app_{period}.jsonl"
    stages = ["purchase", "delivery", "use"]
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            stage = rng.choices(stages, weights=[0.3, 0.4, 0.3])[0]
            nps = _nps(rng, plan.truth(period, stage))
            lang = "en" if rng.random() < 0.35 else "zh"
            at = _local_time(rng, period).replace(tzinfo=TZ).astimezone(ZoneInfo("UTC"))
            rec = {"id": f"A-{period}-{i:05d}", "ts": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "stage": stage,
                   "nps": nps, "ces": _scale(rng, nps, 7), "lang": lang,
                   "segment": rng.choice(list(SEGMENTS)), "region": rng.choice(list(REGIONS)),
                   "comment": _comment(rng, stage, nps, lang) if rng.random() < 0.5 else None}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def write_training_set(path: Path, seed: int = 11, n: int = 3000) -> None:
    """A labelled comment file as a company would export it (label 1 = positive, 0 = negative)."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for _ in range(n):
            topic = rng.choice(list(PHRASES))
            tone, lang = rng.choice(["pos", "neg"]), rng.choice(["zh", "zh", "en"])
            w.writerow([rng.choice(PHRASES[topic][f"{tone}_{lang}"]), 1 if tone == "pos" else 0])


CONFIG = """\
# cxloop demo configuration (written by `cxloop demo`). Every key is documented in README.md.
[project]
name = "Demo Retail 演示零售"
timezone = "Asia/Shanghai"
language = "zh"

[database]
url = "sqlite:///{db}"

[[sources]]
name = "survey"
kind = "csv"
path = "data/survey/*.csv"
encoding = "auto"
data_owners = ["cxfile://localhost/{notices}/data-owners"]
[sources.columns]
response_id = "编号"
submitted_at = "提交时间"
channel = "渠道"
journey_stage = "旅程阶段"
touchpoint = "触点"
region = "地区"
segment = "客户类型"
nps = "推荐意愿"
csat = "满意度"
ces = "办理容易程度"
cx_success = "解决问题"
cx_effort = "省心程度"
cx_emotion = "心理感受"
comment = "评论"
customer_id = "会员号"
contact_ok = "同意回访"
contact_phone = "联系电话"
[sources.drivers]
delivery_speed = "配送速度"
product_quality = "产品质量"
staff_service = "服务态度"
value_for_money = "性价比"
app_ease = "APP易用性"
[sources.values.channel]
"问卷" = "survey"
"门店" = "store"
"官网" = "web"
"微信" = "wechat"
"邮件" = "email"
[sources.values.journey_stage]
"认知" = "awareness"
"考虑" = "consideration"
"购买" = "purchase"
"配送" = "delivery"
"使用" = "use"
"售后" = "after_sales"
[sources.values.touchpoint]
"官网" = "website"
"APP" = "app"
"门店" = "store"
"热线" = "hotline"
"快递员" = "courier"
"社交媒体" = "social"
[sources.values.region]
"华东" = "east"
"华北" = "north"
"华南" = "south"
"西部" = "west"
[sources.values.segment]
"新客" = "new"
"老客" = "returning"
"会员" = "vip"
[sources.values.contact_ok]
"是" = true
"否" = false
[sources.values.csat]
"非常不满意" = 1
"不满意" = 2
"一般" = 3
"满意" = 4
"非常满意" = 5

[[sources]]
name = "hotline"
kind = "csv"
path = "data/hotline/*.csv"
encoding = "auto"
channel = "hotline"
touchpoint = "hotline"
journey_stage = "after_sales"
[sources.columns]
response_id = "工单号"
submitted_at = "来电时间"
opened_at = "来电时间"
first_response_at = "首次响应时间"
resolved_at = "解决时间"
is_complaint = "是否投诉"
csat = "满意度"
region = "地区"
comment = "通话备注"
[sources.values.is_complaint]
"是" = true
"否" = false
[sources.values.region]
"华东" = "east"
"华北" = "north"
"华南" = "south"
"西部" = "west"

[[sources]]
name = "app"
kind = "jsonl"
path = "data/app/*.jsonl"
channel = "app"
touchpoint = "app"
data_owners = ["cxfile://localhost/{notices}/data-owners"]
[sources.columns]
response_id = "id"
submitted_at = "ts"
journey_stage = "stage"
nps = "nps"
ces = "ces"
language = "lang"
segment = "segment"
region = "region"
comment = "comment"

# Attribute questions of the survey: the report's "What drives the score" section
[[drivers]]
name = "delivery_speed"
label_zh = "配送速度"
label_en = "Delivery speed"
journey_stage = "delivery"

[[drivers]]
name = "product_quality"
label_zh = "产品质量"
label_en = "Product quality"
journey_stage = "use"

[[drivers]]
name = "staff_service"
label_zh = "服务态度"
label_en = "Staff service"
journey_stage = "after_sales"

[[drivers]]
name = "value_for_money"
label_zh = "性价比"
label_en = "Value for money"
journey_stage = "purchase"

[[drivers]]
name = "app_ease"
label_zh = "APP易用性"
label_en = "App ease of use"
touchpoint = "app"

# What members did after answering (the CRM's order export): the report's outcomes section
[outcomes]
kind = "csv"
path = "data/crm/*.csv"
window_days = 90
currency = "CNY"
[outcomes.columns]
customer_id = "会员号"
date = "日期"
orders = "订单数"
spend = "消费金额"
churned = "是否流失"

[vocabulary]
channel = ["survey", "store", "web", "wechat", "email", "hotline", "app"]
journey_stage = ["awareness", "consideration", "purchase", "delivery", "use", "after_sales"]
touchpoint = ["website", "app", "store", "hotline", "courier", "social"]

[departments.logistics]
name = "物流部"
head = "王伟"
language = "zh"
notify = ["cxfile://localhost/{notices}/logistics"]
[departments.logistics.owns]
journey_stage = ["delivery"]
touchpoint = ["courier"]
topic = ["delivery"]

[departments.customer_service]
name = "客服中心"
head = "李娜"
language = "zh"
notify = ["cxfile://localhost/{notices}/customer_service"]
[departments.customer_service.owns]
journey_stage = ["after_sales"]
channel = ["hotline"]
touchpoint = ["hotline"]
topic = ["staff_attitude", "waiting_time", "returns_refunds"]

[departments.sales]
name = "销售部"
head = "张强"
language = "zh"
notify = ["cxfile://localhost/{notices}/sales"]
[departments.sales.owns]
journey_stage = ["purchase"]
touchpoint = ["store"]
channel = ["store"]
topic = ["price"]

[departments.marketing]
name = "市场部"
head = "陈静"
language = "zh"
notify = ["cxfile://localhost/{notices}/marketing"]
[departments.marketing.owns]
journey_stage = ["awareness", "consideration"]
touchpoint = ["social"]

[departments.product]
name = "Product & Digital"
head = "Alex Morgan"
language = "en"
notify = ["cxfile://localhost/{notices}/product"]
[departments.product.owns]
journey_stage = ["use"]
touchpoint = ["app", "website"]
channel = ["app", "web"]
topic = ["product_quality", "app_website"]

[departments.cx_office]
name = "客户体验办公室"
head = "刘洋"
language = "zh"
notify = ["cxfile://localhost/{notices}/cx_office"]

[[targets]]
kpi = "nps"
scope = "overall"
value = 20

[[targets]]
kpi = "nps"
scope = "journey_stage"
value = 30

[[targets]]
kpi = "complaint_rate"
scope = "channel"
match = "hotline"
value = 15

[[targets]]
kpi = "csat"
scope = "overall"
value = 60

[actions]
default_owner = "cx_office"
escalation_notify = ["cxfile://localhost/{notices}/escalations"]

[quality]
data_owners = ["cxfile://localhost/{notices}/data-owners"]

# Follow-up cases (`cxloop followup run`, daily): an unhappy customer who agreed to a call back is
# called by the department that owns what went wrong, within one working day
[cases]
first_contact_hours = 9         # working hours (one working day of 09:00-18:00)
close_days = 5                  # working days
remind_before_hours = 3
holidays = ["2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04", "2026-10-05", "2026-10-06",
            "2026-10-07"]       # the National Day week; weekend days worked go in extra_workdays
escalation_notify = ["cxfile://localhost/{notices}/escalations"]

[[cases.rules]]
name = "detractor"
nps_max = 6

[[cases.rules]]
name = "delivery_complaint"     # a negative comment about delivery, whatever the score
topics = ["delivery"]

[comments]
model = "auto"
model_path = "sentiment/model.joblib"
"""


def write_demo(folder: Path, plan: DemoPlan) -> Path:
    """Write the demo's config, source files and training set; return the config path."""
    rng = random.Random(plan.seed)
    extra = random.Random(f"{plan.seed}:drivers-and-outcomes")  # its own stream: `rng`'s draws stay the same
    consent = random.Random(f"{plan.seed}:consent")  # and one for the consent question
    answers: list[Answer] = []
    folder = folder.resolve()
    dirs = {k: folder / "data" / k for k in ("survey", "hotline", "app")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    notices = folder / "notices"
    notices.mkdir(exist_ok=True)
    for period in plan.periods:
        asks = consent if period == plan.periods[-1] else None
        answers += _write_survey(dirs["survey"], rng, plan, period, int(plan.rows_per_month * 0.6), extra,
                                 asks)
        _write_hotline(dirs["hotline"], rng, plan, period, int(plan.rows_per_month * 0.15))
        _write_app(dirs["app"], rng, plan, period, int(plan.rows_per_month * 0.25))
    _write_orders(folder / "data" / "crm" / "orders.csv", extra, answers)
    write_training_set(folder / "training" / "labelled_comments.csv")
    config = folder / "cxloop.toml"
    config.write_text(CONFIG.format(db=folder / "cxloop.db", notices=notices), encoding="utf-8")
    return config
