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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from tradetape.domain.instruments import Market, check_instrument, instrument_token, split_instrument
from tradetape.services.exchange import rest
from tradetape.services.exchange.connection import MAX_INCOMING_PER_S, StreamSession
from tradetape.services.exchange.dumps import DumpArchive
from tradetape.services.exchange.faults import FaultConfig
from tradetape.services.exchange.generator import (
    CONTRACT_UNITS,
    FIRST_ID,
    LOT_UNITS,
    GeneratorFeed,
    IdCheckpoint,
    Resume,
    TradeGenerator,
    format_units,
    id_margins,
    past_trades,
    resume_after,
    to_units,
)
from tradetape.services.exchange.history import TradeHistory, now_ms
from tradetape.services.exchange.markets import (
    FUTURES_MAX_INCOMING_PER_S,
    FUTURES_PING_INTERVAL,
    WIRES,
    MarketWire,
    rest_market,
    wire_of,
    ws_route,
)
from tradetape.services.exchange.released import ReleasedRows
from tradetape.services.exchange.replay import Replay, symbol_from_path
from tradetape.services.exchange.stored import StoredFeed, StoredFrames
from tradetape.services.exchange.streams import MAX_STREAMS, StreamError, is_stream_path, parse_subscription

logger = logging.getLogger(__name__)

DEFAULT_TICK_SIZE = "0.01"
PING_INTERVAL = 20.0
"""Binance pings every 20 s ..."""
PING_TIMEOUT = 60.0
"""... and drops a client whose pong has not come within a minute."""
SHUTDOWN_NOTICE_TIMEOUT = 2.0
DAY_MS = 86_400_000
MAX_HISTORY_DAYS = 366
RESUME_WINDOW = 1000
"""Newest trades searched for the last real one (void rows carry no trade ids) when a symbol resumes."""


@dataclass(frozen=True)
class ExchangeConfig:
    """Everything the simulator serves; built once at the edge and passed in."""

    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free port; read it back from ``Exchange.port``."""
    symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT")
    """Instruments listed (``BTCUSDT``, ``um:BTCUSDT``, ``cm:BTCUSD_PERP``); unless replayed, generated at ``rate``."""
    replay: Sequence[Path | str] | Mapping[str, Path | str] = ()
    """Dumps to replay; a sequence takes each (spot) symbol from its file name, a mapping names the instrument."""
    speed: float | None = None
    """Replay speed factor (10 = ten times real time); None = as fast as possible."""
    original_times: bool = False
    """Keep the dump's trade times instead of shifting them to the present."""
    rate: float = 50.0
    """Generated trades per second per symbol; 0 lists the symbols without trading them."""
    seed: int = 0
    faults: FaultConfig = field(default_factory=FaultConfig)
    tick_sizes: Mapping[str, str] = field(default_factory=dict)
    """Per-instrument PRICE_FILTER tick size (default 0.01); the generator trades on it too."""
    max_history: int | None = 1_000_000
    """Trades retained per symbol (oldest dropped first); None keeps all."""
    state_dir: Path | None = None
    """Where every symbol records the trades it released (`released`), so a restart answers
    them on REST and continues right after them; None forgets everything at a stop."""
    history_days: int = 0
    """With a state directory, finished days invented before the first start (`past_trades`,
    ending right below the first live id), so the dumps and REST have past days to serve."""
    ping_interval: float = PING_INTERVAL
    ping_timeout: float = PING_TIMEOUT
    max_streams: int = MAX_STREAMS
    """Streams one connection may hold (Binance: 1024); tests use fewer."""
    max_incoming_per_s: int = MAX_INCOMING_PER_S
    """Messages a spot client may send a connection a second (Binance: 5)."""
    futures_ping_interval: float = FUTURES_PING_INTERVAL
    """Futures connections are pinged this often (Binance: every 3 minutes)."""
    futures_max_incoming_per_s: int = FUTURES_MAX_INCOMING_PER_S
    """Messages a futures client may send a connection a second (Binance: 10)."""
    stored: StoredFrames | None = None
    """A stored range to serve (`stored.StoredFeed`, `tradetape exchange --from-store`): no symbol is generated."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        if self.speed is not None and self.speed <= 0:
            raise ValueError("speed must be positive or None")
        if self.rate < 0:
            raise ValueError("rate must be >= 0")
        if self.max_history is not None and self.max_history < 1:
            raise ValueError("max_history must be positive or None")
        if not 0 <= self.history_days <= MAX_HISTORY_DAYS:
            raise ValueError(f"history_days must be 0..{MAX_HISTORY_DAYS}")
        object.__setattr__(self, "symbols", tuple(self.symbols))
        replay = self.replay
        object.__setattr__(self, "replay", dict(replay) if isinstance(replay, Mapping) else tuple(replay))
        object.__setattr__(self, "tick_sizes", dict(self.tick_sizes))
        if self.state_dir is not None:
            object.__setattr__(self, "state_dir", Path(self.state_dir))
        for name in (*self.symbols, *self.replay_map, *self.tick_sizes):
            check_instrument(name)
        for tick in self.tick_sizes.values():
            to_units(tick)

    @property
    def replay_map(self) -> dict[str, Path]:
        """Replayed symbols and their dumps."""
        if isinstance(self.replay, Mapping):
            return {symbol: Path(path) for symbol, path in self.replay.items()}
        replays: dict[str, Path] = {}
        for entry in self.replay:
            path = Path(entry)
            symbol = symbol_from_path(path)
            if symbol in replays:
                raise ValueError(f"two replay files for {symbol}")
            replays[symbol] = path
        return replays

    @property
    def all_symbols(self) -> list[str]:
        """Every instrument served, generated or replayed."""
        return sorted({*self.symbols, *self.replay_map})

    def tick_size(self, name: str) -> str:
        return format_units(to_units(self.tick_sizes.get(name, DEFAULT_TICK_SIZE)))

    def ping_interval_of(self, wire: MarketWire) -> float:
        return self.futures_ping_interval if wire.futures else self.ping_interval

    def max_incoming_of(self, wire: MarketWire) -> int:
        return self.futures_max_incoming_per_s if wire.futures else self.max_incoming_per_s


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

    def _slowest(self, symbol: str) -> int | None:
        """The position in `symbol`'s history of the connection furthest behind in it; None: nobody follows it."""
        positions = [p for session in self._sessions if (p := session.position(symbol)) is not None]
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
        self._histories = {name: self._history(config, name) for name in config.all_symbols}
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
                if self._legacy_ids(config, symbol) is None:
                    self._invent_past(config, symbol, Resume(FIRST_ID, FIRST_ID))
        self._feeds = []
        if config.stored is not None:
            self._stored = StoredFeed(config.stored, self._histories, self._slowest)
        elif config.rate > 0:
            self._feeds = [self._generator_feed(config, symbol) for symbol in generated]

    def _invent_past(self, config: ExchangeConfig, symbol: str, before: Resume) -> None:
        """The finished days before a first start (nothing released yet), ending right below ``before``'s ids."""
        history = self._histories[symbol]
        if len(history) or history.trimmed_through_ms is not None:
            return
        today = now_ms() // DAY_MS * DAY_MS
        wire = wire_of(history.market)
        trades = past_trades(
            symbol,
            config.seed,
            self._tick_sizes[symbol],
            today - config.history_days * DAY_MS,
            today,
            last_agg_id=before.next_agg_id - 1,
            last_trade_id=before.next_trade_id - 1,
            lot_units=CONTRACT_UNITS if wire.contracts else LOT_UNITS,
            normal_qty=wire.normal_qty,
        )
        history.append(trades)
        if trades:
            logger.info(
                "%s: %d trades invented for the %d days before the first start, ids %d..%d",
                symbol,
                len(trades),
                config.history_days,
                trades[0].agg_id,
                trades[-1].agg_id,
            )

    @staticmethod
    def _legacy_ids(config: ExchangeConfig, symbol: str) -> tuple[int, int] | None:
        """The next ids of a former simulator's state file, if there is one."""
        if config.state_dir is None:
            return None
        return IdCheckpoint(config.state_dir / f"{instrument_token(symbol)}.json").resume(*id_margins(config.rate))

    def _generator_feed(self, config: ExchangeConfig, symbol: str) -> GeneratorFeed:
        """A symbol's feed, right after the trades it recorded as released (else a former state file's ids)."""
        history = self._histories[symbol]
        resume = resume_after(history.latest(RESUME_WINDOW))
        if resume is None:
            resume = Resume(*(self._legacy_ids(config, symbol) or (FIRST_ID, FIRST_ID)))
        wire = wire_of(history.market)
        generator = TradeGenerator(
            symbol,
            config.seed,
            tick_size=self._tick_sizes[symbol],
            start_price=resume.price,
            first_agg_id=resume.next_agg_id,
            first_trade_id=resume.next_trade_id,
            lot_units=CONTRACT_UNITS if wire.contracts else LOT_UNITS,
            normal_qty=wire.normal_qty,
        )
        return GeneratorFeed(generator, history, config.rate)

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

    @staticmethod
    def _history(config: ExchangeConfig, name: str) -> TradeHistory:
        market, symbol = split_instrument(name)
        return TradeHistory(
            symbol,
            config.max_history,
            market=market,
            void_every=config.faults.void_every,
            record=None if config.state_dir is None else ReleasedRows.of(config.state_dir, name),
        )

    def list_symbol(self, symbol: str) -> None:
        """List instrument `symbol` from now on, as Binance lists a new pair: in exchangeInfo, on the streams and
        REST, and generated at the configured rate (an instrument listed already is left as it is)."""
        check_instrument(symbol)
        if symbol in self._histories:
            return
        config = self.config
        self.config = dataclasses.replace(config, symbols=(*config.symbols, symbol))
        history = self._histories[symbol] = self._history(config, symbol)
        self._markets[history.market][history.symbol] = history
        self._tick_sizes[symbol] = config.tick_size(symbol)
        if config.rate > 0 and self._server is not None:
            feed = self._generator_feed(config, symbol)
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
