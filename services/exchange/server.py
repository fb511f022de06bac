"""The exchange: one loopback port speaking Binance's WebSocket streams and REST endpoints, for three markets.

Ingest reaches it by URL only, exactly as it reaches Binance, so nothing in ingest knows
it is talking to a simulator. WebSocket upgrades and plain HTTP GETs share the port:
websockets' ``process_request`` hook answers REST requests before any handshake. Spot,
USD-M and COIN-M instruments (``BTCUSDT``, ``um:BTCUSDT``, ``cm:BTCUSD_PERP``) are served
side by side, each market at its own paths (`markets`): ``urls(market)`` gives the base
URLs a client of that market is pointed at.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import logging
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from tradetape.domain.instruments import Market, check_instrument
from tradetape.services.exchange import rest
from tradetape.services.exchange.config import ExchangeConfig
from tradetape.services.exchange.connection import StreamSession
from tradetape.services.exchange.dumps import DumpArchive
from tradetape.services.exchange.faults import FaultConfig
from tradetape.services.exchange.generator import (
    FIRST_ID,
    GeneratorFeed,
    Resume,
)
from tradetape.services.exchange.history import TradeHistory
from tradetape.services.exchange.markets import (
    WIRES,
    rest_market,
    wire_of,
    ws_route,
)
from tradetape.services.exchange.replay import Replay
from tradetape.services.exchange.sources import generator_feed, invent_past, legacy_ids, trade_history
from tradetape.services.exchange.stored import StoredFeed
from tradetape.services.exchange.streams import StreamError, is_stream_path, parse_subscription

logger = logging.getLogger(__name__)

SHUTDOWN_NOTICE_TIMEOUT = 2.0


def _json_response(
    status: int,
    body: bytes,
    extra: tuple[tuple[str, str], ...] = (),
    content_type: str = "application/json;charset=UTF-8",
) -> Response:
    phrase = "I'm a teapot" if status == 418 else HTTPStatus(status).phrase
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            *extra,
        ]
    )
    return Response(status, phrase, headers, body)


class Exchange:
    """A Binance-compatible peer on one port; ``async with Exchange(...) as exchange``.

    Generators trade from ``start()``; a replay starts when its symbol's first
    subscriber connects, and ``wait_replay(symbol)`` returns once it has played out.
    """

    def __init__(self, config: ExchangeConfig | None = None, **overrides: Any) -> None:
        base = config or ExchangeConfig()
        self.config = dataclasses.replace(base, **overrides) if overrides else base
        self._histories: dict[str, TradeHistory] = {}
        """By instrument name."""
        self._markets: dict[Market, dict[str, TradeHistory]] = {}
        """Per market, its histories by the exchange's symbol: what its paths serve."""
        self._replays: dict[str, Replay] = {}
        self._feeds: list[GeneratorFeed] = []
        self._stored: StoredFeed | None = None
        self._tick_sizes: dict[str, str] = {}
        self._sessions: set[StreamSession] = set()
        self._server: Server | None = None
        self._rest_faults = rest.RestFaults(self.config.faults)
        self.rest_log = rest.RestLog()
        self._dumps = DumpArchive()
        self._lock = asyncio.Lock()
        self._stopped = asyncio.Event()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the exchange is not running")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def _url_host(self) -> str:
        host = self.config.host
        if host in ("", "0.0.0.0", "::"):
            return "127.0.0.1"
        return f"[{host}]" if ":" in host else host

    @property
    def ws_url(self) -> str:
        """Spot's WebSocket base URL (`urls` gives each market's)."""
        return f"ws://{self._url_host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """The REST base URL of every market (their paths differ: /api/v3, /fapi/v1, /dapi/v1) and of the dumps."""
        return f"http://{self._url_host}:{self.port}"

    def urls(self, market: Market) -> tuple[str, str]:
        """The WebSocket and REST base URLs a client of `market` is given (``ws://host:port/fstream/market``...)."""
        return self.ws_url + wire_of(market).ws_prefix, self.rest_url

    @property
    def symbols(self) -> list[str]:
        """The instruments served, by name."""
        return sorted(self._histories)

    @property
    def sessions(self) -> int:
        """Open WebSocket connections."""
        return len(self._sessions)

    def history(self, name: str) -> TradeHistory:
        """The released trades of an instrument (what the stream sent and REST returns)."""
        try:
            return self._histories[name]
        except KeyError:
            raise KeyError(f"{name} is not served by this exchange") from None

    def _slowest(self, name: str) -> int | None:
        """The position in instrument `name`'s history of the connection furthest behind in it; None: nobody
        follows it."""
        history = self._histories[name]
        positions = [p for session in self._sessions if (p := session.position(history)) is not None]
        return min(positions) if positions else None

    async def wait_replay(self, symbol: str) -> int:
        """Wait until the symbol's replay has started and released every trade.

        Returns the number of trades released. Bound it with a timeout: the replay only
        starts once a client subscribes.
        """
        try:
            replay = self._replays[symbol]
        except KeyError:
            raise KeyError(f"{symbol} is not replayed by this exchange") from None
        return await replay.wait_done()

    async def start(self) -> None:
        """Load the dumps, start the generators and listen."""
        async with self._lock:
            if self._server is not None:
                raise RuntimeError("the exchange is already running")
            config = self.config
            self._stopped.clear()
            self._build_sources(config)
            for feed in self._feeds:
                feed.start()
            try:
                self._server = await serve(
                    self._handle,
                    config.host,
                    config.port,
                    process_request=self._process_any_request,
                    compression=None,
                    ping_interval=config.ping_interval,
                    ping_timeout=config.ping_timeout,
                    close_timeout=2.0,
                )
            except BaseException:
                await self._stop_sources()
                raise
            if self._stored is not None:
                logger.info("exchange listening on %s: the stored range of %s", self.ws_url, self.symbols)
            else:
                logger.info(
                    "exchange listening on %s: generated %s at %g/s, replayed %s",
                    self.ws_url,
                    [s for s in self.symbols if s not in self._replays],
                    config.rate,
                    {s: r.path.name for s, r in self._replays.items()},
                )

    def _build_sources(self, config: ExchangeConfig) -> None:
        replays = config.replay_map
        state_dir = config.state_dir
        self._histories = {name: trade_history(config, name) for name in config.all_symbols}
        self._markets = {market: {} for market in WIRES}
        for history in self._histories.values():
            self._markets[history.market][history.symbol] = history
        self._tick_sizes = {s: config.tick_size(s) for s in config.all_symbols}
        self._replays = {
            symbol: Replay(
                path,
                self._histories[symbol],
                speed=config.speed,
                original_times=config.original_times,
            )
            for symbol, path in replays.items()
        }
        generated = [symbol for symbol in config.symbols if symbol not in replays]
        if state_dir is not None and config.history_days and not config.original_times:
            for symbol, replay in self._replays.items():
                if replay.rows:
                    first = replay.rows[0].trade
                    self._invent_past(config, symbol, Resume(first.agg_id, first.first_id))
            for symbol in generated:
                if legacy_ids(config, symbol) is None:
                    self._invent_past(config, symbol, Resume(FIRST_ID, FIRST_ID))
        self._feeds = []
        if config.stored is not None:
            self._stored = StoredFeed(config.stored, self._histories, self._slowest)
        elif config.rate > 0:
            self._feeds = [self._feed(config, symbol) for symbol in generated]

    def _invent_past(self, config: ExchangeConfig, symbol: str, before: Resume) -> None:
        invent_past(config, self._histories[symbol], symbol, self._tick_sizes[symbol], before)

    def _feed(self, config: ExchangeConfig, symbol: str) -> GeneratorFeed:
        return generator_feed(config, self._histories[symbol], symbol, self._tick_sizes[symbol])

    async def stop(self) -> None:
        """Stop trading, announce ``serverShutdown``, close every connection; idempotent."""
        async with self._lock:
            server, self._server = self._server, None
            if server is None:
                return
            await self._stop_sources()
            sessions = list(self._sessions)
            if sessions:
                _, late = await asyncio.wait(
                    [asyncio.create_task(s.announce_shutdown()) for s in sessions],
                    timeout=SHUTDOWN_NOTICE_TIMEOUT,
                )
                for task in late:
                    task.cancel()
            server.close()
            await server.wait_closed()
            self._stopped.set()
            logger.info("exchange stopped")

    async def _stop_sources(self) -> None:
        if self._stored is not None:
            await self._stored.stop()
        for feed in self._feeds:
            await feed.stop()
        for replay in self._replays.values():
            await replay.stop()
        for history in self._histories.values():
            history.close()

    async def serve_forever(self) -> None:
        """Start if needed and serve until cancelled or stopped, then stop (for the CLI)."""
        if self._server is None:
            await self.start()
        try:
            await self._stopped.wait()
        finally:
            await self.stop()

    def list_symbol(self, symbol: str) -> None:
        """List instrument `symbol` from now on, as Binance lists a new pair: in exchangeInfo, on the streams and
        REST, and generated at the configured rate (an instrument listed already is left as it is)."""
        check_instrument(symbol)
        if symbol in self._histories:
            return
        config = self.config
        self.config = dataclasses.replace(config, symbols=(*config.symbols, symbol))
        history = self._histories[symbol] = trade_history(config, symbol)
        self._markets[history.market][history.symbol] = history
        self._tick_sizes[symbol] = config.tick_size(symbol)
        if config.rate > 0 and self._server is not None:
            feed = self._feed(config, symbol)
            self._feeds.append(feed)
            feed.start()
        logger.info("%s listed", symbol)

    @property
    def faults(self) -> FaultConfig:
        return self.config.faults

    def set_faults(self, faults: FaultConfig) -> None:
        """Replace the faults in force, on open connections too (their counters carry on)."""
        self.config = dataclasses.replace(self.config, faults=faults)
        self._rest_faults.config = faults
        self._rest_faults.failed = 0
        for history in self._histories.values():
            history.void_every = faults.void_every
        for session in self._sessions:
            session.faults.reconfigure(faults)
        logger.info("faults set: %s", faults)

    @property
    def rest_failures(self) -> int:
        """aggTrades calls failed by the REST fault so far."""
        return self._rest_faults.failed

    def _control(self, path: str) -> Response:
        """``GET /control/faults?name=value&...``: change faults at run time; answers the faults in force.

        ``GET /control/list?symbol=NEWUSDT``: list a symbol now (`list_symbol`); answers every symbol listed.
        """
        parts = urlsplit(path)
        params = {name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
        if parts.path == "/control/list":
            try:
                self.list_symbol(params.get("symbol", ""))
            except ValueError as exc:
                return _json_response(HTTPStatus.BAD_REQUEST, orjson.dumps({"code": -1100, "msg": str(exc)}))
            return _json_response(HTTPStatus.OK, orjson.dumps({"symbols": self.symbols}))
        if parts.path != "/control/faults":
            return _json_response(HTTPStatus.NOT_FOUND, orjson.dumps({"code": -1000, "msg": "Not found."}))
        try:
            self.set_faults(FaultConfig.from_query(self.config.faults, params))
        except (ValueError, TypeError) as exc:
            return _json_response(HTTPStatus.BAD_REQUEST, orjson.dumps({"code": -1100, "msg": str(exc)}))
        return _json_response(HTTPStatus.OK, self.config.faults.to_json())

    async def _process_any_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """History dumps (a replayed symbol's replay is played out first), else `_process_request`."""
        wire = next((w for w in WIRES.values() if request.path.startswith(w.dump_prefix)), None)
        if wire is None:
            return self._process_request(connection, request)
        for name, replay in self._replays.items():
            history = self._histories[name]
            if history.market is wire.market and f"/{history.symbol}/" in request.path:
                replay.start()
                await replay.wait_done()
        answer = self._dumps.handle(
            request.path,
            request.headers.get("Range"),
            wire,
            self._markets[wire.market],
            self.config.faults.corrupt_checksum,
        )
        return _json_response(answer.status, answer.body, answer.headers, answer.content_type)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer REST GETs and reject bad stream URLs; None lets the handshake proceed."""
        path = request.path
        wire = rest_market(path)
        if wire is not None:
            answer = self.rest_log.note(path, wire) or rest.handle(
                path, wire, self._markets[wire.market], self._market_ticks(wire.market), self._rest_faults
            )
            return _json_response(answer.status, answer.body, answer.headers, answer.content_type)
        if path.startswith("/control/"):
            return self._control(path)
        route = ws_route(path)
        if route is None or not is_stream_path(route[1]):
            body = orjson.dumps({"code": -1000, "msg": "Not found."})
            return _json_response(HTTPStatus.NOT_FOUND, body)
        wire, below = route
        try:
            parse_subscription(below, self._markets[wire.market], self.config.max_streams)
        except StreamError as exc:
            body = orjson.dumps({"code": exc.code, "msg": exc.msg})
            return _json_response(HTTPStatus.BAD_REQUEST, body)
        connection.ping_interval = self.config.ping_interval_of(wire)  # keepalive starts after the handshake
        return None

    def _market_ticks(self, market: Market) -> dict[str, str]:
        return {h.symbol: self._tick_sizes[n] for n, h in self._histories.items() if h.market is market}

    def _on_subscribe(self, name: str) -> None:
        if self._stored is not None:
            self._stored.start()
        replay = self._replays.get(name)
        if replay is not None:
            replay.start()

    async def _handle(self, websocket: ServerConnection) -> None:
        assert websocket.request is not None
        config = self.config
        route = ws_route(websocket.request.path)
        assert route is not None  # `_process_request` refused every other path
        wire, below = route
        histories = self._markets[wire.market]
        subscription = parse_subscription(below, histories, config.max_streams)
        session = StreamSession(
            websocket,
            subscription,
            histories,
            config.faults,
            self._on_subscribe,
            wire=wire,
            max_streams=config.max_streams,
            max_incoming_per_s=config.max_incoming_of(wire),
        )
        self._sessions.add(session)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
