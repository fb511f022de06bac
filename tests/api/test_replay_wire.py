"""The replay protocol's pure parts: the chunk codec against hostile bytes, the merge against a plain sort,
the schedule, the request and flow models, and the Binance frames `--to-subject` publishes."""

from __future__ import annotations

import random

import msgpack
import numpy as np
import polars as pl
import pytest

from tradetape.api.errors import QueryError
from tradetape.api.replay import FlowMessage, ReplayRequest
from tradetape.api.replay.chunks import (
    ReplayChunk,
    ReplayEnd,
    ReplayMessageError,
    ReplayStart,
    decode_message,
    encode_chunk,
    encode_end,
    encode_start,
    replay_order,
    trade_frame,
)
from tradetape.api.replay.merging import ReplayMerge
from tradetape.api.replay.pacing import Schedule
from tradetape.binance.events import combined_events
from tradetape.binance.frames import AggTradeFrame, parse_frame
from tradetape.domain.columns import TradeColumns

NOW_MS = 1_780_000_000_000


def columns(count: int, seed: int, first_id: int = 1) -> TradeColumns:
    rng = np.random.default_rng(seed)
    ids = np.arange(first_id, first_id + count, dtype=np.int64)
    times = np.sort(rng.integers(NOW_MS, NOW_MS + 2_000, count)).astype(np.int64)
    price = rng.integers(1, 10**13, count).astype(np.int64)
    qty = rng.integers(1, 10**10, count).astype(np.int64)
    return TradeColumns(ids, price, qty, 2 * ids, 2 * ids + 1, times, rng.random(count) < 0.5)


def test_messages_round_trip() -> None:
    trades = columns(500, 1)
    chunk = decode_message(encode_chunk(7, trades), 500)
    assert isinstance(chunk, ReplayChunk) and chunk.seq == 7
    assert all(np.array_equal(a, b) for a, b in zip(chunk.trades.arrays(), trades.arrays(), strict=True))
    assert all(column.flags.writeable for column in chunk.trades.arrays())
    start = ReplayStart("tape.replay.flow.abc", 100, 4, 30_000)
    assert decode_message(encode_start(start), 100) == start
    assert decode_message(encode_end(ReplayEnd(3, 1200)), 100) == ReplayEnd(3, 1200)


def test_hostile_messages_are_refused_before_allocating() -> None:
    trades = columns(10, 2)
    good = encode_chunk(0, trades)
    raw = [c.tobytes() for c in trades.arrays()]
    flags = bytearray(raw[-1])
    flags[3] = 2
    hostile = [
        b"",
        b"\xc1",
        msgpack.packb({"a": 1}),
        msgpack.packb([9, 1, 2]),
        msgpack.packb([1, 0, 11, *raw]),  # claims more trades than its columns hold
        msgpack.packb([1, 0, 10, *raw[:-1], bytes(flags)]),  # a bool that is neither 0 nor 1
        msgpack.packb([1, 0, 10, *raw[:5], raw[5][::-1], raw[6]]),  # times out of order
        msgpack.packb([1, -1, 10, *raw]),
        msgpack.packb([0, "x" * 300, 1, 1, 1]),
        msgpack.packb([1, 0, 10, *raw[:-1]]),
        good + b"\x00",
    ]
    for data in hostile:
        with pytest.raises(ReplayMessageError):
            decode_message(data, 10)
    with pytest.raises(ReplayMessageError):
        decode_message(good, 9)  # a chunk larger than the stream's chunk size


def test_replay_order_puts_a_later_id_with_an_earlier_time_first() -> None:
    trades = TradeColumns.of_arrays(
        [np.array(v, dtype=np.int64) for v in ([1, 2, 3], [5, 5, 5], [1, 1, 1], [1, 2, 3], [1, 2, 3], [10, 9, 10])]
        + [np.array([True, False, True])]
    )
    assert replay_order(trades).agg_id.tolist() == [2, 1, 3]


@pytest.mark.parametrize("seed", range(20))
def test_the_merge_equals_a_sort_by_time_symbol_agg_id_however_chunks_arrive(seed: int) -> None:
    rng = random.Random(seed)
    symbols = ["ETHUSDT", "BTCUSDT", "um:BTCUSDT"][: rng.randint(2, 3)]
    streams = {s: columns(rng.randint(0, 400), seed * 10 + i, 1000 * i) for i, s in enumerate(symbols)}
    expected = pl.concat([trade_frame(t, [s]) for s, t in streams.items()]).sort("time", "symbol", "agg_id")
    merge = ReplayMerge(symbols)
    cursor = dict.fromkeys(symbols, 0)
    out = []
    while not merge.done:
        for name in merge.wanted():
            trades = streams[name]
            if cursor[name] >= len(trades):
                merge.finish(name)
                continue
            step = rng.randint(1, 60)
            merge.add(name, trades.take(slice(cursor[name], cursor[name] + step)))
            cursor[name] += step
        merged = merge.take()
        if merged is not None:
            out.append(trade_frame(merged.trades, symbols, merged.which))
    got = pl.concat(out) if out else expected.clear()
    assert got.equals(expected)


def test_the_schedule_maps_trade_time_to_the_clock() -> None:
    schedule = Schedule(speed=4, origin_s=100.0, origin_ms=NOW_MS)
    assert schedule.due(NOW_MS + 4_000) == pytest.approx(101.0)
    times = np.array([NOW_MS, NOW_MS + 2_000, NOW_MS + 4_000, NOW_MS + 4_001], dtype=np.int64)
    assert schedule.due_count(times, 101.0) == 3
    with pytest.raises(ValueError):
        Schedule(speed=0, origin_s=0, origin_ms=0)


def test_requests_and_flow_messages_are_checked() -> None:
    request = ReplayRequest.parse(b'{"start": "2026-01-01T00:00Z", "end": 1767229200000}')
    assert (request.start_ms, request.end_ms) == (1767225600000, 1767229200000)
    assert (request.chunk, request.window) == (10_000, 8)
    for body in (b'{"start": 1767225600000}', b'{"start": 1767229200000, "end": 1767225600000}', b"[]",
                 b'{"start": 1767225600000, "end": 1767229200000, "after_id": -1}'):
        with pytest.raises(QueryError) as refused:
            ReplayRequest.parse(body)
        assert refused.value.code == "invalid_request"
    assert FlowMessage.parse(b'{"ack": 3}') == FlowMessage(ack=3)
    assert FlowMessage.parse(b'{"cancel": true}') == FlowMessage(cancel=True)
    for body in (b'{"ack": -1}', b'{"ack": "3"}', b'{"ack": 1, "x": 2}', b"{" + b" " * 200 + b"}", b"nope"):
        assert FlowMessage.parse(body) is None


def test_combined_events_parse_as_binance_frames_with_the_exact_values() -> None:
    trades = columns(300, 3)
    frame = trade_frame(trades, ["BTCUSDT"])
    events = combined_events(frame).to_list()
    parsed = [parse_frame(event, frozenset({"BTCUSDT"})) for event in events]
    assert all(isinstance(p, AggTradeFrame) for p in parsed)
    rows = [p.row for p in parsed if isinstance(p, AggTradeFrame)]
    assert [(r.agg_id, r.price, r.qty, r.first_id, r.last_id, r.time, r.buyer_maker) for r in rows] == list(
        zip(*(column.tolist() for column in trades.arrays()), strict=True)
    )
    futures = combined_events(trade_frame(trades.take(slice(0, 1)), ["um:BTCUSDT"])).item()
    assert futures.startswith('{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade"') and '"s":"BTCUSDT"' in futures
