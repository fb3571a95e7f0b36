"""The gate's report of one period for people (`reports/<period>/validation.html`): each check and a
sample of the failing rows."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from cxloop.config import Settings
from cxloop.tasks.rendering import render
from cxloop.tasks.validate.results import CheckResult, GateResult


def write_report(settings: Settings, gate: GateResult, bad: pd.DataFrame,
                 reasons: dict[str, list[dict[str, Any]]], lang: str, now: datetime) -> Path:
    """`reports/<period>/validation.html`: each expectation, its result, counts and failing samples."""

    samples = []
    for rec in bad.head(50).to_dict("records"):
        samples.append({"source": rec["source"], "response_id": rec["response_id"],
                        "reasons": reasons.get(rec["row_key"], [])})
    suites: dict[tuple[str, str], list[CheckResult]] = defaultdict(list)
    for c in gate.checks:
        suites[(c.suite, c.level)].append(c)
    html = render("validation.html", lang, gate=gate, counts=gate.counts(), now=now,
                  suites=[{"name": n, "level": lv, "checks": cs} for (n, lv), cs in suites.items()],
                  samples=samples, project=settings.project.name)
    out = settings.resolve("reports") / gate.period / "validation.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
