"""A file's driver ratings (`[sources.drivers]`, `tasks.ratings`) into `feedback_rating`, inside the
file's transaction: each response's ratings replace what an earlier import stored for it, so a
re-collected file never duplicates them and a rating removed from the export is removed here too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import Connection, Table, delete

from cxloop.models import Feedback, FeedbackRating
from cxloop.tasks.collect.bulk import _IN_CHUNK, _bulk_insert, _chunks, _existing
from cxloop.tasks.ratings import Ratings

_FB: Table = Feedback.__table__  # type: ignore[attr-defined]
_FR: Table = FeedbackRating.__table__  # type: ignore[attr-defined]


def store_file_ratings(conn: Connection, source: str, period: str, response_ids: Sequence[str],
                       ratings: Ratings | None) -> int:
    """Replace the stored ratings of these responses (rows of `ratings`, stored feedback of
    (source, response_id)) with theirs; a response without any rating keeps no row. Returns the
    rows written."""
    if ratings is None or not len(response_ids):
        return 0
    found = _existing(conn, _FB, source, [str(r) for r in response_ids])
    ids = [found[str(r)][0] for r in response_ids]
    for part in _chunks(ids, _IN_CHUNK):
        conn.execute(delete(_FR).where(_FR.c.feedback_id.in_(list(part))))
    given = [(fid, json.dumps(r, ensure_ascii=False))
             for fid, r in zip(ids, ratings.as_json(), strict=True) if r]
    if given:
        fids, texts = zip(*given, strict=True)
        _bulk_insert(conn, _FR.name, ["feedback_id", "ratings"], [list(fids), list(texts)],
                     {"period": period})
    return len(given)
