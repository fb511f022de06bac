"""Replay streams: an instrument's stored trades of a range, sent in chunks to the asker's inbox as it acks them.

Protocol: `tradetape.api.replay`. Each analytics worker subscribes `tape.replay.open.>` in its shard's
queue group; the shard an instrument hashes to (`tradetape.settings.shard_of`) answers a request,
the others drop it (`replay_not_owned`), and the owner answers `unknown_symbol` for an instrument
it does not serve. The reply subject must be an inbox (`tradetape.bus.replies`).

Exact: the trades are read through the same `ShardReader.trades` as the `trades` method, so the
stream holds the same trades (voids left out, as the store keeps them apart), read hour by hour
(`PIECE_MS`, halved while a piece's trades would exceed `PIECE_BYTES`) and sent in `(time, agg id)`
order.

Bounded: at most `replay_max_streams` streams at once (more: `overloaded`); a stream holds the piece
it sends and the one read ahead (each within `PIECE_BYTES`) and at most `window` chunks beyond its
client's last ack; with its window full and no ack for `replay_idle_timeout_s`, or on the client's
cancel, it stops. A range longer than `query_max_range_days` is `range_too_large`; chunk and window
are capped by the request model and the chunk again by the connection's max payload. Pieces are read
in the responder's own `READ_THREADS` threads, so replays never hold up the query threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

from tradetape.api.errors import QueryError, internal_error, overloaded, range_too_large, store_corrupt
from tradetape.api.replay import FlowMessage, ReplayRequest, unknown_instrument
from tradetape.api.replay.chunks import (
    MESSAGE_OVERHEAD,
    TRADE_BYTES,
    ReplayEnd,
    ReplayStart,
    encode_chunk,
    encode_end,
    encode_start,
    replay_order,
)
from tradetape.bus.replies import ReplyGuard
from tradetape.bus.subjects import REPLAY_OPEN_SUBJECTS, analytics_queue_group, replay_flow_subject, replayed_instrument
from tradetape.domain.columns import TradeColumns
from tradetape.domain.symbols import SymbolError
from tradetape.errors import TradetapeError
from tradetape.settings import Settings, shard_of
from tradetape.store import ReadBudget, ReadTooLargeError, ShardReader, StoreCorruptError

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
PIECE_MS = 3_600_000
"""A stream reads its range an hour at a time, aligned to the hour: the store's segments."""
PIECE_BYTES = 32 * 2**20
"""What one piece's trades may take, estimated before reading (a denser hour is read in halves)."""
PIECE_TRADE_BYTES = 64
"""Bytes a trade of a piece takes at peak: its 49 bytes of columns and a reorder's copy, rounded up."""
READ_THREADS = 2
ERROR_CODE_HEADER = "Nats-Service-Error-Code"


class StreamStopped(TradetapeError):
    """The client cancelled, or acked nothing for the idle timeout: the stream ends without an end message."""


class Flow:
    """A stream's credit: chunk `seq` may go while `seq - acked <= window`. The event loop's only."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.acked = -1
        self.sent = 0
        self.cancelled = False
        self.bad = 0
        self._changed = asyncio.Event()

    async def on_message(self, msg: Msg) -> None:
        flow = FlowMessage.parse(msg.data)
        if flow is None:
            self.bad += 1
            return
        if flow.cancel:
            self.cancelled = True
        elif flow.ack is not None:
            self.acked = max(self.acked, min(flow.ack, self.sent - 1))  # an ack of chunks not sent gives no credit
        self._changed.set()

    async def credit(self, seq: int, idle_timeout_s: float) -> None:
        """Return once chunk `seq` may be sent; `StreamStopped` on a cancel or an idle timeout."""
        while True:
            if self.cancelled:
                raise StreamStopped("cancelled by the client")
            if seq - self.acked <= self.window:
                return
            self._changed.clear()
            try:
                async with asyncio.timeout(idle_timeout_s):
                    await self._changed.wait()
            except TimeoutError:
                raise StreamStopped(f"no ack for {idle_timeout_s:g}s") from None


class ReplayResponder:
    """The analytics worker's replay streams: `start` subscribes, `stop` ends every stream (safe twice)."""

    def __init__(
        self, settings: Settings, nc: Client, reader: ShardReader, guard: ReplyGuard, serves: Callable[[str], bool]
    ) -> None:
        self._settings = settings
        self._nc = nc
        self._reader = reader
        self._guard = guard
        self._serves = serves
        self._threads = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="replay")
        self._subscription: Subscription | None = None
        self.streams: set[asyncio.Task[None]] = set()
        self.counts: Counter[str] = Counter()
        """`replay_not_owned`, `replay_overloaded`, `replay_abandoned`, `replay_bad_flow`: for the metrics."""

    async def start(self) -> None:
        queue = analytics_queue_group(self._settings.shard)
        self._subscription = await self._nc.subscribe(
            REPLAY_OPEN_SUBJECTS, queue=queue, cb=self._guard.guarded(self._on_request)
        )

    async def stop(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            try:
                await subscription.unsubscribe()
            except NatsError as exc:
                logger.warning("replay subscription not removed", extra={"error": repr(exc)})
        for task in list(self.streams):
            task.cancel()
        await asyncio.gather(*self.streams, return_exceptions=True)
        self._threads.shutdown(wait=False, cancel_futures=True)

    def _owns(self, instrument: str) -> bool:
        count = self._settings.shard_count
        return count == 1 or shard_of(instrument, count) == self._settings.shard_index

    async def _on_request(self, msg: Msg) -> None:
        """Start the stream as a task and return: a subscription's callback runs one message at a time."""
        try:
            instrument = replayed_instrument(msg.subject)
        except SymbolError:
            self.counts["replay_not_owned"] += 1
            return
        if not self._owns(instrument):
            self.counts["replay_not_owned"] += 1
            return
        assert msg.reply  # the guard admits only messages with an inbox to answer
        if not self._serves(instrument):
            await self._send_error(msg.reply, unknown_instrument(instrument))
            return
        if len(self.streams) >= self._settings.replay_max_streams:
            self.counts["replay_overloaded"] += 1
            await self._send_error(msg.reply, overloaded(len(self.streams)))
            return
        task = asyncio.create_task(self._stream(instrument, msg.reply, msg.data), name=f"replay-{instrument}")
        self.streams.add(task)
        task.add_done_callback(self.streams.discard)

    async def _stream(self, instrument: str, reply: str, data: bytes) -> None:
        began = time.perf_counter()
        try:
            request = ReplayRequest.parse(data)
            self._check_range(request)
        except QueryError as exc:
            await self._send_error(reply, exc)
            return
        chunk = max(1, min(request.chunk, (self._nc.max_payload - MESSAGE_OVERHEAD) // TRADE_BYTES))
        flow = Flow(request.window)
        flow_subject = replay_flow_subject(secrets.token_hex(11))
        subscription = await self._nc.subscribe(flow_subject, cb=flow.on_message)
        sent = 0
        try:
            idle_ms = int(self._settings.replay_idle_timeout_s * 1000)
            await self._nc.publish(reply, encode_start(ReplayStart(flow_subject, chunk, request.window, idle_ms)))
            async with contextlib.aclosing(self._pieces(instrument, request)) as pieces:
                async for piece in pieces:
                    for low in range(0, len(piece), chunk):
                        await flow.credit(flow.sent, self._settings.replay_idle_timeout_s)
                        part = piece.take(slice(low, low + chunk))
                        await self._nc.publish(reply, encode_chunk(flow.sent, part))
                        flow.sent += 1
                        sent += len(part)
            await self._nc.publish(reply, encode_end(ReplayEnd(flow.sent, sent)))
            seconds = round(time.perf_counter() - began, 3)
            logger.info("replay sent", extra={"symbol": instrument, "trades": sent, "chunks": flow.sent, "s": seconds})
        except StreamStopped as exc:
            self.counts["replay_abandoned"] += 1
            logger.info("replay stopped", extra={"symbol": instrument, "trades": sent, "reason": str(exc)})
        except QueryError as exc:
            await self._send_error(reply, exc)
        except NatsError as exc:
            logger.warning("replay not sent", extra={"symbol": instrument, "error": repr(exc)})
        except Exception as exc:  # the one boundary: a failed stream is an error message, never a dead worker
            logger.exception("replay failed", extra={"symbol": instrument})
            await self._send_error(reply, internal_error(exc))
        finally:
            self.counts["replay_bad_flow"] += flow.bad
            with contextlib.suppress(NatsError):
                await subscription.unsubscribe()

    async def _pieces(self, instrument: str, request: ReplayRequest) -> AsyncGenerator[TradeColumns, None]:
        """The range's trades piece by piece, in `(time, agg id)` order, the next piece read while one is sent."""
        start, end = request.start_ms, request.end_ms
        bounds = [start, *range(start - start % PIECE_MS + PIECE_MS, end, PIECE_MS), end]
        ranges = deque(zip(bounds, bounds[1:], strict=False))
        loop = asyncio.get_running_loop()
        budget = ReadBudget(PIECE_BYTES, PIECE_TRADE_BYTES)

        def read(low: int, high: int) -> TradeColumns:
            return replay_order(self._reader.trades(instrument, (low, high), budget))

        reading = loop.run_in_executor(self._threads, read, *ranges[0])
        try:
            while True:
                try:
                    piece = await reading
                except ReadTooLargeError as exc:
                    low, high = ranges.popleft()
                    if high - low <= 1:
                        message = f"one millisecond of {instrument} holds {exc.trades} trades, more than a piece"
                        raise range_too_large(message, trades=exc.trades) from None
                    middle = (low + high) // 2
                    ranges.extendleft([(middle, high), (low, middle)])
                    reading = loop.run_in_executor(self._threads, read, *ranges[0])
                    continue
                except StoreCorruptError as exc:
                    raise store_corrupt(exc.key.decode(errors="replace"), exc.reason) from exc
                low, _ = ranges.popleft()
                if ranges:
                    reading = loop.run_in_executor(self._threads, read, *ranges[0])
                if request.after_id is not None and low == start:
                    piece = piece.take(~((piece.time == start) & (piece.agg_id <= request.after_id)))
                if len(piece):
                    yield piece
                if not ranges:
                    return
        finally:
            if not reading.done():
                reading.cancel()

    def _check_range(self, request: ReplayRequest) -> None:
        days = (request.end_ms - request.start_ms) / DAY_MS
        if days > self._settings.query_max_range_days:
            raise range_too_large(
                f"the range spans {days:.1f} days; at most {self._settings.query_max_range_days:g} are allowed",
                start=request.start_ms,
                end=request.end_ms,
                max_days=self._settings.query_max_range_days,
            )

    async def _send_error(self, reply: str, exc: QueryError) -> None:
        headers = {"Nats-Service-Error": " ".join(exc.message.split())[:200], ERROR_CODE_HEADER: str(exc.status)}
        try:
            await self._nc.publish(reply, exc.reply().model_dump_json().encode(), headers=headers)
        except NatsError as error:
            logger.warning("replay error not sent", extra={"code": exc.code, "error": repr(error)})
