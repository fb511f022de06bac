import numpy as np
import polars as pl
import pytest

from tradetape.binance.aggtrade import TradeFormatError, first_invalid, parse_trade
from tradetape.domain.column_checks import decimal_units
from tradetape.domain.columns import TradeColumns
from tradetape.domain.trade import NO_NORMAL_QTY, is_void

GOOD = {
    "e": "aggTrade",
    "E": 1,
    "s": "BTCUSDT",
    "a": 12,
    "p": "87648.21000000",
    "q": "0.08185000",
    "f": 100,
    "l": 101,
    "T": 1_767_225_600_039,
    "m": True,
    "M": True,
}


def test_parses_exact_units() -> None:
    row = parse_trade(GOOD)
    assert (row.agg_id, row.price, row.qty, row.first_id, row.last_id, row.time, row.buyer_maker) == (
        12,
        8764821000000,
        8185000,
        100,
        101,
        1_767_225_600_039,
        True,
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"a": "12"}, "'a'"),
        ({"p": 87648.21}, "'p'"),
        ({"p": "abc"}, "not a plain decimal"),
        ({"p": "0"}, "positive"),
        ({"q": "0"}, "quantity must be positive"),
        ({"q": "0.00000000"}, "quantity must be positive"),
        ({"q": None}, "'q'"),
        ({"m": 1}, "'m'"),
        ({"T": -1}, "'T'"),
        ({"l": 99}, "below first"),
        ({"a": True}, "'a'"),
        ({"a": 2**53}, "'a'"),
        ({"f": 2**63}, "'f'"),
        ({"l": -1}, "'l'"),
        ({"T": 1_767_225_600_039_000}, "not epoch ms"),
        ({"T": 1_000}, "not epoch ms"),
        ({"T": 1.5e12}, "'T'"),
        ({"p": "100000000000000"}, "exceeds"),
        ({"q": "92233720368.54775808"}, "exceeds"),
        ({"p": "²"}, "not a plain decimal"),
        ({"q": "1.²"}, "not a plain decimal"),
        ({"p": "1" * 41}, "longer than"),
    ],
)
def test_rejects_with_a_specific_reason(change: dict[str, object], reason: str) -> None:
    with pytest.raises(TradeFormatError, match=reason):
        parse_trade({**GOOD, **change})


def test_rejects_non_objects() -> None:
    with pytest.raises(TradeFormatError, match="list"):
        parse_trade([1, 2])


def test_a_trade_time_more_than_a_minute_ahead_is_refused() -> None:
    now = GOOD["T"]
    assert isinstance(now, int)
    assert parse_trade({**GOOD, "T": now + 60_000}, now_ms=now).time == now + 60_000
    with pytest.raises(TradeFormatError, match="a minute from now"):
        parse_trade({**GOOD, "T": now + 60_001}, now_ms=now)


VOID = {**GOOD, "p": "0.00000000", "q": "0.00000000", "f": -1, "l": -1}
"""Binance's invalidated duplicate as its REST serves it."""


@pytest.mark.parametrize(("price", "qty"), [("0.00000000", "0.00000000"), ("0", "0"), ("0.0", "0.000")])
def test_binance_void_rows_are_accepted_as_voids(price: str, qty: str) -> None:
    row = parse_trade({**VOID, "p": price, "q": qty})
    assert row == (12, 0, 0, -1, -1, 1_767_225_600_039, True, NO_NORMAL_QTY)
    assert is_void(row.price, row.qty, row.first_id, row.last_id)
    assert not is_void(*parse_trade(GOOD)[1:5])


NEAR_VOIDS = [
    ({"f": 100}, "'l'"),
    ({"l": 101}, "'f'"),
    ({"f": -2, "l": -2}, "'f'"),
    ({"p": "1"}, "'f'"),
    ({"q": "1"}, "'f'"),
    ({"p": "1", "q": "1"}, "'f'"),
    ({"p": "-0"}, "not a plain decimal"),
    ({"q": ""}, "not a plain decimal"),
    ({"p": "0.000000001"}, "places"),
    ({"a": -1}, "'a'"),
    ({"f": 0, "l": 0}, "positive"),
    ({"T": 1_000}, "not epoch ms"),
]


@pytest.mark.parametrize(("change", "reason"), NEAR_VOIDS)
def test_anything_looser_than_the_void_pattern_stays_refused(change: dict[str, object], reason: str) -> None:
    with pytest.raises(TradeFormatError, match=reason):
        parse_trade({**VOID, **change})


@pytest.mark.parametrize("change", [{}, *(change for change, _ in NEAR_VOIDS if "a" not in change)])
def test_the_column_checks_judge_voids_as_parse_trade_does(change: dict[str, object]) -> None:
    obj = {**VOID, **change}
    try:
        expected: bool = bool(parse_trade(obj))
    except TradeFormatError:
        expected = False
    units, parsed = decimal_units(pl.Series([obj["p"], obj["q"]]))
    if not parsed.all():  # the dump reader refuses the text before any value rule
        assert not expected
        return
    ints = [np.array([value], dtype=np.int64) for value in (obj["a"], *units.tolist(), obj["f"], obj["l"], obj["T"])]
    columns = TradeColumns.of_arrays([*ints, np.array([obj["m"]], dtype=np.bool_)])
    assert (first_invalid(columns) is None) == expected, first_invalid(columns)
