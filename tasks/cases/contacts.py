"""Contact details, kept apart from the responses: stored only when the customer agreed to be
contacted, shown only to a case's owner and admins, purged after the retention period.

Collect maps the contact columns like any field, then hands the frame here before storing it:
consenting rows' details go to `customer_contact` (in the same transaction as the responses), and
every row loses its contact columns, so no phone number ever reaches the `feedback` table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, Table, delete, insert, select

from cxloop.models import CONTACT_FIELDS, CustomerContact, utcnow

_CC: Table = CustomerContact.__table__  # type: ignore[attr-defined]
_CHUNK = 1000
HIDDEN = "[hidden]"


def _text(v: Any) -> str | None:
    return None if v is None or (isinstance(v, float) and v != v) or v is pd.NA else str(v)


def store_contacts(conn: Connection, source: str, records: pd.DataFrame) -> pd.DataFrame:
    """Store the consenting rows' contact details (a re-collect rewrites them) and return the
    frame without contact columns. Without contact columns this costs nothing."""
    present = [c for c in CONTACT_FIELDS if c in records.columns]
    if not present:
        return records
    rest = records.drop(columns=present)
    if "contact_ok" not in records.columns or not len(records):
        return rest  # no consent recorded: nothing may be kept
    ok = records["contact_ok"].fillna(False).astype(bool).to_numpy()
    chosen = records[ok]
    has_any = chosen[present].notna().any(axis=1).to_numpy()
    chosen = chosen[has_any]
    if not len(chosen):
        return rest
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for rec in chosen.to_dict("records"):
        rows.append({"source": source, "response_id": str(rec["response_id"]),
                     "customer_id": _text(rec.get("customer_id")),
                     "name": _text(rec.get("contact_name")), "phone": _text(rec.get("contact_phone")),
                     "email": _text(rec.get("contact_email")),
                     "submitted_at": rec.get("submitted_at"), "stored_at": now})
    for start in range(0, len(rows), _CHUNK):
        part = rows[start:start + _CHUNK]
        ids = [r["response_id"] for r in part]
        conn.execute(delete(_CC).where(_CC.c.source == source, _CC.c.response_id.in_(ids)))
        conn.execute(insert(_CC), [{**r, "submitted_at": _utc(r["submitted_at"])} for r in part])
    return rest


def _utc(ts: Any) -> datetime | None:
    if ts is None or ts is pd.NaT or (isinstance(ts, float) and ts != ts):
        return None
    return pd.Timestamp(ts).tz_convert("UTC").to_pydatetime()


def contact_of(conn: Connection, source: str, response_id: str) -> dict[str, str | None] | None:
    """The contact details given with one response, if any were kept."""
    row = conn.execute(select(_CC.c.name, _CC.c.phone, _CC.c.email)
                       .where(_CC.c.source == source, _CC.c.response_id == response_id)).first()
    return None if row is None else {"name": row.name, "phone": row.phone, "email": row.email}


def may_see(viewer: str, department: str) -> bool:
    """Contact details are for the case's owner and admins only."""
    return viewer == "admin" or viewer == department


def shown(contact: dict[str, str | None] | None, visible: bool) -> dict[str, str | None] | None:
    """The contact details as a viewer may see them: every value hidden unless `visible`."""
    if contact is None:
        return None
    return {k: (v if visible else (HIDDEN if v else None)) for k, v in contact.items()}


def purge_contacts(engine: Engine, before: datetime) -> int:
    """Delete the contact details of responses submitted before `before` (the retention period)."""
    with engine.begin() as conn:
        result = conn.execute(delete(_CC).where(_CC.c.submitted_at < before))
    return int(result.rowcount or 0)


def forget_contacts(conn: Connection, customer_id: str) -> int:
    return int(conn.execute(delete(_CC).where(_CC.c.customer_id == customer_id)).rowcount or 0)

