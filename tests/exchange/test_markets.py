"""One simulator, three markets: spot, USD-M and COIN-M each at its own paths, in its own dialect, over real sockets."""

from __future__ import annotations

import asyncio
import io
import urllib.error
import urllib.request
import zipfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tradetape.binance.rest import RestClient
from tradetape.binance.symbols import ExchangeListings
from tradetape.domain.instruments import Market
from tradetape.services.exchange import Exchange, ExchangeConfig
from tradetape.services.exchange.markets import DUMP_HEADER
from tradetape.settings import Settings
from tradetape.testing import simulator_settings

pytestmark = pytest.mark.timeout(30)

INSTRUMENTS = ("ETHUSDT", "um:ETHUSDT", "cm:BTCUSD_PERP")


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


async def frames(url: str, count: int) -> list[dict[str, Any]]:
    async with connect(url, max_queue=None, close_timeout=2) as ws, asyncio.timeout(10):
        return [orjson.loads(await ws.recv()) for _ in range(count)]


@pytest.mark.slow
async def test_each_market_streams_in_its_own_dialect() -> None:
    async with Exchange(ExchangeConfig(symbols=INSTRUMENTS, rate=200)) as exchange:
        spot = await frames(exchange.urls(Market.SPOT)[0] + "/stream?streams=ethusdt@aggTrade", 50)
        um = await frames(exchange.urls(Market.UM)[0] + "/stream?streams=ethusdt@aggTrade", 200)
        cm = await frames(exchange.urls(Market.CM)[0] + "/ws/btcusd_perp@aggTrade", 50)
        um_ids = {f["data"]["a"] for f in um}
        assert um_ids <= {t.agg_id for t in exchange.history("um:ETHUSDT").trades()}
    assert all(f["stream"] == "ethusdt@aggTrade" and f["data"]["M"] is True for f in spot)
    assert all("nq" not in f["data"] for f in spot)
    assert all("M" not in f["data"] and f["data"]["s"] == "ETHUSDT" for f in um)
    pairs = [(Decimal(f["data"]["nq"]), Decimal(f["data"]["q"])) for f in um]
    assert all(0 < nq <= q for nq, q in pairs) and any(nq < q for nq, q in pairs), "RPI fills make some nq < q"
    assert all(set(f) >= {"e", "a", "q"} and "M" not in f and "nq" not in f for f in cm), "raw frames, no M, no nq"
    assert all(Decimal(f["q"]) == int(Decimal(f["q"])) >= 1 for f in cm), "COIN-M trades whole contracts"
    assert {f["s"] for f in cm} == {"BTCUSD_PERP"}


@pytest.mark.parametrize(
    "path",
    ["/fstream/stream?streams=ethusdt@aggTrade", "/fstream/ws/ethusdt@aggTrade", "/dstream/market/stream", "/fstream"],
)
async def test_usdm_streams_live_only_under_market(path: str) -> None:
    async with Exchange(ExchangeConfig(symbols=INSTRUMENTS, rate=0)) as exchange:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(exchange.ws_url + path):
                pass
    assert refused.value.response.status_code == 404


async def test_a_symbol_of_another_market_is_not_streamed() -> None:
    """`BTCUSD_PERP` is COIN-M's: the USD-M and spot paths know no such stream."""
    async with Exchange(ExchangeConfig(symbols=INSTRUMENTS, rate=0)) as exchange:
        for market in (Market.SPOT, Market.UM):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(exchange.urls(market)[0] + "/stream?streams=btcusd_perp@aggTrade"):
                    pass
            assert refused.value.response.status_code == 400


async def test_each_market_answers_its_rest_family_and_counts_its_weight() -> None:
    async with Exchange(ExchangeConfig(symbols=INSTRUMENTS, rate=500)) as exchange:
        await asyncio.sleep(0.3)
        base = exchange.rest_url
        status, _, body = await asyncio.to_thread(get, base + "/fapi/v1/aggTrades?symbol=ETHUSDT&limit=50")
        rows = orjson.loads(body)
        assert status == 200 and len(rows) == 50
        assert all(set(r) == {"a", "p", "q", "nq", "f", "l", "T", "m"} for r in rows)
        served = {t.agg_id: t.normal_qty for t in exchange.history("um:ETHUSDT").trades()}
        assert all(served[r["a"]] == r["nq"] for r in rows)
        status, _, body = await asyncio.to_thread(get, base + "/dapi/v1/aggTrades?symbol=BTCUSD_PERP&limit=5")
        assert status == 200 and all(set(r) == {"a", "p", "q", "f", "l", "T", "m"} for r in orjson.loads(body))
        status, _, body = await asyncio.to_thread(get, base + "/api/v3/aggTrades?symbol=BTCUSD_PERP&limit=5")
        assert (status, orjson.loads(body)["code"]) == (400, -1121), "spot has no such symbol"
        status, _, body = await asyncio.to_thread(get, base + "/dapi/v1/exchangeInfo")
        [info] = orjson.loads(body)["symbols"]
        assert (info["symbol"], info["contractType"], info["contractStatus"], info["contractSize"]) == (
            "BTCUSD_PERP",
            "PERPETUAL",
            "TRADING",
            100,
        )
        status, _, body = await asyncio.to_thread(get, base + "/fapi/v1/exchangeInfo")
        answer = orjson.loads(body)
        assert [(s["symbol"], s["status"], s["contractType"]) for s in answer["symbols"]] == [
            ("ETHUSDT", "TRADING", "PERPETUAL")
        ]
        assert answer["rateLimits"][0]["limit"] == 2400
        assert dict(exchange.rest_log.weights) == {Market.UM: 20 + 1, Market.CM: 20 + 1, Market.SPOT: 4}


async def test_a_market_over_its_weight_limit_answers_429_and_the_others_still_answer() -> None:
    async with Exchange(ExchangeConfig(symbols=INSTRUMENTS, rate=0)) as exchange:
        url = exchange.rest_url + "/fapi/v1/aggTrades?symbol=ETHUSDT&limit=1"
        statuses = [(await asyncio.to_thread(get, url))[0] for _ in range(2400 // 20 + 1)]
        assert statuses[:-1] == [200] * 120 and statuses[-1] == 429
        status, headers, _ = await asyncio.to_thread(get, url)
        assert status == 429 and int(headers["Retry-After"]) >= 1
        assert (await asyncio.to_thread(get, exchange.rest_url + "/dapi/v1/aggTrades?symbol=BTCUSD_PERP"))[0] == 200
        assert (await asyncio.to_thread(get, exchange.rest_url + "/api/v3/aggTrades?symbol=ETHUSDT"))[0] == 200
        assert exchange.rest_log.refused[Market.UM] == 2 and exchange.rest_log.weights[Market.UM] == 2400


async def test_listings_resolve_each_markets_instruments(tmp_path: Path) -> None:
    config = ExchangeConfig(symbols=(*INSTRUMENTS, "BTCUSDT", "um:BTCUSDT_261225", "cm:ETHUSD_PERP"), rate=0)
    async with Exchange(config) as exchange:
        listings = ExchangeListings(simulator_settings(exchange, None, tmp_path, "BTCUSDT"))
        assert await listings.resolve(Market.SPOT) == ["BTCUSDT", "ETHUSDT"]
        assert await listings.resolve(Market.UM) == ["um:BTCUSDT_261225", "um:ETHUSDT"]
        assert await listings.resolve(Market.CM) == ["cm:BTCUSD_PERP", "cm:ETHUSD_PERP"]
        assert listings.contract_sizes == {"cm:BTCUSD_PERP": 100, "cm:ETHUSD_PERP": 10}
        assert dict(exchange.rest_log.weights) == {Market.SPOT: 20, Market.UM: 1, Market.CM: 1}


async def test_futures_dumps_have_a_header_and_ms_times_at_their_own_paths(tmp_path: Path) -> None:
    config = ExchangeConfig(symbols=INSTRUMENTS, rate=5, state_dir=tmp_path / "state", history_days=2)
    async with Exchange(config) as exchange:
        day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
        name = f"ETHUSDT-aggTrades-{day}.zip"
        um = f"{exchange.rest_url}/data/futures/um/daily/aggTrades/ETHUSDT/{name}"
        status, _, body = await asyncio.to_thread(get, um)
        assert status == 200
        text = zipfile.ZipFile(io.BytesIO(body)).read(name.replace(".zip", ".csv")).decode()
        assert text.startswith(DUMP_HEADER)
        first = text.splitlines()[1].split(",")
        served = exchange.history("um:ETHUSDT").trades()
        by_id = {t.agg_id: t for t in served}
        assert len(first) == 7 and int(first[5]) == by_id[int(first[0])].time_ms and first[6] in ("true", "false")
        spot_body = (await asyncio.to_thread(get, um.replace("/futures/um/", "/spot/")))[2]
        spot_row = zipfile.ZipFile(io.BytesIO(spot_body)).read(name.replace(".zip", ".csv")).decode().split("\n")[0]
        assert int(spot_row.split(",")[0]) not in by_id or spot_row.split(",")[1:3] != first[1:3], "another tape"
        assert len(spot_row.split(",")) == 8 and int(spot_row.split(",")[5]) > 10**14, "spot: µs and isBestMatch"
        cm = um.replace("/um/", "/cm/")
        assert (await asyncio.to_thread(get, cm))[0] == 404, "COIN-M has no ETHUSDT"
        status, _, line = await asyncio.to_thread(get, um + ".CHECKSUM")
        assert status == 200 and line.decode().split()[1] == name
    assert sorted(p.name for p in (tmp_path / "state").glob("*.released.csv")) == [
        "ETHUSDT.released.csv",
        "cm.BTCUSD_PERP.released.csv",
        "um.ETHUSDT.released.csv",
    ]


async def test_a_restarted_simulator_keeps_each_markets_ids_and_nq(tmp_path: Path) -> None:
    config = ExchangeConfig(symbols=INSTRUMENTS, rate=300, state_dir=tmp_path)
    async with Exchange(config) as exchange:
        await asyncio.sleep(0.5)
    first = {name: exchange.history(name).trades() for name in INSTRUMENTS}
    async with Exchange(config) as again:
        for name in INSTRUMENTS:
            assert again.history(name).trades()[: len(first[name])] == first[name]
        url = again.rest_url + f"/fapi/v1/aggTrades?symbol=ETHUSDT&fromId={first['um:ETHUSDT'][0].agg_id}&limit=5"
        rows = orjson.loads((await asyncio.to_thread(get, url))[2])
    assert [r["nq"] for r in rows] == [t.normal_qty for t in first["um:ETHUSDT"][:5]]
    assert all(t.normal_qty is None for t in first["ETHUSDT"] + first["cm:BTCUSD_PERP"])


async def test_up_simulate_points_each_markets_settings_at_the_simulator(tmp_path: Path) -> None:
    async with Exchange(ExchangeConfig(symbols=INSTRUMENTS, rate=50)) as exchange:
        settings = simulator_settings(exchange, None, tmp_path, *INSTRUMENTS)
        assert settings.binance_urls(Market.UM)[0].endswith("/fstream/market")
        assert settings.binance_urls(Market.CM)[0].endswith("/dstream")
        client = RestClient.of(settings, Market.CM)
        await asyncio.sleep(0.3)
        newest = await client.newest_id("cm:BTCUSD_PERP")
        assert newest is not None and newest <= exchange.history("cm:BTCUSD_PERP").trades()[-1].agg_id
        assert client.budget.used == 20 and exchange.rest_log.weights[Market.CM] == 20
    assert Settings().binance_urls(Market.UM) == ("wss://fstream.binance.com/market", "https://fapi.binance.com")
    assert Settings().rest_weight_per_minute(Market.CM) == 1200
