"""The follow-up cases of a period as KPI histograms (issue 19, item 6), so the monthly loop
measures, judges, charts and acts on them like on any KPI.

A case belongs to the period of the response that opened it (`FollowupCase.period`) and is
counted for the company and for its owning department. Per case:

* `case_contacted` (follow-up rate): 1 when the customer was contacted, over every case opened;
* `case_first_contact` (time to first contact, median and p90): the working hours from the
  customer's answer to the first contact, on the SLA's own calendar, for contacted cases;
* `case_contact_sla` (SLA share): 1 when the first contact came by the deadline, 0 when it came
  late or the deadline passed (by `as_of`, or by the case's closure as unreachable / declined)
  without one; a case still inside its deadline, or closed without a contact before it, is not
  decided and not counted;
* `case_recovered` (recovery rate): 1 when the re-survey showed the customer recovered, over the
  cases with a re-survey outcome.

A period without cases yields no rows at all, so its report shows nothing rather than 0/0.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from cxloop.config import Settings
from cxloop.models import FollowupCase, as_utc, utcnow
from cxloop.tasks.cases.sla import Calendar
from cxloop.tasks.kpis.prepare import scope_names, time_codes, time_labels
from cxloop.vocabulary import OVERALL, OVERALL_VALUE

_FC = FollowupCase.__table__  # type: ignore[attr-defined]
_COLUMNS = ["scope", "scope_value", "family", "bin", "count"]


def case_facts(settings: Settings, engine: Engine, period: str,
               as_of: datetime | None = None) -> pd.DataFrame:
    """One row per case of the period: department, contacted (0/1), first-contact working hours
    (NaN when not contacted), within SLA (1/0, -1 undecided), recovered (1/0, -1 no outcome)."""
    with engine.connect() as conn:
        recs = conn.execute(select(_FC.c.department, _FC.c.opened_at, _FC.c.contacted_at,
                                   _FC.c.contact_due, _FC.c.closed_at, _FC.c.outcome)
                            .where(_FC.c.period == period)).all()
    now = as_utc(as_of or utcnow())
    cal = Calendar.of(settings.cases, settings.tz)
    rows: list[dict[str, Any]] = []
    for dept, opened, contacted, due, closed, outcome in recs:
        if contacted is not None:
            hours = cal.between(opened, contacted)
            sla = int(as_utc(contacted) <= as_utc(due))
        else:  # breached once the deadline passed while the case was open without a contact
            hours = float("nan")
            sla = 0 if as_utc(due) <= (now if closed is None else as_utc(closed)) else -1
        recovered = -1 if outcome is None else int(outcome == "recovered")
        rows.append({"department": dept, "contacted": int(contacted is not None), "hours": hours,
                     "sla": sla, "recovered": recovered})
    return pd.DataFrame(rows, columns=["department", "contacted", "hours", "sla", "recovered"])


def case_histograms(settings: Settings, engine: Engine, period: str,
                    as_of: datetime | None = None) -> pd.DataFrame:
    """Histograms of the case families per (scope, value), in the KPI stage's frame layout."""
    facts = case_facts(settings, engine, period, as_of)
    out: list[dict[str, Any]] = []
    if facts.empty:
        return pd.DataFrame(out, columns=_COLUMNS)
    groups: list[tuple[str, str, pd.DataFrame]] = [(OVERALL, OVERALL_VALUE, facts)]
    if "department" in scope_names(settings):
        groups += [("department", str(d), g) for d, g in facts.groupby("department", sort=True)]
    for scope, value, g in groups:
        for family, col in (("case_contacted", "contacted"), ("case_contact_sla", "sla"),
                            ("case_recovered", "recovered")):
            counts = g[col][g[col] >= 0].value_counts()
            out += [{"scope": scope, "scope_value": value, "family": family, "bin": float(b),
                     "count": int(c)} for b, c in sorted(counts.items())]
        codes = time_codes(g["hours"].to_numpy(dtype=float))
        codes = codes[codes >= 0]
        if codes.size:
            uniq, counts_ = np.unique(codes, return_counts=True)
            out += [{"scope": scope, "scope_value": value, "family": "case_first_contact", "bin": float(b),
                     "count": int(c)} for b, c in zip(time_labels(uniq), counts_, strict=True)]
    return pd.DataFrame(out, columns=_COLUMNS).astype({"bin": float, "count": np.int64})
