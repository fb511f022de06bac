"""The simulator's faults over real sockets: duplicates, invalid and oversized frames, shutdown
announcements, silence, a lagging REST endpoint, run-time control and Binance's request limits."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from tests.exchange.test_server import FIRST_ID, http_get, receive, stream
from tradetape.services.exchange import BUNDLED_REPLAY, Exchange, ExchangeConfig, FaultConfig
from tradetape.services.exchange.faults import InvalidKind

pytestmark = pytest.mark.timeout(20)


def replay(**faults: Any) -> Exchange:
    return Exchange(ExchangeConfig(symbols=(), replay=(BUNDLED_REPLAY,), rate=0, faults=FaultConfig(**faults)))


async def test_duplicates_repeat_the_trade_just_sent() -> None:
    async with replay(duplicate_every=10) as exchange, stream(exchange, "/ws/btcusdt@aggTrade") as ws:
        events = await receive(ws, 110)
    ids = [e["a"] for e in events]
    assert ids[:11] == [*range(FIRST_ID, FIRST_ID + 10), FIRST_ID + 9]
    assert len(ids) - len(set(ids)) == 10


async def test_invalid_values_rotate_and_oversized_frames_are_padded() -> None:
    async with (
        replay(invalid_every=2, oversized_every=7, oversized_bytes=70_000) as exchange,
        stream(exchange, "/ws/btcusdt@aggTrade") as ws,
    ):
        async with asyncio.timeout(5):
            frames = [await ws.recv() for _ in range(20)]
    bad = [orjson.loads(f) for f in frames if len(f) < 1000]
    invalid = [e for e in bad if e["a"] >= 10**15 or "²" in e["q"] or e["T"] < 10**12 or e["p"].startswith("922")]
    assert len(invalid) >= 5
    kinds = [
        InvalidKind.UNICODE_DIGIT
        if "²" in e["q"]
        else InvalidKind.PRICE_OVERFLOW
        if e["p"].startswith("922")
        else InvalidKind.ID_OVERFLOW
        if e["a"] == 2**63
        else InvalidKind.SECONDS_TIME
        if e["T"] < 10**12
        else InvalidKind.ID_JUMP
        for e in invalid
    ]
    assert kinds[:5] == list(InvalidKind)
    oversized = [f for f in frames if len(f) >= 70_000]
    assert oversized and orjson.loads(oversized[0])["e"] == "aggTrade"


async def test_shutdown_is_announced_then_the_connection_closes_after_the_grace() -> None:
    async with replay(shutdown_after=100, shutdown_grace_s=0.5) as exchange:
        async with stream(exchange, "/ws/btcusdt@aggTrade") as ws:
            messages: list[dict[str, Any]] = []
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(5):
                    while True:
                        messages.append(orjson.loads(await ws.recv()))
        events = [m["e"] for m in messages]
        assert events.index("serverShutdown") == 100
        assert events.count("aggTrade") == 5000, "trading goes on until the close"
        assert ws.close_code == 1001


@pytest.mark.slow
async def test_silent_sends_nothing_and_answers_no_ping() -> None:
    async with replay(silent_after=50) as exchange, stream(exchange, "/ws/btcusdt@aggTrade") as ws:
        assert len(await receive(ws, 50)) == 50
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await ws.recv()
        pong = await ws.ping()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await pong


@pytest.mark.slow
async def test_rest_lags_the_stream() -> None:
    config = ExchangeConfig(symbols=("BTCUSDT",), rate=200, faults=FaultConfig(rest_lag_s=1.0))
    async with Exchange(config) as exchange, stream(exchange, "/ws/btcusdt@aggTrade") as ws:
        first = (await receive(ws, 1))[0]["a"]
        url = f"{exchange.rest_url}/api/v3/aggTrades?symbol=BTCUSDT&fromId={first}&limit=5"
        _, _, rows = await http_get(url)
        assert rows == []
        await asyncio.sleep(1.2)
        _, _, rows = await http_get(url)
        assert [r["a"] for r in rows] == list(range(first, first + 5))


async def test_control_request_changes_faults_at_run_time() -> None:
    async with replay() as exchange:
        status, _, body = await http_get(f"{exchange.rest_url}/control/faults?drop_every=3&rest_error=503")
        assert status == 200 and body["drop_every"] == 3 and body["rest_error"] == "503"
        assert exchange.faults == FaultConfig(drop_every=3, rest_error="503")
        status, _, _ = await http_get(f"{exchange.rest_url}/api/v3/aggTrades?symbol=BTCUSDT&fromId=1")
        assert status == 503
        status, _, body = await http_get(f"{exchange.rest_url}/control/faults?nonsense=1")
        assert status == 400 and "unknown fault" in body["msg"]
        async with stream(exchange, "/ws/btcusdt@aggTrade") as ws:
            ids = [e["a"] for e in await receive(ws, 20)]
        assert FIRST_ID + 2 not in ids and FIRST_ID + 3 in ids


async def test_more_than_five_requests_a_second_disconnect() -> None:
    async with replay() as exchange, stream(exchange, "/ws") as ws:
        for request_id in range(7):
            await ws.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": request_id}).decode())
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()
        assert ws.close_code == 1008


async def test_stream_cap_per_connection() -> None:
    config = ExchangeConfig(symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"), rate=0, max_streams=2)
    async with Exchange(config) as exchange:
        three = "btcusdt@aggTrade/ethusdt@aggTrade/solusdt@aggTrade"
        status, _, _ = await http_get(f"{exchange.rest_url}/stream?streams={three}")
        assert status == 400
        async with stream(exchange, "/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade") as ws:
            await ws.send('{"method":"SUBSCRIBE","params":["solusdt@aggTrade"],"id":1}')
            reply = (await receive(ws, 1))[0]
        assert reply["id"] == 1 and "at most 2 streams" in reply["error"]["msg"]
