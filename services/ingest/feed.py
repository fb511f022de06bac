"""Exchange WebSocket connections kept healthy: one `Feed` per group of at most 1024 streams.

A feed opens its connection (streams in the URL as far as they fit, the rest by
SUBSCRIBE, paced under its market's incoming messages a second: 5 on spot, 10 on
futures, `lanes.subscribe_interval_s`), hands every frame to
the sink, and replaces the connection when it is lost (capped backoff), silent (no pong
within the silence timeout: websockets' keepalive pings), announced `serverShutdown`,
or nearly 24 h old. A planned replacement is opened and subscribed first and the old one
is closed only after an overlap, so no trade falls between them; the tape's id checks
drop what both delivered. Connection attempts of all feeds share one limiter (300 per
5 minutes per IP).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake, InvalidURI, WebSocketException

from tradetape.binance.frames import ControlFrame, ReplyFrame
from tradetape.binance.streams import MAX_URL_CHARS, STREAMS_PER_SUBSCRIBE, connection_plan, subscribe_request
from tradetape.domain.instruments import Market, instrument_name
from tradetape.errors import ExchangeError
from tradetape.ground.backoff import Backoff
from tradetape.ground.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

CONNECT_ATTEMPTS = 300
CONNECT_PERIOD_S = 300.0
SUBSCRIBE_INTERVAL_S = 0.25
"""Four SUBSCRIBE requests a second at most, under Binance's 5 incoming messages a second."""
HEALTHY_CONNECTION_S = 30.0
ROTATION_OVERLAP_S = 1.0
REPLY_TIMEOUT_S = 10.0
MAX_READ_BYTES = 16 * 2**20
"""Frames up to this are read and dropped by the frame cap (counted); a larger one closes the connection."""

FrameSink = Callable[[str | bytes], ControlFrame | ReplyFrame | None]


class FlowControl(Protocol):
    """Backpressure from the publisher: a congested one makes the readers wait."""

    @property
    def congested(self) -> bool: ...

    async def wait_for_room(self) -> None: ...


def split_symbols(symbols: tuple[str, ...], per_connection: int) -> list[tuple[str, ...]]:
    """Symbols in groups of at most `per_connection`, one group a connection."""
    return [symbols[i : i + per_connection] for i in range(0, len(symbols), per_connection)]


class AttemptLimiter:
    """At most `limit` connection attempts in any `period` seconds (a sliding window)."""

    def __init__(
        self,
        limit: int = CONNECT_ATTEMPTS,
        period: float = CONNECT_PERIOD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.period = period
        self._clock = clock
        self._attempts: deque[float] = deque()

    def delay(self) -> float:
        """Seconds until another attempt is allowed (0 = now)."""
        now = self._clock()
        while self._attempts and self._attempts[0] <= now - self.period:
            self._attempts.popleft()
        if len(self._attempts) < self.limit:
            return 0.0
        return self._attempts[0] + self.period - now

    def record(self) -> None:
        self._attempts.append(self._clock())

    async def acquire(self) -> None:
        while (delay := self.delay()) > 0:
            logger.warning("connection attempts limited, waiting", extra={"delay_s": round(delay, 1)})
            await asyncio.sleep(delay)
        self.record()


@dataclass(frozen=True, slots=True)
class FeedOptions:
    silence_timeout: float = 60.0
    max_age: float = 23.5 * 3600
    max_frame_bytes: int = 65_536
    subscribe_interval: float = SUBSCRIBE_INTERVAL_S
    overlap: float = ROTATION_OVERLAP_S
    max_url_chars: int = MAX_URL_CHARS
    streams_per_subscribe: int = STREAMS_PER_SUBSCRIBE


class FeedError(ExchangeError, RuntimeError):
    """The exchange refused a subscription."""


@dataclass(eq=False)
class _Connection:
    ws: ClientConnection
    opened: float
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)
    replies: dict[int, asyncio.Future[str | None]] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None


class Feed:
    def __init__(
        self,
        name: str,
        ws_url: str,
        symbols: tuple[str, ...],
        sink: FrameSink,
        *,
        limiter: AttemptLimiter,
        options: FeedOptions,
        on_subscribed: Callable[[tuple[str, ...]], None],
        flow: FlowControl | None = None,
        market: Market = Market.SPOT,
    ) -> None:
        """`symbols` are the exchange's (stream names); `on_subscribed` gets their instrument names on `market`."""
        self.name = name
        self._flow = flow
        self.symbols = symbols
        self.instruments = tuple(instrument_name(market, symbol) for symbol in symbols)
        self._url, self._batches = connection_plan(
            ws_url, symbols, options.max_url_chars, options.streams_per_subscribe
        )
        self._sink = sink
        self._limiter = limiter
        self._options = options
        self._on_subscribed = on_subscribed
        self._request_id = 0
        self.connections = 0
        self.reconnects = 0
        self.rotations = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Keep one subscribed connection until `stop`; then close it."""
        backoff = Backoff(1.0, 60.0)
        current: _Connection | None = None
        try:
            while not stop.is_set():
                if current is None:
                    current = await self._open_or_none(stop)
                    if current is None:
                        await _wait(stop, backoff.next_delay())
                        continue
                reason = await self._until_due(current, stop)
                if reason == "stop":
                    return
                if reason == "lost":
                    lived = time.monotonic() - current.opened
                    await self._close(current)
                    current = None
                    self.reconnects += 1
                    if lived >= HEALTHY_CONNECTION_S:
                        backoff.reset()
                    delay = backoff.next_delay()
                    logger.info("reconnecting", extra={"feed": self.name, "delay_s": round(delay, 2)})
                    await _wait(stop, delay)
                    continue
                logger.info("replacing exchange connection", extra={"feed": self.name, "reason": reason})
                replacement = await self._open_or_none(stop)
                if replacement is None:
                    delay = backoff.next_delay()
                    if reason == "rotate":  # try again after the delay; the old one still works
                        current.opened = time.monotonic() - self._options.max_age + delay
                    else:
                        await _wait(stop, delay, current.reader)
                    continue
                backoff.reset()
                self.rotations += 1
                await _wait(stop, self._options.overlap, current.reader)
                await self._close(current)
                current = replacement
        finally:
            if current is not None:
                await self._close(current)

    async def _until_due(self, conn: _Connection, stop: asyncio.Event) -> str:
        assert conn.reader is not None
        stopping = asyncio.ensure_future(stop.wait())
        shutdown = asyncio.ensure_future(conn.shutdown.wait())
        timeout = max(0.0, conn.opened + self._options.max_age - time.monotonic())
        try:
            await asyncio.wait({stopping, shutdown, conn.reader}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (stopping, shutdown):
                await cancel_and_wait(waiter)
        if stop.is_set():
            return "stop"
        if conn.reader.done():
            return "lost"
        return "shutdown" if conn.shutdown.is_set() else "rotate"

    async def _open_or_none(self, stop: asyncio.Event) -> _Connection | None:
        try:
            return await self._open()
        except (OSError, TimeoutError, WebSocketException, FeedError) as exc:
            if isinstance(exc, (InvalidURI, InvalidHandshake)) and not isinstance(exc, OSError):
                logger.error("exchange refused the connection", extra={"feed": self.name, "error": repr(exc)})
            else:
                logger.warning("exchange connection failed", extra={"feed": self.name, "error": repr(exc)})
            return None

    async def _open(self) -> _Connection:
        await self._limiter.acquire()
        half = self._options.silence_timeout / 2
        ws = await connect(
            self._url,
            open_timeout=10,
            close_timeout=2,
            max_size=max(4 * self._options.max_frame_bytes, MAX_READ_BYTES),
            max_queue=4096,
            ping_interval=half,
            ping_timeout=half,
            compression=None,
        )
        conn = _Connection(ws, time.monotonic())
        conn.reader = asyncio.create_task(self._read(conn), name=f"ingest-feed-{self.name}")
        self.connections += 1
        try:
            await self._subscribe(conn)
        except BaseException:
            await self._close(conn)
            raise
        logger.info(
            "exchange connected",
            extra={"feed": self.name, "streams": len(self.symbols), "connection": self.connections},
        )
        self._on_subscribed(self.instruments)
        return conn

    async def _subscribe(self, conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        for index, batch in enumerate(self._batches):
            await asyncio.sleep(self._options.subscribe_interval if index else self._options.subscribe_interval / 2)
            self._request_id += 1
            reply: asyncio.Future[str | None] = loop.create_future()
            conn.replies[self._request_id] = reply
            await conn.ws.send(subscribe_request(batch, self._request_id))
            error = await asyncio.wait_for(reply, REPLY_TIMEOUT_S)
            if error is not None:
                raise FeedError(f"SUBSCRIBE refused: {error}")

    async def _read(self, conn: _Connection) -> None:
        sink, flow, ws = self._sink, self._flow, conn.ws
        try:
            while True:
                message = await ws.recv(decode=False)  # bytes: orjson reads them without a str in between
                out = sink(message)
                if flow is not None and flow.congested:
                    await flow.wait_for_room()
                if out is None:
                    continue
                if isinstance(out, ReplyFrame):
                    waiter = conn.replies.pop(out.request_id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(out.error)
                elif out.event == "serverShutdown":
                    logger.info("exchange announced shutdown", extra={"feed": self.name})
                    conn.shutdown.set()
                else:
                    logger.info("exchange event", extra={"feed": self.name, "event": out.event})
        except ConnectionClosedOK:
            pass
        except ConnectionClosed as exc:
            logger.warning("exchange connection lost", extra={"feed": self.name, "error": repr(exc)})
        logger.info("exchange connection closed", extra={"feed": self.name, "code": conn.ws.close_code})

    async def _close(self, conn: _Connection) -> None:
        with contextlib.suppress(OSError, WebSocketException, TimeoutError):
            await conn.ws.close()
        await cancel_and_wait(conn.reader)


async def _wait(stop: asyncio.Event, seconds: float, also: asyncio.Task[None] | None = None) -> None:
    """Sleep `seconds`, ending early on `stop` (or when `also` ends)."""
    stopping = asyncio.ensure_future(stop.wait())
    try:
        waiters: set[asyncio.Future[Any]] = {stopping}
        if also is not None:
            waiters.add(also)
        await asyncio.wait(waiters, timeout=seconds)
    finally:
        await cancel_and_wait(stopping)
