"""Which responses open a follow-up case: the `[[cases.rules]]` of the config, applied to rows.

A response opens a case when its customer agreed to be contacted (`contact_ok`) and any rule
matches; within a rule every condition given must hold. No consent, no case, whatever the score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cxloop.config import CaseRuleConfig


def _themes(row: Mapping[str, Any]) -> set[str]:
    themes = row.get("themes") or ""
    return {t for t in str(themes).split(",") if t}


def rule_matches(rule: CaseRuleConfig, row: Mapping[str, Any]) -> bool:
    """Whether every condition of `rule` holds for the response `row` (a missing score fails)."""
    if rule.nps_max is not None and (row.get("nps") is None or row["nps"] > rule.nps_max):
        return False
    if rule.csat_max is not None and (row.get("csat") is None or row["csat"] > rule.csat_max):
        return False
    if rule.complaint is not None and bool(row.get("is_complaint")) != rule.complaint:
        return False
    return not rule.topics or (row.get("sentiment") == "negative" and bool(_themes(row) & set(rule.topics)))


def matching_rules(rules: Sequence[CaseRuleConfig], row: Mapping[str, Any]) -> list[CaseRuleConfig]:
    """The rules a response matches; none when the customer did not agree to be contacted."""
    if row.get("contact_ok") is not True:
        return []
    return [r for r in rules if rule_matches(r, row)]


def still_unhappy(rules: Sequence[CaseRuleConfig], row: Mapping[str, Any]) -> bool:
    """A re-survey answer that would itself open a case: the customer was not recovered."""
    return any(rule_matches(r, row) for r in rules)
