"""Replay streams: an instrument's stored trades of a range, sent in chunks to the asker's inbox as it acks them.

Protocol: `tradetape.api.replay`. Each analytics worker serves `tape.replay.open.>` as an endpoint
(`replay`) of its micro service, in its shard's queue group, so `$SRV.INFO` lists it beside the query
methods (metadata `protocol: stream`: the request is answered by a stream of messages to its inbox,
not one reply) and `$SRV.STATS` counts its requests, errors and the time streams took. The shard an
instrument hashes to (`tradetape.settings.shard_of`) answers a request, the others drop it before micro
counts it (`replay_not_owned`), and the owner answers `unknown_symbol` for an instrument it does not
serve. The reply subject must be an inbox (`tradetape.bus.replies`).

Exact: the trades are read through the same `ShardReader.trades` as the `trades` method, so the
stream holds the same trades (voids left out, as the store keeps them apart), read hour by hour
(`PIECE_MS`, halved while a piece's trades would exceed `PIECE_BYTES`) and sent in `(time, agg id)`
order. The reads go through the query segment cache without filling it (`fill_cache=False`): a week
replayed uses the hours queries cached and leaves them there.

Answered: no chunk goes before the asker's first flow message, so a replay aimed at someone else's inbox sends
it nothing but the start (`Flow`).

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
from nats.errors import Error as NatsError
from nats.micro.request import Request

from tradetape.api.errors import (
    QueryError,
    check_range_span,
    internal_error,
    overloaded,
    range_too_large,
    store_corrupt,
)
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
from tradetape.bus.nats_internals import EndpointCounters
from tradetape.bus.replies import GuardedService
from tradetape.bus.subjects import REPLAY_OPEN_SUBJECTS, replay_flow_subject, replayed_instrument
from tradetape.domain.columns import TradeColumns
from tradetape.domain.symbols import SymbolError
from tradetape.errors import TradetapeError
from tradetape.ground.tasks import raise_if_cancelled
from tradetape.settings import Settings, shard_of
from tradetape.store import ReadBudget, ReadTooLargeError, ShardReader, StoreCorruptError

logger = logging.getLogger(__name__)

PIECE_MS = 3_600_000
"""A stream reads its range an hour at a time, aligned to the hour: the store's segments."""
PIECE_BYTES = 32 * 2**20
"""What one piece's trades may take, estimated before reading (a denser hour is read in halves)."""
PIECE_TRADE_BYTES = 64
"""Bytes a trade of a piece takes at peak: its 49 bytes of columns and a reorder's copy, rounded up."""
READ_THREADS = 2
ERROR_CODE_HEADER = "Nats-Service-Error-Code"
ENDPOINT = "replay"
ENDPOINT_METADATA = {"protocol": "stream", "spec": "tradetape.api.replay"}
"""What `$SRV.INFO` says of the endpoint: its request opens a stream of messages (the spec's module), not one reply."""


class StreamStopped(TradetapeError):
    """The client cancelled, or acked nothing for the idle timeout: the stream ends without an end message."""


class Flow:
    """A stream's credit: chunk `seq` may go while `seq - acked <= window`, once the asker answered the start. The
    event loop's only.

    The answer (any flow message) proves the asker reads the reply subject: only a reader of the start learns the
    flow subject. Without it a reader could aim a replay at another role's inbox (a monitor's, admin's) and have
    the worker push a window of chunks (up to ~31 MB) into a connection that never asked; now that inbox gets the
    start alone and the stream stops after the idle timeout.
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self.acked = -1
        self.sent = 0
        self.answered = False
        self.cancelled = False
        self.bad = 0
        self._changed = asyncio.Event()

    async def on_message(self, msg: Msg) -> None:
        flow = FlowMessage.parse(msg.data)
        if flow is None:
            self.bad += 1
            return
        self.answered = True
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
            if self.answered and seq - self.acked <= self.window:
                return
            self._changed.clear()
            try:
                async with asyncio.timeout(idle_timeout_s):
                    await self._changed.wait()
            except TimeoutError:
                waited_for = "ack" if self.answered else "answer to the start"
                raise StreamStopped(f"no {waited_for} for {idle_timeout_s:g}s") from None


class ReplayResponder:
    """The analytics worker's replay streams: `serve` adds the endpoint, `stop` ends every stream (safe twice)."""

    def __init__(self, settings: Settings, nc: Client, reader: ShardReader, serves: Callable[[str], bool]) -> None:
        self._settings = settings
        self._nc = nc
        self._reader = reader
        self._serves = serves
        self._threads = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="replay")
        self._stats = EndpointCounters(None)
        self._stopped = False
        self.streams: set[asyncio.Task[None]] = set()
        self.counts: Counter[str] = Counter()
        """`replay_not_owned`, `replay_overloaded`, `replay_abandoned`, `replay_bad_flow`: for the metrics."""

    async def serve(self, service: GuardedService) -> None:
        """Add the `replay` endpoint to the worker's micro service (its queue group, its reply guard)."""
        await service.add_endpoint(
            name=ENDPOINT,
            subject=REPLAY_OPEN_SUBJECTS,
            handler=self._on_request,
            metadata=ENDPOINT_METADATA,
            admit=self._admits,
        )
        self._stats = EndpointCounters(service.service)

    async def stop(self) -> None:
        """End every stream; requests that still arrive before the service stops are dropped."""
        self._stopped = True
        for task in list(self.streams):
            task.cancel()
        await asyncio.gather(*self.streams, return_exceptions=True)
        self._threads.shutdown(wait=False, cancel_futures=True)

    def _admits(self, msg: Msg) -> bool:
        """Whether this worker's shard owns the instrument asked (another shard answers it; micro never counts it)."""
        if self._stopped:
            return False
        try:
            instrument = replayed_instrument(msg.subject)
        except SymbolError:
            self.counts["replay_not_owned"] += 1
            return False
        count = self._settings.shard_count
        if count == 1 or shard_of(instrument, count) == self._settings.shard_index:
            return True
        self.counts["replay_not_owned"] += 1
        return False

    async def _on_request(self, request: Request) -> None:
        """Start the stream as a task and return: micro runs an endpoint's handler one request at a time."""
        instrument = replayed_instrument(request.subject)  # admitted: a valid instrument of this shard
        if not self._serves(instrument):
            await self._send_error(request, unknown_instrument(instrument))
            return
        if len(self.streams) >= self._settings.replay_max_streams:
            self.counts["replay_overloaded"] += 1
            await self._send_error(request, overloaded(len(self.streams)))
            return
        task = asyncio.create_task(self._stream(instrument, request), name=f"replay-{instrument}")
        self.streams.add(task)
        task.add_done_callback(self.streams.discard)

    async def _stream(self, instrument: str, reply: Request) -> None:
        """Every message of the stream goes to the request's inbox (`Request.respond`, once per message)."""
        began = time.perf_counter()
        try:
            request = ReplayRequest.parse(reply.data)
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
            await reply.respond(encode_start(ReplayStart(flow_subject, chunk, request.window, idle_ms)))
            async with contextlib.aclosing(self._pieces(instrument, request)) as pieces:
                async for piece in pieces:
                    for low in range(0, len(piece), chunk):
                        raise_if_cancelled()  # a publish waiting on its flush swallows a cancel (nats-py)
                        await flow.credit(flow.sent, self._settings.replay_idle_timeout_s)
                        part = piece.take(slice(low, low + chunk))
                        await reply.respond(encode_chunk(flow.sent, part))
                        flow.sent += 1
                        sent += len(part)
            await reply.respond(encode_end(ReplayEnd(flow.sent, sent)))
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
            self._stats.processed(REPLAY_OPEN_SUBJECTS, time.perf_counter() - began)
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
            return replay_order(self._reader.trades(instrument, (low, high), budget, fill_cache=False))

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
        check_range_span(request.start_ms, request.end_ms, self._settings.query_max_range_days)

    async def _send_error(self, reply: Request, exc: QueryError) -> None:
        """The error message that ends a stream, counted as the endpoint's error in `$SRV.STATS`."""
        self._stats.error(REPLAY_OPEN_SUBJECTS, exc.message)
        headers = {"Nats-Service-Error": " ".join(exc.message.split())[:200], ERROR_CODE_HEADER: str(exc.status)}
        try:
            await reply.respond(exc.reply().model_dump_json().encode(), headers=headers)
        except NatsError as error:
            logger.warning("replay error not sent", extra={"code": exc.code, "error": repr(error)})
