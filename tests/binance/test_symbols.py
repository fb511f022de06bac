"""Resolving `TRADETAPE_SYMBOLS`: a list as given, `ALL` from the simulator's exchangeInfo, retried while it is away."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from tradetape.binance.rest import GapFillError, parse_trading_symbols
from tradetape.binance.symbols import resolve_symbols
from tradetape.domain.instruments import Market
from tradetape.ground.backoff import Backoff
from tradetape.services.exchange import Exchange, ExchangeConfig
from tradetape.settings import Settings
from tradetape.testing import simulator_settings

pytestmark = pytest.mark.timeout(20)

NOWHERE = "http://127.0.0.1:9"
"""The discard port: nothing answers there."""


def fast() -> Backoff:
    return Backoff(0.02, 0.05, jitter=0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_only_trading_symbols_are_taken() -> None:
    info = {
        "symbols": [
            {"symbol": "ETHUSDT", "status": "TRADING"},
            {"symbol": "LUNAUSDT", "status": "BREAK"},
            {"symbol": "BTCUSDT", "status": "TRADING"},
            {"symbol": "币安人生USDT", "status": "TRADING"},
            {"symbol": "BAD.USDT", "status": "TRADING"},
        ]
    }
    assert parse_trading_symbols(orjson.dumps(info)) == ["BAD.USDT", "BTCUSDT", "ETHUSDT", "币安人生USDT"]


class _ExchangeInfo(ThreadingHTTPServer):
    """An exchange whose exchangeInfo lists names of every shape."""

    def __init__(self, body: bytes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server interface
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the http.server interface
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


async def test_names_that_break_the_grammar_are_left_out_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 5,000-letter name, `>` or `BTC.USDT` from the exchange would become a subject, a key and a path."""
    names = ["BTCUSDT", "A" * 5000, ">", "BTC.USDT", "btcusdt", "币安人生USDT", "BTC_", "BTCUSD_PERP"]
    body = orjson.dumps({"symbols": [{"symbol": name, "status": "TRADING"} for name in names]})
    server = _ExchangeInfo(body)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = Settings(data_dir=tmp_path, symbols="ALL", binance_rest_url=server.url)
        with caplog.at_level(logging.WARNING, "tradetape.binance.symbols"):
            assert await resolve_symbols(settings, asyncio.Event()) == ("BTCUSDT", "BTCUSD_PERP")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    [warning] = [r for r in caplog.records if r.getMessage() == "exchangeInfo names that are no symbol left out"]
    assert warning.left_out == 6 and len(warning.getMessage() + warning.examples) < 400  # type: ignore[attr-defined]


@pytest.mark.parametrize("body", [b"<html>502</html>", b"[]", b'{"symbols": [{"status": "TRADING"}]}', b"{}"])
def test_an_unusable_exchange_info_is_a_failed_attempt(body: bytes) -> None:
    with pytest.raises(GapFillError, match="exchangeInfo answer unusable"):
        parse_trading_symbols(body)


async def test_a_list_is_itself_and_asks_nobody(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, symbols="btcusdt,ETHUSDT", binance_rest_url=NOWHERE)
    assert await resolve_symbols(settings, asyncio.Event()) == ("BTCUSDT", "ETHUSDT")


async def test_all_is_every_symbol_the_exchange_lists(tmp_path: Path) -> None:
    config = ExchangeConfig(symbols=("SOLUSDT", "BTCUSDT", "ETHUSDT"), rate=0)
    async with Exchange(config) as exchange:
        settings = Settings(data_dir=tmp_path, symbols="ALL", binance_rest_url=exchange.rest_url)
        assert await resolve_symbols(settings, asyncio.Event()) == ("BTCUSDT", "ETHUSDT", "SOLUSDT")


async def test_all_waits_for_an_exchange_that_comes_up_later(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    settings = Settings(data_dir=tmp_path, symbols="ALL", binance_rest_url=f"http://127.0.0.1:{port}")
    with caplog.at_level(logging.WARNING, "tradetape.binance.symbols"):
        resolving = asyncio.create_task(resolve_symbols(settings, asyncio.Event(), backoff=fast()))
        await asyncio.sleep(0.3)
        assert not resolving.done()
        async with Exchange(ExchangeConfig(port=port, symbols=("BTCUSDT",), rate=0)):
            assert await asyncio.wait_for(resolving, 5) == ("BTCUSDT",)
    retries = [r for r in caplog.records if r.getMessage().startswith("exchangeInfo not usable")]
    assert retries and retries[0].setting == "TRADETAPE_SYMBOLS=ALL"  # type: ignore[attr-defined]
    assert "unreachable" in retries[0].error  # type: ignore[attr-defined]


async def test_all_gives_up_waiting_when_stopped(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, symbols="ALL", binance_rest_url=NOWHERE)
    stop = asyncio.Event()
    resolving = asyncio.create_task(resolve_symbols(settings, stop, backoff=Backoff(30, 30)))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    stop.set()
    assert await asyncio.wait_for(resolving, 2) == ()
    assert time.monotonic() - started < 1, "the backoff sleep ends with the stop event"


async def test_what_before_attempt_raises_ends_the_wait(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, symbols="ALL", binance_rest_url=NOWHERE)
    attempts: list[int] = []

    def check() -> None:
        attempts.append(1)
        if len(attempts) == 3:
            raise ConnectionAbortedError("closed for good")

    with pytest.raises(ConnectionAbortedError):
        await resolve_symbols(settings, asyncio.Event(), backoff=fast(), before_attempt=check)
    assert len(attempts) == 3


async def test_an_exchange_listing_nothing_is_asked_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with Exchange(ExchangeConfig(symbols=(), rate=0)) as exchange:
        settings = Settings(data_dir=tmp_path, symbols="ALL", binance_rest_url=exchange.rest_url)
        stop = asyncio.Event()
        with caplog.at_level(logging.WARNING, "tradetape.binance.symbols"):
            resolving = asyncio.create_task(resolve_symbols(settings, stop, backoff=fast()))
            await asyncio.sleep(0.3)
            stop.set()
            assert await asyncio.wait_for(resolving, 2) == ()
    errors = {r.error for r in caplog.records if hasattr(r, "error")}
    assert errors == {"exchangeInfo lists no TRADING symbol"}


async def test_each_markets_all_is_its_own_listing_beside_named_instruments(tmp_path: Path) -> None:
    """`resolve(market)` answers a market's `ALL`; spot's is exchangeInfo; another market's names are dropped."""
    asked: list[Market] = []

    async def futures_listing(market: Market) -> list[str]:
        asked.append(market)
        return {Market.UM: ["um:BTCUSDT", "um:ETHUSDT", "BTCUSDT", "cm:BTCUSD_PERP", "um:a.b"]}[market]

    settings = Settings(data_dir=tmp_path, symbols="cm:BTCUSD_PERP,um:ALL,BTCUSDT", binance_rest_url=NOWHERE)
    resolved = await resolve_symbols(settings, asyncio.Event(), listing=futures_listing)
    assert resolved == ("cm:BTCUSD_PERP", "um:BTCUSDT", "um:ETHUSDT", "BTCUSDT") and asked == [Market.UM]
    async with Exchange(ExchangeConfig(symbols=("SOLUSDT", "BTCUSDT"), rate=0)) as exchange:
        settings = Settings(data_dir=tmp_path, symbols="ALL,um:ETHUSDT", binance_rest_url=exchange.rest_url)
        assert await resolve_symbols(settings, asyncio.Event()) == ("BTCUSDT", "SOLUSDT", "um:ETHUSDT")


async def test_each_futures_all_asks_its_own_markets_exchange_info(tmp_path: Path) -> None:
    """`um:ALL` and `cm:ALL` are answered by /fapi and /dapi exchangeInfo, each market's own REST weight counted."""
    config = ExchangeConfig(symbols=("BTCUSDT", "um:ETHUSDT", "um:BTCUSDT", "cm:BTCUSD_PERP"), rate=0)
    async with Exchange(config) as exchange:
        settings = simulator_settings(exchange, None, tmp_path, "um:ALL", "cm:ALL", "SOLUSDT")
        resolved = await resolve_symbols(settings, asyncio.Event())
        assert resolved == ("um:BTCUSDT", "um:ETHUSDT", "cm:BTCUSD_PERP", "SOLUSDT")
        assert set(exchange.rest_log.weights) == {Market.UM, Market.CM}
