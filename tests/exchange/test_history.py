"""The trade history: ordering, lookups, trimming, wake-ups and the wire encoding."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tradetape.services.exchange.dumps import dump_csv
from tradetape.services.exchange.history import AggTrade, TradeHistory, encode_event, encode_rest_rows

pytestmark = pytest.mark.timeout(5)


def trade(agg_id: int, time_ms: int) -> AggTrade:
    return AggTrade(agg_id, "1.00000000", "0.00100000", agg_id * 2, agg_id * 2 + 1, time_ms, True)


def test_encoding_matches_binance_field_order() -> None:
    event = orjson.loads(encode_event(trade(5, 1000), "BTCUSDT", 1001))
    assert event == {
        "e": "aggTrade",
        "E": 1001,
        "s": "BTCUSDT",
        "a": 5,
        "p": "1.00000000",
        "q": "0.00100000",
        "f": 10,
        "l": 11,
        "T": 1000,
        "m": True,
        "M": True,
    }
    assert list(event) == ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"]
    micro = orjson.loads(encode_event(trade(5, 1000), "BTCUSDT", 1001, time_scale=1000))
    assert (micro["E"], micro["T"]) == (1_001_000, 1_000_000)
    rows = orjson.loads(encode_rest_rows([trade(5, 1000)]))
    assert list(rows[0]) == ["a", "p", "q", "f", "l", "T", "m", "M"]


def test_append_rejects_disorder() -> None:
    history = TradeHistory("BTCUSDT")
    history.append([trade(1, 10), trade(2, 10)])
    with pytest.raises(ValueError):
        history.append([trade(2, 11)])
    with pytest.raises(ValueError):
        history.append([trade(3, 9)])
    assert len(history) == 2


def test_lookups() -> None:
    history = TradeHistory("BTCUSDT")
    history.append([trade(i, 100 + i // 2) for i in range(10)])
    assert [t.agg_id for t in history.from_id(3, 4)] == [3, 4, 5, 6]
    assert [t.agg_id for t in history.from_id(3, 10, start_ms=103)] == [6, 7, 8, 9]
    assert [t.agg_id for t in history.from_id(3, 10, end_ms=102)] == [3, 4, 5]
    assert [t.agg_id for t in history.between(101, 102, 10)] == [2, 3, 4, 5]
    assert [t.agg_id for t in history.between(None, 102, 2)] == [4, 5]
    assert [t.agg_id for t in history.latest(3)] == [7, 8, 9]
    assert history.from_id(10, 5) == []


def test_trimming_keeps_positions_absolute() -> None:
    history = TradeHistory("BTCUSDT", max_trades=8)
    history.append([trade(i, i) for i in range(9)])
    assert history.end == 9 and history.start == 3 and len(history) == 6
    start, trades = history.since(1)
    assert start == 3 and [t.agg_id for t in trades] == [3, 4, 5, 6, 7, 8]
    assert history.since(9) == (9, [])


async def test_listeners_wake_on_append() -> None:
    history = TradeHistory("BTCUSDT")
    waiter = asyncio.create_task(history.wait_until(3))
    history.append([trade(1, 1), trade(2, 1)])
    await asyncio.sleep(0)
    assert not waiter.done()
    history.append([trade(3, 2)])
    await asyncio.wait_for(waiter, 1)


def test_void_every_releases_multiples_as_binance_void_rows_for_rest_and_dumps() -> None:
    history = TradeHistory("BTCUSDT", void_every=3)
    history.append([trade(i, 1000 + i) for i in range(1, 8)])
    assert [t.agg_id for t in history.trades() if t.void] == [3, 6]
    rows = orjson.loads(encode_rest_rows(history.from_id(3, 1)))
    assert rows == [{"a": 3, "p": "0.00000000", "q": "0.00000000", "f": -1, "l": -1, "T": 1003, "m": True, "M": True}]
    assert dump_csv(history.from_id(6, 1)) == b"6,0.00000000,0.00000000,-1,-1,1006000,True,True\n"
    history.void_every = 0  # the fault turned off: later trades are trades, what was released stays
    history.append([trade(9, 1009)])
    assert [t.agg_id for t in history.trades() if t.void] == [3, 6]
