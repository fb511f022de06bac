import pytest

from tradetape.domain.trade import TradeFormatError, parse_trade

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
