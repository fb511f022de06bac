"""The ingest service: Binance combined aggTrade stream → JetStream, gap-free.

Per symbol it keeps the last agg id it handed to JetStream (read back from the stream
at start). An id below it is an overlap and skipped; an id beyond the next one is a
gap, filled from REST before the frame itself is published. After every (re)connect the
REST endpoint is asked for everything after the last id, with the WebSocket already
open, so no trade falls between the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import Any

import orjson
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException

from services.ingest.gapfill import AggTradesClient, GapFillError
from services.ingest.publisher import TradePublisher
from services.ingest.wire import (
    AggTradeFrame,
    ControlFrame,
    FrameError,
    combined_stream_url,
    parse_frame,
)
from tradetape.bus.codec import decode_trade, encode_trade
from tradetape.bus.provision import ensure_streams
from tradetape.bus.subjects import TRADES_STREAM, trade_subject
from tradetape.domain.trade import TradeFormatError, parse_trade
from tradetape.runtime.backoff import Backoff
from tradetape.runtime.logs import ProgressLog
from tradetape.runtime.tasks import cancel_and_wait
from tradetape.settings import Settings

logger = logging.getLogger(__name__)

HEALTHY_CONNECTION_S = 30.0
MAX_CONNECTION_AGE_S = 23.5 * 3600
STATS_INTERVAL_S = 10.0


class IngestService:
    def __init__(
        self,
        settings: Settings,
        nc: Client,
        *,
        max_connection_age: float = MAX_CONNECTION_AGE_S,
        stats_interval: float = STATS_INTERVAL_S,
    ) -> None:
        self._settings = settings
        self._nc = nc
        self._symbols = frozenset(settings.symbols)
        self._url = combined_stream_url(settings.binance_ws_url, settings.symbols)
        self._rest = AggTradesClient(settings.binance_rest_url)
        self._max_connection_age = max_connection_age
        self._stats_interval = stats_interval
        self._js: JetStreamContext = nc.jetstream(publish_async_max_pending=4000)
        self.publisher = TradePublisher(self._js)
        self.last_id: dict[str, int] = {}
        self.skipped: Counter[str] = Counter()
        self.backfilled: Counter[str] = Counter()
        self.unfilled: Counter[str] = Counter()
        self.connections = 0
        self._progress = ProgressLog(logger)

    async def run(self, stop: asyncio.Event) -> None:
        await ensure_streams(self._js, self._settings)
        await self.publisher.start()
        self.last_id = await self._last_published_ids()
        logger.info(
            "ingest started",
            extra={
                "symbols": ",".join(self._settings.symbols),
                "url": self._url,
                "resume_from": orjson.dumps(self.last_id).decode(),
            },
        )
        stats = asyncio.create_task(self._log_stats(stop), name="ingest-stats")
        try:
            await self._connect_forever(stop)
        finally:
            await self.publisher.close()
            await cancel_and_wait(stats)
            self._log_counts("ingest stopped", force=True)

    async def _connect_forever(self, stop: asyncio.Event) -> None:
        backoff = Backoff(1.0, 60.0)
        while not stop.is_set():
            opened = time.monotonic()
            try:
                async with connect(self._url, open_timeout=10, close_timeout=2, max_size=2**20, max_queue=4096) as ws:
                    self.connections += 1
                    logger.info("exchange connected", extra={"url": self._url, "connection": self.connections})
                    await self._catch_up()
                    await self._consume(ws, stop)
            except (OSError, TimeoutError, WebSocketException) as exc:
                if isinstance(exc, (InvalidURI, InvalidHandshake)) and not isinstance(exc, OSError):
                    logger.error("exchange refused the connection", extra={"url": self._url, "error": repr(exc)})
                else:
                    logger.warning("exchange connection lost", extra={"url": self._url, "error": repr(exc)})
            if stop.is_set():
                return
            if time.monotonic() - opened >= HEALTHY_CONNECTION_S:
                backoff.reset()
            delay = backoff.next_delay()
            logger.info("reconnecting", extra={"delay_s": round(delay, 2)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _consume(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        """Read frames until the connection ends, `stop` is set or the connection is due for rotation."""

        async def close_when_due() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._max_connection_age)
            if not stop.is_set():
                logger.info("rotating exchange connection", extra={"age_s": self._max_connection_age})
            await ws.close()

        closer = asyncio.create_task(close_when_due(), name="ingest-connection-closer")
        try:
            async for message in ws:
                if stop.is_set():
                    return  # frames still buffered are re-read from REST at the next start
                try:
                    frame = parse_frame(message, self._symbols)
                except FrameError as exc:
                    raw = message if isinstance(message, bytes) else message.encode()
                    await self.publisher.deadletter("ingest", exc.symbol, raw, exc.reason)
                    continue
                if isinstance(frame, ControlFrame):
                    logger.info("exchange event", extra={"event": frame.event})
                    if frame.event == "serverShutdown":
                        return
                    continue
                await self._accept(frame)
        finally:
            await cancel_and_wait(closer)

    async def _accept(self, frame: AggTradeFrame) -> None:
        symbol, agg_id = frame.symbol, frame.row.agg_id
        last = self.last_id.get(symbol)
        if last is not None:
            if agg_id <= last:
                self.skipped[symbol] += 1
                return
            if agg_id > last + 1:
                await self._fill(symbol, last + 1, agg_id - 1)
        await self.publisher.publish(symbol, agg_id, encode_trade(frame.data))
        self.last_id[symbol] = agg_id

    async def _catch_up(self) -> None:
        for symbol, last in list(self.last_id.items()):
            await self._fill(symbol, last + 1, None)

    async def _fill(self, symbol: str, from_id: int, to_id: int | None) -> None:
        """Publish the trades `from_id..to_id` (or up to the newest) from REST."""
        filled = 0
        try:
            async for page in self._rest.trades_from(symbol, from_id, to_id):
                for obj in page:
                    filled += await self._publish_rest_trade(symbol, obj)
        except GapFillError as exc:
            missing = (to_id - from_id + 1 - filled) if to_id is not None else None
            self.unfilled[symbol] += 1
            logger.error(
                "gap fill failed",
                extra={
                    "symbol": symbol,
                    "from_id": from_id,
                    "to_id": to_id,
                    "filled": filled,
                    "missing": missing,
                    "error": str(exc),
                },
            )
        if filled or to_id is not None:
            logger.info("gap filled", extra={"symbol": symbol, "from_id": from_id, "to_id": to_id, "trades": filled})

    async def _publish_rest_trade(self, symbol: str, obj: Any) -> int:
        try:
            row = parse_trade(obj)
        except TradeFormatError as exc:
            await self.publisher.deadletter("gapfill", symbol, encode_trade(obj), str(exc))
            return 0
        if row.agg_id <= self.last_id.get(symbol, -1):
            return 0
        await self.publisher.publish(symbol, row.agg_id, encode_trade(obj))
        self.last_id[symbol] = row.agg_id
        self.backfilled[symbol] += 1
        return 1

    async def _last_published_ids(self) -> dict[str, int]:
        last: dict[str, int] = {}
        for symbol in self._settings.symbols:
            try:
                msg = await self._js.get_last_msg(TRADES_STREAM, trade_subject(symbol))
            except NotFoundError:
                continue
            try:
                last[symbol] = decode_trade(msg.data or b"").agg_id
            except TradeFormatError as exc:
                logger.error("last stored trade unreadable", extra={"symbol": symbol, "error": str(exc)})
        return last

    async def _log_stats(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._stats_interval)
            self._log_counts("ingest progress")

    def _log_counts(self, event: str, *, force: bool = False) -> None:
        p = self.publisher
        for symbol in self._settings.symbols:
            counts: dict[str, object] = {
                "symbol": symbol,
                "stored": p.stored[symbol],
                "duplicates": p.duplicates[symbol],
                "skipped": self.skipped[symbol],
                "backfilled": self.backfilled[symbol],
                "unfilled_gaps": self.unfilled[symbol],
                "deadlettered": p.deadlettered[symbol],
                "retried": p.retried[symbol],
                "last_id": self.last_id.get(symbol),
            }
            self._progress.log(event, symbol, counts, force=force)
        if p.deadlettered["unknown"]:
            self._progress.log(event, "unknown", {"symbol": "unknown", "deadlettered": p.deadlettered["unknown"]})
