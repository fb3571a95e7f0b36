"""The words cxloop uses for what it measures: KPI names, their better direction, scopes, statuses,
and how a reader sees each in English and Chinese.

One home for these facts: the KPI stage, the decisions, the actions, the notices and the report all
read them here, so a notice and the report say the same thing to the same department head, and a
KPI's direction cannot differ between the number that opens an action and the chart that shows it.
The measurement recipes (`SPECS`: which histogram, which bins) stay with the KPI stage.
"""

from __future__ import annotations

from typing import Literal

Lang = Literal["en", "zh"]

# --------------------------------------------------------------------------------------------- KPIs

# Every KPI cxloop measures, in the order tables and pages list them.
KPIS: tuple[str, ...] = (
    "nps", "csat", "ces", "ces_top", "cx_index", "cx_success", "cx_effort", "cx_emotion",
    "complaint_rate", "first_response_hours", "first_response_p90", "first_response_sla",
    "resolution_hours", "resolution_p90", "resolution_sla", "responses", "theme_share",
    "theme_negative_share", "followup_rate", "first_contact_hours", "first_contact_p90",
    "first_contact_sla", "recovery_rate",
)

# Lower is better: a shortfall is a value above target, a chart signal "low" is good news.
LOWER_IS_BETTER: frozenset[str] = frozenset({
    "complaint_rate", "first_response_hours", "first_response_p90", "resolution_hours",
    "resolution_p90", "theme_share", "theme_negative_share", "first_contact_hours", "first_contact_p90",
})
# A count has no better direction worth a control-chart signal.
NO_SIGNAL: frozenset[str] = frozenset({"responses"})
# Measured per comment topic only.
TOPIC_ONLY: frozenset[str] = frozenset({"theme_share", "theme_negative_share"})
# Measured from follow-up cases (issue 19), not from responses: only where a period has cases
# (company and department), never shown as 0/0.
CASE_KPIS: tuple[str, ...] = (
    "followup_rate", "first_contact_hours", "first_contact_p90", "first_contact_sla", "recovery_rate",
)

# The range a KPI can take, for colour scales and bullet bars (percentages: 0-100, the default).
DOMAINS: dict[str, tuple[float, float]] = {
    "nps": (-100.0, 100.0), "cx_index": (-100.0, 100.0), "cx_success": (-100.0, 100.0),
    "cx_effort": (-100.0, 100.0), "cx_emotion": (-100.0, 100.0), "ces": (1.0, 7.0),
}

KPI_LABELS: dict[str, dict[str, str]] = {
    "nps": {"en": "NPS", "zh": "净推荐值"},
    "csat": {"en": "CSAT (% 4-5)", "zh": "满意度（4-5分占比）"},
    "ces": {"en": "CES (mean 1-7)", "zh": "客户费力度（均值1-7）"},
    "ces_top": {"en": "CES (% 5-7)", "zh": "办理容易占比（5-7分）"},
    "cx_index": {"en": "CX index", "zh": "客户体验指数"},
    "cx_success": {"en": "CX success (net)", "zh": "问题解决（净值）"},
    "cx_effort": {"en": "CX effort (net)", "zh": "费力程度（净值）"},
    "cx_emotion": {"en": "CX emotion (net)", "zh": "心理感受（净值）"},
    "complaint_rate": {"en": "Complaint rate (%)", "zh": "投诉率（%）"},
    "first_response_hours": {"en": "First response (median h)", "zh": "首次响应时长（中位数，小时）"},
    "first_response_p90": {"en": "First response (p90 h)", "zh": "首次响应时长（P90，小时）"},
    "first_response_sla": {"en": "First response within SLA (%)", "zh": "首次响应达标率（%）"},
    "resolution_hours": {"en": "Resolution (median h)", "zh": "解决时长（中位数，小时）"},
    "resolution_p90": {"en": "Resolution (p90 h)", "zh": "解决时长（P90，小时）"},
    "resolution_sla": {"en": "Resolution within SLA (%)", "zh": "解决达标率（%）"},
    "responses": {"en": "Responses", "zh": "反馈数"},
    "theme_share": {"en": "Topic share of comments (%)", "zh": "话题占评论比例（%）"},
    "theme_negative_share": {"en": "Negative topic share (%)", "zh": "话题负面评论比例（%）"},
    "followup_rate": {"en": "Follow-up rate (% of cases contacted)", "zh": "跟进率（已联系案例占比，%）"},
    "first_contact_hours": {"en": "Time to first contact (median working h)",
                            "zh": "首次联系时长（中位数，工作小时）"},
    "first_contact_p90": {"en": "Time to first contact (p90 working h)",
                          "zh": "首次联系时长（P90，工作小时）"},
    "first_contact_sla": {"en": "First contact within SLA (%)", "zh": "首次联系及时率（%）"},
    "recovery_rate": {"en": "Recovery rate (% recovered at re-survey)",
                      "zh": "客户挽回率（复访挽回占比，%）"},
}


def lower_is_better(kpi: str) -> bool:
    return kpi in LOWER_IS_BETTER


def kpi_label(kpi: str, lang: str) -> str:
    """The KPI as a reader sees it; an unknown name as it is."""
    return KPI_LABELS.get(kpi, {}).get(lang) or KPI_LABELS.get(kpi, {}).get("en") or kpi


# ------------------------------------------------------------------------------------------- scopes

OVERALL = "overall"
OVERALL_VALUE = "all"
TOPIC = "topic"
CROSS_SEP = " x "  # scope name of a crossing: "department x region"
VALUE_SEP = " | "  # scope value of a crossing: "logistics | east"

SCOPE_LABELS: dict[str, dict[str, str]] = {
    "overall": {"en": "Company", "zh": "全公司"},
    "department": {"en": "Department", "zh": "部门"},
    "journey_stage": {"en": "Journey stage", "zh": "旅程阶段"},
    "touchpoint": {"en": "Touchpoint", "zh": "触点"},
    "channel": {"en": "Channel", "zh": "渠道"},
    "segment": {"en": "Segment", "zh": "客户群"},
    "region": {"en": "Region", "zh": "区域"},
    "topic": {"en": "Topic", "zh": "话题"},
}


def scope_label(scope: str, lang: str) -> str:
    """A scope name as a reader sees it; a crossing's parts joined by " × "."""
    return " × ".join(SCOPE_LABELS.get(p, {}).get(lang) or p for p in scope.split(CROSS_SEP))


# ----------------------------------------------------------------------------------- KPI statuses

KPI_STATUS_LABELS: dict[str, dict[str, str]] = {
    "met": {"en": "met", "zh": "达标"},
    "at_risk": {"en": "at risk", "zh": "有风险"},
    "missed": {"en": "missed", "zh": "未达标"},
    "insufficient": {"en": "insufficient data", "zh": "样本不足"},
    "no_target": {"en": "no target", "zh": "无目标"},
}


def kpi_status_label(status: str, lang: str) -> str:
    return KPI_STATUS_LABELS.get(status, {}).get(lang) or status.replace("_", " ")


# ------------------------------------------------------------------------------ follow-up cases

CASE_STATUSES: tuple[str, ...] = ("new", "contacted", "resolved", "unreachable", "declined")
CASE_STATUS_LABELS: dict[str, dict[str, str]] = {
    "new": {"en": "new", "zh": "待联系"},
    "contacted": {"en": "contacted", "zh": "已联系"},
    "resolved": {"en": "resolved", "zh": "已解决"},
    "unreachable": {"en": "unreachable", "zh": "联系不上"},
    "declined": {"en": "declined", "zh": "客户拒绝"},
}


def case_status_label(status: str, lang: str) -> str:
    return CASE_STATUS_LABELS.get(status, {}).get(lang) or status


# ------------------------------------------------------------------------------------------ themes

THEME_SEP = ","  # the stored `themes` field: topic ids joined by commas ("delivery,price")


def split_themes(value: object) -> list[str]:
    """The topic ids of one stored `themes` value, in order, each once; empty for None/NaN/""."""
    if value is None or value != value:  # None or NaN
        return []
    return list(dict.fromkeys(t.strip() for t in str(value).split(THEME_SEP) if t.strip()))
