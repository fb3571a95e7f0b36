"""Codes of text columns: pandas' factorisation, worked out once per column of the month frame."""

from __future__ import annotations

import gc
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine
from sqlmodel import Session

import cxloop.tasks.month as month
from cxloop.models import Feedback
from cxloop.tasks import codes
from cxloop.tasks.codes import factorize

PERIOD = "2026-10"


def test_codes_are_pandas_factorisation_in_a_small_read_only_type() -> None:
    values = pd.Series(["b", None, "a", "b", " a"], dtype="str")
    got, uniques = factorize(values)
    want, want_uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    assert got.tolist() == want.tolist() == [0, -1, 1, 0, 2]
    assert uniques.tolist() == list(want_uniques)
    assert got.dtype == np.int8
    with pytest.raises(ValueError):
        got[0] = 1  # shared by every stage: nobody may change it
    assert factorize(pd.Series([f"v{i}" for i in range(127)], dtype="str"))[0].dtype == np.int8
    assert factorize(pd.Series([f"v{i}" for i in range(128)], dtype="str"))[0].dtype == np.int16
    numbers = pd.Series([2.0, np.nan, 2.0])  # not a text column: factorised, not remembered
    assert factorize(numbers)[0].tolist() == [0, -1, 0]


def test_a_column_is_remembered_while_its_array_lives() -> None:
    frame = pd.DataFrame({"channel": pd.Series(["app", "web", "app"], dtype="str"), "n": [1, 2, 3]})
    first = factorize(frame["channel"])
    # a column selection, a reset index, an assignment of other columns share the array
    again = factorize(frame[["n", "channel"]].reset_index(drop=True).assign(x=1)["channel"])
    assert again[0] is first[0]
    changed = frame.assign(channel=pd.Series(["app", "app", "web"], dtype="str"))
    assert factorize(changed["channel"])[0].tolist() == [0, 0, 1]  # a new array: worked out anew
    remembered = len(codes._remembered)
    del frame, changed, again, first
    gc.collect()
    assert len(codes._remembered) <= remembered - 2  # forgotten with the arrays


def _seed(engine: Engine) -> list[int]:
    t = datetime(2026, 10, 3, 6, 5, tzinfo=UTC)
    with Session(engine) as s:
        rows = [Feedback(source="survey", response_id=str(i), period=PERIOD, submitted_at=t,
                         channel=ch, themes=th, content_hash=str(i))
                for i, (ch, th) in enumerate([("app", "price"), ("web", None), ("app", "price,delivery")])]
        s.add_all(rows)
        s.commit()
        return [int(r.id) for r in rows if r.id is not None]


def test_stages_share_the_codes_of_the_kept_month_until_a_column_is_patched(engine: Engine) -> None:
    ids = _seed(engine)
    shared = month.Month(engine, PERIOD, keep=True)
    validate = factorize(shared.rows(["id", "channel", "themes"])["channel"])
    kpis = factorize(shared.rows(["channel"], clean=True)["channel"])
    assert kpis[0] is validate[0] and validate[1].tolist() == ["app", "web"]
    themes = factorize(shared.rows(["themes"])["themes"])
    shared.patch(ids[1:2], {"themes": "price"})  # as the comments stage does
    patched = factorize(shared.rows(["themes"])["themes"])
    assert patched[0] is not themes[0]
    assert patched[0].tolist() == [0, 0, 1] and patched[1].tolist() == ["price", "price,delivery"]
    assert factorize(shared.rows(["channel"])["channel"])[0] is validate[0]
    # outside a cycle each call reads the database: equal codes, worked out for each read
    alone = factorize(month.Month(engine, PERIOD).rows(["channel"])["channel"])
    assert alone[0] is not validate[0] and alone[0].tolist() == validate[0].tolist()
