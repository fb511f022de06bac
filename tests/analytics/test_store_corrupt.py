"""A stored value with flipped bytes is `store_corrupt` (a 5xx) for every method that reads it, never an answer.

Trades go in through the real writer into a real RocksDB; the test then flips bytes at the
start, in the middle and at the end of segments, summaries, histograms, void records,
young windows and indexes with rocksdict directly, and asks a real analytics service over
NATS. Each corrupted value sits in its own hour (or window, or symbol), so the worker is
also seen answering every other range and symbol exactly as the handlers compute them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import nats
import numpy as np
import pytest
from rocksdict import Rdict

from tests.analytics.test_methods_over_nats import REQUESTS
from tests.harness import request, run_services, wait_for
from tradetape.api.errors import QueryError
from tradetape.api.registry import methods
from tradetape.domain.columns import TradeColumns
from tradetape.domain.trade import VOID_TRADE_ID
from tradetape.services.analytics.service import AnalyticsService
from tradetape.settings import Settings
from tradetape.store.keys import (
    HISTOGRAM,
    SEGMENT,
    SUMMARY,
    VOID,
    index_key,
    timed_key,
    window_key,
    window_summary_key,
)
from tradetape.store.rocks import store_options
from tradetape.store.writer import ShardWriter
from tradetape.testing import HeldTrades

HISTOGRAM_PROFILE: dict[str, Any] = {"rows": 50, "min_trades": 100}
"""A volume profile with a row count, not a size: over more than 2 h it reads whole segments' histograms."""

pytestmark = pytest.mark.timeout(180)

HOUR = 3_600_000
VICTIM = "BTCUSDT"
CONTROL = "ETHUSDT"
INDEXED = ("SOLUSDT", "XRPUSDT", "BNBUSDT")
"""One symbol per place an index value is flipped (coverage is the one method that reads the index)."""
WHERE = ("start", "middle", "end")
PER_HOUR = 1_200
EVERY = frozenset(methods())


def flipped(value: bytes, where: str, count: int = 8) -> bytes:
    """`value` with `count` bytes inverted at its start, in its middle or at its end."""
    at = {"start": 0, "middle": max(0, len(value) // 2 - count // 2), "end": max(0, len(value) - count)}[where]
    damaged = bytearray(value)
    for i in range(at, min(at + count, len(value))):
        damaged[i] ^= 0xFF
    return bytes(damaged)


def hours_of_trades(first_hour: int, hours: int, first_id: int, seed: int) -> TradeColumns:
    rng = np.random.default_rng(seed)
    n = PER_HOUR * hours
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    times = np.sort(rng.integers(first_hour, first_hour + hours * HOUR, n)).astype(np.int64)
    price = (87_000 * 10**8 + np.cumsum(rng.integers(-3, 4, n)) * 10**6).astype(np.int64)
    qty = (rng.integers(1, 5_000, n) * 1_000).astype(np.int64)
    return TradeColumns(ids, price, qty, 3 * ids, 3 * ids + 1, times, rng.random(n) < 0.45)


def young_trades(now_ms: int, first_id: int, seed: int) -> TradeColumns:
    """Twenty per second over six seconds, in windows not yet rolled up (three to flip, three whose summaries to)."""
    rng = np.random.default_rng(seed)
    start = now_ms - now_ms % 1000 - 40_000
    times = np.repeat(start + 1000 * np.arange(6, dtype=np.int64), 20) + np.tile(np.arange(20) * 40, 6)
    ids = np.arange(first_id, first_id + len(times), dtype=np.int64)
    price = (87_000 * 10**8 + rng.integers(-20, 21, len(times)) * 10**6).astype(np.int64)
    qty = (rng.integers(1, 5_000, len(times)) * 1_000).astype(np.int64)
    return TradeColumns(ids, price, qty, 3 * ids, 3 * ids + 1, times.astype(np.int64), rng.random(len(times)) < 0.5)


def with_voids(trades: TradeColumns, hours: list[int]) -> TradeColumns:
    """Three trades of each of these hours turned into Binance's void rows (ids kept, no trade)."""
    void = np.zeros(len(trades), dtype=np.bool_)
    for hour in hours:
        void[np.flatnonzero((trades.time >= hour) & (trades.time < hour + HOUR))[100:103]] = True
    zero = np.where(void, 0, 1).astype(np.int64)
    return TradeColumns(
        trades.agg_id,
        trades.price * zero,
        trades.qty * zero,
        np.where(void, VOID_TRADE_ID, trades.first_id),
        np.where(void, VOID_TRADE_ID, trades.last_id),
        trades.time,
        trades.buyer_maker,
    )


@pytest.mark.slow
async def test_flipped_bytes_in_any_stored_value_answer_store_corrupt_and_nothing_else_suffers(
    nats_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now_ms = int(time.time() * 1000)
    base = now_ms - now_ms % HOUR - 16 * HOUR
    hour = [base + h * HOUR for h in range(14)]
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=(VICTIM, CONTROL, *INDEXED))

    # the victim: segments in hours 0-12 (voids in 9-11), young windows; the others alike, untouched
    victim_old = with_voids(hours_of_trades(base, 13, 10_000, seed=1), hour[9:12])
    victim_young = young_trades(now_ms, 10_000 + len(victim_old), seed=2)
    control_old = hours_of_trades(base, 13, 50_000, seed=3)
    control_young = young_trades(now_ms, 50_000 + len(control_old), seed=4)
    indexed = {symbol: hours_of_trades(hour[12], 1, 90_000, seed=5 + i) for i, symbol in enumerate(INDEXED)}
    store = ShardWriter(settings.shard_dir)
    try:
        for symbol in (VICTIM, CONTROL, *INDEXED):
            store.roll_up(symbol, now_ms - 60_000)
        tapes = {VICTIM: (victim_old, victim_young), CONTROL: (control_old, control_young)}
        for symbol, (old, young) in tapes.items():
            assert store.write({(symbol, 0): old}) == len(old)
            assert store.write({(symbol, 1): young}) == len(young)
        for symbol, trades in indexed.items():
            assert store.write({(symbol, 0): trades}) == len(trades)
    finally:
        store.close()

    young_windows = sorted({int(t) - int(t) % 1000 for t in victim_young.time})
    corrupted: dict[str, tuple[bytes, tuple[int, int] | None, frozenset[str]]] = {}
    """What was flipped: the key, a range that reads it, and the methods that read it there."""
    others: dict[str, tuple[int, int]] = {}
    """Where the other methods are asked about instead, for a case whose range reaches other corrupt values."""
    coverage = frozenset({"coverage"})
    for i, where in enumerate(WHERE):
        inner = (hour[i] + 5 * 60_000, hour[i] + 55 * 60_000)
        corrupted[f"segment {where}"] = (timed_key(SEGMENT, VICTIM, hour[i]), inner, EVERY)
        inner = (hour[3 + i] + 5 * 60_000, hour[3 + i] + 55 * 60_000)
        corrupted[f"summary {where}"] = (timed_key(SUMMARY, VICTIM, hour[3 + i]), inner, EVERY)
        # Histograms stand for whole segments of a profile over more than 2 h without a row size (shorter ones and
        # those with a row size read minute levels): the hour whole, its neighbours ragged (hour 5's summary is
        # corrupt, so the first case starts at its hour and takes the next whole too: the first corrupt one is named).
        # The other methods are asked about the hour alone (the longer range reaches other corrupt values).
        over = (hour[6], hour[8] + 10 * 60_000) if i == 0 else (hour[6 + i] - 50 * 60_000, hour[7 + i] + 50 * 60_000)
        profile = frozenset({"volume_profile"})
        corrupted[f"histogram {where}"] = (timed_key(HISTOGRAM, VICTIM, hour[6 + i]), over, profile)
        others[f"histogram {where}"] = (hour[6 + i], hour[6 + i] + HOUR)
        inner = (hour[9 + i] + 5 * 60_000, hour[9 + i] + 55 * 60_000)
        corrupted[f"voids {where}"] = (timed_key(VOID, VICTIM, hour[9 + i]), inner, coverage)
        # a range that cuts the window's trades (coverage takes a window the range holds whole from its summary)
        ragged = (young_windows[i], int(victim_young.time[victim_young.time < young_windows[i] + 1000].max()))
        corrupted[f"window {where}"] = (window_key(VICTIM, young_windows[i]), ragged, EVERY)
        second = (young_windows[3 + i], young_windows[3 + i] + 1000)
        corrupted[f"window-summary {where}"] = (window_summary_key(VICTIM, young_windows[3 + i]), second, coverage)
        corrupted[f"index {where}"] = (index_key(INDEXED[i]), (hour[12], hour[12] + HOUR), coverage)

    db = Rdict(str(settings.shard_dir), store_options())
    try:
        for name, (key, _, _) in corrupted.items():
            value = db.get(key)
            assert value is not None, name
            db.put(key, flipped(value, name.split()[1]))
    finally:
        db.close()

    sources = {
        VICTIM: HeldTrades(TradeColumns.concat([victim_old, victim_young])),
        CONTROL: HeldTrades(TradeColumns.concat([control_old, control_young])),
        **{symbol: HeldTrades(trades) for symbol, trades in indexed.items()},
    }

    def expected(symbol: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        spec = methods()[name]
        reply = spec.handler(sources[symbol], symbol, spec.parse_request(body), now_ms).model_dump(mode="json")
        return _comparable(name, reply)

    def body_of(name: str, time_range: tuple[int, int] | None, case: str = "") -> dict[str, Any]:
        asked = HISTOGRAM_PROFILE if case.startswith("histogram") and name == "volume_profile" else REQUESTS[name]
        extra = {**asked, **({"min_trades": 1} if "min_trades" in asked else {})}
        return extra if time_range is None else {"start": time_range[0], "end": time_range[1], **extra}

    async def answers_as_computed(client: Any, symbol: str, time_range: tuple[int, int] | None) -> None:
        for name in methods():
            body = body_of(name, time_range)
            reply, headers = await request(client, f"tape.query.{name}.{symbol}", body)
            assert "Nats-Service-Error-Code" not in headers, (symbol, name, time_range, reply)
            assert _comparable(name, reply) == expected(symbol, name, body), (symbol, name, time_range)

    caplog.set_level(logging.WARNING, logger="tradetape.services.analytics.service")
    async with run_services(settings, "analytics") as running:
        client = await nats.connect(nats_url)
        try:
            await wait_for(lambda: request(client, f"tape.query.coverage.{CONTROL}", {}), timeout=20, running=running)
            everything = (base, now_ms)
            await answers_as_computed(client, CONTROL, everything)
            for _ in range(2):  # the second time: the same answer, and no second log line
                for case, (key, time_range, readers) in corrupted.items():
                    symbol = key.split(b":")[1].decode()
                    for name in methods():
                        body = body_of(name, time_range if name in readers else others.get(case, time_range), case)
                        reply, headers = await request(client, f"tape.query.{name}.{symbol}", body)
                        if name in readers:
                            assert reply.get("error", {}).get("code") == "store_corrupt", (case, name, reply)
                            assert headers["Nats-Service-Error-Code"].startswith("5"), (case, name, headers)
                            assert reply["error"]["details"]["key"] == key.decode(), (case, name, reply)
                        else:
                            assert "Nats-Service-Error-Code" not in headers, (case, name, reply)
                            assert _comparable(name, reply) == expected(symbol, name, body), (case, name)
                for symbol in INDEXED:  # the whole tape's coverage reads the index too
                    reply, headers = await request(client, f"tape.query.coverage.{symbol}", {})
                    assert reply["error"]["code"] == "store_corrupt" and headers["Nats-Service-Error-Code"] == "500"
                # meanwhile: the untouched hour of the victim, the control symbol's range and whole tape
                await answers_as_computed(client, VICTIM, (hour[12], hour[12] + HOUR))
                await answers_as_computed(client, CONTROL, everything)
                whole, _ = await request(client, f"tape.query.coverage.{CONTROL}", {})
                assert _comparable("coverage", whole) == expected(CONTROL, "coverage", {})
            running.check()
        finally:
            await client.close()

    logged = [r for r in caplog.records if r.getMessage() == "stored value corrupt"]
    assert sorted(r.key for r in logged) == sorted(key.decode() for key, _, _ in corrupted.values())  # type: ignore[attr-defined]


def _comparable(name: str, reply: dict[str, Any]) -> dict[str, Any]:
    """A reply without the fields only the service knows (coverage's echo of the range asked, ingest's gaps)."""
    if name != "coverage":
        return reply
    return {k: v for k, v in reply.items() if k not in ("start", "end", "ingest_gaps")}


class _Broken:
    """A source whose read fails with a plain `ValueError`, as a bug or bad stored data would."""

    def trades(self, symbol: str, time_range: tuple[int, int] | None) -> TradeColumns:
        raise ValueError("negative quantity")


async def test_a_value_error_the_request_did_not_cause_is_internal_not_invalid_request(
    nats_url: str, tmp_path: Path
) -> None:
    """It used to be `invalid_request` (400): the asker was blamed for whatever raised a ValueError."""
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=(CONTROL,))
    nc = await nats.connect(nats_url)
    try:
        service = AnalyticsService(settings, nc)
        bars = methods()["bars"]
        with pytest.raises(QueryError) as caught:
            service.answer(bars, CONTROL, b'{"last": "1h"}', _Broken())
        assert (caught.value.code, caught.value.status) == ("internal", 500)
        with pytest.raises(QueryError) as caught:
            service.answer(bars, CONTROL, b'{"last": "1h", "interval": "7x"}', _Broken())
        assert (caught.value.code, caught.value.status) == ("invalid_request", 400)
    finally:
        await nc.close()
