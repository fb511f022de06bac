"""The exchange over real loopback sockets: streams, REST, faults, lifecycle."""

from __future__ import annotations

import asyncio
import itertools
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tradetape.services.exchange import BUNDLED_REPLAY, Exchange, ExchangeConfig, FaultConfig
from tradetape.services.exchange.history import now_ms
from tradetape.services.exchange.replay import read_dump

pytestmark = pytest.mark.timeout(15)

FIRST_ID = 3800397495
BUNDLED = read_dump(BUNDLED_REPLAY)
EVENT_KEYS = ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"]
ROW_KEYS = ["a", "p", "q", "f", "l", "T", "m", "M"]


def stream(exchange: Exchange, path: str) -> connect:
    """A client that keeps reading while it closes (an unbounded queue): with a full queue
    websockets stops reading, never sees the server's close frame and waits close_timeout."""
    return connect(exchange.ws_url + path, max_queue=None, close_timeout=2)


def replay_exchange(**overrides: Any) -> Exchange:
    return Exchange(ExchangeConfig(symbols=(), replay=(BUNDLED_REPLAY,), rate=0), **overrides)


async def http_get(url: str) -> tuple[int, dict[str, str], Any]:
    def fetch() -> tuple[int, dict[str, str], bytes]:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    status, headers, body = await asyncio.to_thread(fetch)
    return status, headers, orjson.loads(body)


async def rest_error(exchange: Exchange, path: str) -> tuple[int, int]:
    status, _, body = await http_get(exchange.rest_url + path)
    return status, body["code"]


async def receive(ws: ClientConnection, count: int, timeout: float = 5) -> list[Any]:
    async with asyncio.timeout(timeout):
        return [orjson.loads(await ws.recv()) for _ in range(count)]


async def assert_silent(ws: ClientConnection, seconds: float = 0.2) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(seconds):
            await ws.recv()


def row_of(event: dict[str, Any]) -> dict[str, Any]:
    return {key: event[key] for key in ROW_KEYS}


async def test_urls_and_idempotent_stop() -> None:
    exchange = replay_exchange()
    with pytest.raises(RuntimeError):
        _ = exchange.port
    async with exchange:
        assert exchange.port > 0
        assert exchange.ws_url == f"ws://127.0.0.1:{exchange.port}"
        assert exchange.rest_url == f"http://127.0.0.1:{exchange.port}"
        await exchange.stop()
        await exchange.stop()
    assert not exchange.running


async def test_replay_starts_on_first_subscribe_and_arrives_whole() -> None:
    async with replay_exchange() as exchange:
        await asyncio.sleep(0.1)
        assert len(exchange.history("BTCUSDT")) == 0
        _, _, rows = await http_get(exchange.rest_url + "/api/v3/aggTrades?symbol=BTCUSDT")
        assert rows == []
        started = now_ms()
        async with stream(exchange, "/ws/btcusdt@aggTrade") as ws:
            events = await receive(ws, 5000)
            assert await asyncio.wait_for(exchange.wait_replay("BTCUSDT"), 5) == 5000
            await assert_silent(ws)
    assert [e["a"] for e in events] == list(range(FIRST_ID, FIRST_ID + 5000))
    assert [(e["p"], e["q"], e["f"], e["l"], e["m"]) for e in events] == [
        (r.trade.price, r.trade.qty, r.trade.first_id, r.trade.last_id, r.trade.buyer_maker) for r in BUNDLED
    ]
    assert started <= events[-1]["T"] <= now_ms()
    spacing = [b["T"] - a["T"] for a, b in itertools.pairwise(events)]
    assert spacing == [b.trade.time_ms - a.trade.time_ms for a, b in itertools.pairwise(BUNDLED)]


async def test_raw_stream_framing() -> None:
    async with (
        Exchange(symbols=("ETHUSDT",), rate=500) as exchange,
        stream(exchange, "/ws/ethusdt@aggTrade") as ws,
    ):
        events = await receive(ws, 20)
    for event in events:
        assert list(event) == EVENT_KEYS
        assert event["e"] == "aggTrade" and event["s"] == "ETHUSDT" and event["M"] is True
        assert isinstance(event["p"], str) and isinstance(event["q"], str)
        assert isinstance(event["m"], bool)
        assert event["E"] >= event["T"]
    assert [e["a"] for e in events] == list(range(events[0]["a"], events[0]["a"] + 20))


async def test_combined_stream_framing() -> None:
    config = ExchangeConfig(symbols=("ETHUSDT",), replay=(BUNDLED_REPLAY,), rate=1000)
    url = "/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"
    async with Exchange(config) as exchange, stream(exchange, url) as ws:
        frames = await receive(ws, 5100)
    by_stream: dict[str, list[dict[str, Any]]] = {}
    for frame in frames:
        assert list(frame) == ["stream", "data"]
        assert list(frame["data"]) == EVENT_KEYS
        by_stream.setdefault(frame["stream"], []).append(frame["data"])
    assert set(by_stream) == {"btcusdt@aggTrade", "ethusdt@aggTrade"}
    assert {e["s"] for e in by_stream["btcusdt@aggTrade"]} == {"BTCUSDT"}
    assert {e["s"] for e in by_stream["ethusdt@aggTrade"]} == {"ETHUSDT"}
    for events in by_stream.values():
        ids = [e["a"] for e in events]
        assert ids == list(range(ids[0], ids[0] + len(ids)))


async def test_connections_get_live_trades_only() -> None:
    async with Exchange(symbols=("BTCUSDT",), rate=2000) as exchange:
        history = exchange.history("BTCUSDT")
        await asyncio.wait_for(history.wait_until(200), 5)
        last = history.last
        assert last is not None
        async with stream(exchange, "/ws/btcusdt@aggTrade") as ws:
            first = (await receive(ws, 1))[0]
        assert first["a"] > last.agg_id
    async with replay_exchange() as exchange, stream(exchange, "/ws/btcusdt@aggTrade") as early:
        await receive(early, 5000)
        await asyncio.wait_for(exchange.wait_replay("BTCUSDT"), 5)
        async with stream(exchange, "/ws/btcusdt@aggTrade") as late:
            await assert_silent(late)


async def test_microsecond_time_unit() -> None:
    async with Exchange(symbols=("BTCUSDT",), rate=500) as exchange:
        url = "/ws/btcusdt@aggTrade?timeUnit=MICROSECOND"
        async with stream(exchange, url) as ws:
            event = (await receive(ws, 1))[0]
        row = exchange.history("BTCUSDT").from_id(event["a"], 1)[0]
    assert event["T"] == row.time_ms * 1000
    assert event["E"] > 10**15


async def test_subscribe_unsubscribe_and_list() -> None:
    async with (
        Exchange(symbols=("BTCUSDT", "ETHUSDT"), rate=1000) as exchange,
        stream(exchange, "/ws") as ws,
    ):
        await assert_silent(ws, 0.1)
        await ws.send('{"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":1}')
        assert (await receive(ws, 1))[0] == {"result": None, "id": 1}
        event = (await receive(ws, 1))[0]
        assert event["e"] == "aggTrade" and event["s"] == "BTCUSDT"
        await ws.send('{"method":"SUBSCRIBE","params":["btcusdt@depth"],"id":2}')
        await ws.send('{"method":"LIST_SUBSCRIPTIONS","id":3}')
        await ws.send('{"method":"UNSUBSCRIBE","params":["btcusdt@aggTrade"],"id":4}')
        replies: dict[int, Any] = {}
        async with asyncio.timeout(5):
            while len(replies) < 3:
                message = orjson.loads(await ws.recv())
                if "id" in message:
                    replies[message["id"]] = message
        assert replies[2]["error"]["code"] == 2
        assert replies[3] == {"result": ["btcusdt@aggTrade"], "id": 3}
        assert replies[4] == {"result": None, "id": 4}
        # Unsubscribed at 1000 trades/s: the stream must fall silent within a second.
        async with asyncio.timeout(1):
            while True:
                try:
                    async with asyncio.timeout(0.15):
                        await ws.recv()
                except TimeoutError:
                    break


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/ws/dogeusdt@aggTrade", -1121),
        ("/ws/btcusdt@trade", -1100),
        ("/stream?streams=btcusdt@aggTrade/BTCUSDT@aggTrade", -1100),
        ("/ws/btcusdt@aggTrade?timeUnit=SECOND", -1100),
    ],
)
async def test_bad_stream_urls_are_refused(path: str, code: int) -> None:
    async with replay_exchange() as exchange:
        with pytest.raises(InvalidStatus) as refused:
            async with stream(exchange, path):
                pass
        response = refused.value.response
        assert response.status_code == 400
        assert orjson.loads(response.body)["code"] == code
        assert not exchange.history("BTCUSDT").trades()


async def test_rest_pages_equal_the_stream() -> None:
    async with replay_exchange() as exchange:
        async with stream(exchange, "/ws/btcusdt@aggTrade") as ws:
            events = await receive(ws, 5000)
        rows: list[dict[str, Any]] = []
        next_id = FIRST_ID
        while True:
            status, headers, page = await http_get(
                f"{exchange.rest_url}/api/v3/aggTrades?symbol=BTCUSDT&fromId={next_id}&limit=1000"
            )
            assert status == 200 and headers["Content-Type"].startswith("application/json")
            if not page:
                break
            assert len(page) <= 1000
            rows.extend(page)
            next_id = page[-1]["a"] + 1
    assert all(list(row) == ROW_KEYS for row in rows)
    assert rows == [row_of(e) for e in events]


async def test_rest_id_time_and_limit_semantics() -> None:
    async with replay_exchange(original_times=True) as exchange:
        async with stream(exchange, "/ws/btcusdt@aggTrade") as ws:
            await receive(ws, 5000)
        base = f"{exchange.rest_url}/api/v3/aggTrades?symbol=BTCUSDT"
        trades = [r.trade for r in BUNDLED]

        _, _, latest = await http_get(base)
        assert [r["a"] for r in latest] == [t.agg_id for t in trades[-500:]]
        _, _, latest = await http_get(base + "&limit=3")
        assert [r["a"] for r in latest] == [t.agg_id for t in trades[-3:]]

        _, _, page = await http_get(base + f"&fromId={FIRST_ID + 10}&limit=5")
        assert [r["a"] for r in page] == list(range(FIRST_ID + 10, FIRST_ID + 15))
        _, _, page = await http_get(base + f"&fromId={FIRST_ID + 4998}")
        assert [r["a"] for r in page] == [FIRST_ID + 4998, FIRST_ID + 4999]
        _, _, page = await http_get(base + f"&fromId={FIRST_ID + 5000}")
        assert page == []
        _, _, page = await http_get(base + "&fromId=0&limit=1000")
        assert len(page) == 1000 and page[0]["a"] == FIRST_ID

        moment = trades[100].time_ms
        same_ms = [t.agg_id for t in trades if t.time_ms == moment]
        _, _, page = await http_get(base + f"&startTime={moment}&endTime={moment}")
        assert [r["a"] for r in page] == same_ms
        start, end = trades[200].time_ms, trades[400].time_ms
        expected = [t.agg_id for t in trades if start <= t.time_ms <= end]
        _, _, page = await http_get(base + f"&startTime={start}&endTime={end}&limit=1000")
        assert [r["a"] for r in page] == expected
        _, _, page = await http_get(base + f"&startTime={start}&limit=7")
        assert [r["a"] for r in page] == expected[:7]
        _, _, page = await http_get(base + f"&endTime={end}&limit=7")
        assert [r["a"] for r in page] == [t.agg_id for t in trades if t.time_ms <= end][-7:]
        _, _, page = await http_get(base + f"&fromId={FIRST_ID + 300}&startTime={start}&limit=3")
        assert [r["a"] for r in page] == [FIRST_ID + 300, FIRST_ID + 301, FIRST_ID + 302]
        _, _, page = await http_get(base + f"&fromId={FIRST_ID}&startTime={start}&limit=3")
        assert [r["a"] for r in page] == expected[:3]
        _, _, page = await http_get(base + f"&fromId={FIRST_ID}&endTime={trades[2].time_ms}")
        assert [r["a"] for r in page] == [t.agg_id for t in trades if t.time_ms <= trades[2].time_ms]


async def test_rest_errors() -> None:
    async with replay_exchange() as exchange:
        api = "/api/v3/aggTrades"
        assert await rest_error(exchange, api) == (400, -1102)
        assert await rest_error(exchange, api + "?symbol=btcusdt") == (400, -1100)
        assert await rest_error(exchange, api + "?symbol=DOGEUSDT") == (400, -1121)
        assert await rest_error(exchange, api + "?symbol=BTCUSDT&fromId=abc") == (400, -1100)
        assert await rest_error(exchange, api + "?symbol=BTCUSDT&fromId=-1") == (400, -1100)
        assert await rest_error(exchange, api + "?symbol=BTCUSDT&limit=1001") == (400, -1100)
        assert await rest_error(exchange, api + "?symbol=BTCUSDT&limit=0") == (400, -1100)
        assert await rest_error(exchange, api + "?symbol=BTCUSDT&fromId=") == (400, -1105)
        assert await rest_error(exchange, api + "?symbol=BTCUSDT&symbol=BTCUSDT") == (400, -1101)
        assert await rest_error(exchange, api + "?symbol=BTCUSDT&fromid=1") == (400, -1104)
        assert await rest_error(exchange, api + "?symbol=BTCUSDT&startTime=5&endTime=4") == (
            400,
            -1128,
        )
        status, headers, _ = await http_get(exchange.rest_url + "/api/v3/nothing")
        assert status == 404 and headers["Content-Type"].startswith("application/json")
        status, _, rows = await http_get(exchange.rest_url + api + "?symbol=BTCUSDT&limit=1000")
        assert (status, rows) == (200, [])


async def test_exchange_info() -> None:
    config = ExchangeConfig(
        symbols=("ETHUSDT", "SOLBTC"),
        replay=(BUNDLED_REPLAY,),
        rate=0,
        tick_sizes={"SOLBTC": "0.0000001"},
    )
    async with Exchange(config) as exchange:
        status, headers, info = await http_get(exchange.rest_url + "/api/v3/exchangeInfo")
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        assert info["timezone"] == "UTC" and abs(info["serverTime"] - now_ms()) < 5000
        symbols = {s["symbol"]: s for s in info["symbols"]}
        assert list(symbols) == ["BTCUSDT", "ETHUSDT", "SOLBTC"]
        btc = symbols["BTCUSDT"]
        assert (btc["status"], btc["baseAsset"], btc["quoteAsset"]) == ("TRADING", "BTC", "USDT")
        filters = {f["filterType"]: f for f in btc["filters"]}
        assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
        assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
        sol = symbols["SOLBTC"]
        assert (sol["baseAsset"], sol["quoteAsset"]) == ("SOL", "BTC")
        assert sol["filters"][0]["tickSize"] == "0.00000010"
        _, _, one = await http_get(exchange.rest_url + "/api/v3/exchangeInfo?symbol=ETHUSDT")
        assert [s["symbol"] for s in one["symbols"]] == ["ETHUSDT"]
        query = '?symbols=["ETHUSDT","BTCUSDT"]'.replace('"', "%22")
        _, _, two = await http_get(exchange.rest_url + "/api/v3/exchangeInfo" + query)
        assert [s["symbol"] for s in two["symbols"]] == ["ETHUSDT", "BTCUSDT"]
        assert await rest_error(exchange, "/api/v3/exchangeInfo?symbol=XYZUSDT") == (400, -1121)


async def test_drop_every_leaves_gaps_rest_fills() -> None:
    async with replay_exchange(faults=FaultConfig(drop_every=10)) as exchange:
        async with stream(exchange, "/ws/btcusdt@aggTrade") as ws:
            events = await receive(ws, 4500)
            await asyncio.wait_for(exchange.wait_replay("BTCUSDT"), 5)
            await assert_silent(ws)
        ids = [e["a"] for e in events]
        expected = [FIRST_ID + i for i in range(5000) if (i + 1) % 10]
        assert ids == expected
        missing = FIRST_ID + 9
        url = f"{exchange.rest_url}/api/v3/aggTrades?symbol=BTCUSDT&fromId={missing}&limit=1"
        _, _, rows = await http_get(url)
        assert [r["a"] for r in rows] == [missing]


async def test_drop_after_loses_a_bursts_last_trades_rest_has_them() -> None:
    async with replay_exchange(faults=FaultConfig(drop_after=4990)) as exchange:
        async with stream(exchange, "/ws/btcusdt@aggTrade") as ws:
            events = await receive(ws, 4990)
            await asyncio.wait_for(exchange.wait_replay("BTCUSDT"), 5)
            await assert_silent(ws)
        assert [e["a"] for e in events] == list(range(FIRST_ID, FIRST_ID + 4990))
        url = f"{exchange.rest_url}/api/v3/aggTrades?symbol=BTCUSDT&fromId={FIRST_ID + 4990}&limit=1000"
        _, _, rows = await http_get(url)
        assert [r["a"] for r in rows] == list(range(FIRST_ID + 4990, FIRST_ID + 5000))
        assert exchange.rest_log.counts["/api/v3/aggTrades"] == 1
        assert [path for _, path in exchange.rest_log.recent] == [url.removeprefix(exchange.rest_url)]


async def test_malformed_every_rotates_kinds() -> None:
    async with replay_exchange(faults=FaultConfig(malformed_every=100)) as exchange:
        url = "/stream?streams=btcusdt@aggTrade"
        async with stream(exchange, url) as ws:
            async with asyncio.timeout(5):
                frames = [await ws.recv() for _ in range(5050)]
            await assert_silent(ws)
    kinds: list[str] = []
    good: list[int] = []
    for frame in frames:
        try:
            data = orjson.loads(frame)["data"]
        except orjson.JSONDecodeError:
            kinds.append("invalid_json")
            continue
        if "p" not in data:
            kinds.append("missing_price")
        elif not data["p"].replace(".", "").isdigit():
            kinds.append("non_numeric_price")
        else:
            good.append(data["a"])
            continue
        assert data["a"] == good[-1]
    assert good == list(range(FIRST_ID, FIRST_ID + 5000))
    assert len(kinds) == 50
    assert kinds[:3] == ["invalid_json", "missing_price", "non_numeric_price"]
    assert {kinds.count(k) for k in set(kinds)} == {16, 17}


async def test_disconnect_after() -> None:
    async with replay_exchange(faults=FaultConfig(disconnect_after=1000)) as exchange:
        async with stream(exchange, "/ws/btcusdt@aggTrade") as ws:
            events = await receive(ws, 1000)
            with pytest.raises(ConnectionClosed):
                await receive(ws, 1)
        assert [e["a"] for e in events] == list(range(FIRST_ID, FIRST_ID + 1000))
        assert ws.close_code == 1000


async def test_stop_announces_server_shutdown() -> None:
    async with (
        Exchange(symbols=("BTCUSDT",), rate=200) as exchange,
        stream(exchange, "/ws/btcusdt@aggTrade") as ws,
    ):
        await receive(ws, 1)
        await exchange.stop()
        messages: list[dict[str, Any]] = []
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    messages.append(orjson.loads(await ws.recv()))
    assert messages and messages[-1]["e"] == "serverShutdown"
    assert abs(messages[-1]["E"] - now_ms()) < 5000
    assert ws.close_code == 1001


async def test_serve_forever_stops_on_cancel() -> None:
    exchange = replay_exchange()
    task = asyncio.create_task(exchange.serve_forever())
    try:
        async with asyncio.timeout(5):
            while not exchange.running:
                await asyncio.sleep(0.01)
        status, _, _ = await http_get(exchange.rest_url + "/api/v3/ping")
        assert status == 200
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not exchange.running
