"""Pipelined JetStream publishing through NATS outages, every ack checked.

Trades (and dead letters) are handed over synchronously into a bounded in-memory
buffer, so reading the exchange never waits on NATS. A sender moves them into at most
`window` in-flight `publish_async` calls while the connection is up and pauses while it
is not; a confirmer takes the acks in order and reports each one (`on_ack`). A failed
or late ack (`ack_timeout`) puts the message back at the front, to be re-sent with the
same `Nats-Msg-Id`. When the buffer is full the oldest trade is dropped and reported
(`on_drop`) so the gap ledger can fetch it from REST later. A connection nats-py has
closed for good raises `NatsClosedError`: the process should end and be restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.client import Client
from nats.errors import ConnectionClosedError, MaxPayloadError, OutboundBufferLimitError
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck

from tradetape.bus.subjects import MSG_ID_HEADER, trade_msg_id, trade_subject

logger = logging.getLogger(__name__)

PAUSE_POLL_S = 0.05
WATCHDOG_INTERVAL_S = 0.5


class NatsClosedError(RuntimeError):
    """nats-py closed the connection for good; ingest cannot publish any more."""


@dataclass(slots=True)
class Outgoing:
    subject: str
    payload: bytes
    headers: dict[str, str]
    symbol: str
    agg_id: int
    """-1 for a dead letter."""


class Publisher:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        *,
        on_ack: Callable[[str, int, bool], None],
        on_drop: Callable[[str, int], None],
        window: int = 2000,
        buffer_max: int = 100_000,
        ack_timeout: float = 5.0,
    ) -> None:
        self._nc = nc
        self._js = js
        self._on_ack = on_ack
        self._on_drop = on_drop
        self._window = window
        self._buffer_max = buffer_max
        self._ack_timeout = ack_timeout
        self._buffer: deque[Outgoing] = deque()
        self._inflight: deque[tuple[Outgoing, asyncio.Future[PubAck], float]] = deque()
        self._has_work = asyncio.Event()
        self._has_inflight = asyncio.Event()
        self._room = asyncio.Event()
        self._drained = asyncio.Event()
        self._high_water = 2 * window
        self._subjects: dict[str, str] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.retried = 0
        self.dropped = 0
        self.deadletters_lost = 0
        self.paused = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    @property
    def pressure(self) -> float:
        """How full the buffer is, 0..1: the gap filler holds back above one half."""
        return len(self._buffer) / self._buffer_max

    @property
    def congested(self) -> bool:
        """NATS is up but slower than the exchange: the reader should wait (`wait_for_room`).

        While NATS is away the buffer takes everything instead, up to its cap.
        """
        return len(self._buffer) >= self._high_water and not self.paused

    async def wait_for_room(self) -> None:
        """Return once the buffer is down to half the high-water mark, or publishing paused."""
        while self.congested:
            self._drained.clear()
            await self._drained.wait()

    def submit_trade(self, symbol: str, agg_id: int, payload: bytes) -> None:
        subject = self._subjects.get(symbol)
        if subject is None:
            subject = self._subjects[symbol] = trade_subject(symbol)
        self._submit(Outgoing(subject, payload, {MSG_ID_HEADER: trade_msg_id(symbol, agg_id)}, symbol, agg_id))

    def submit(self, subject: str, payload: bytes, headers: dict[str, str], symbol: str) -> None:
        """Any other message (a dead letter): buffered and retried like a trade, not tracked."""
        self._submit(Outgoing(subject, payload, headers, symbol, -1))

    def _submit(self, item: Outgoing) -> None:
        buffer = self._buffer
        if len(buffer) >= self._buffer_max:
            self._drop_oldest()
        buffer.append(item)
        if self._idle.is_set():
            self._idle.clear()
        if not self._has_work.is_set():
            self._has_work.set()

    def _drop_oldest(self) -> None:
        old = self._buffer.popleft()
        self.dropped += 1
        if old.agg_id < 0:
            self.deadletters_lost += 1
        else:
            self._on_drop(old.symbol, old.agg_id)

    async def run(self) -> None:
        """Send and confirm until cancelled; raises `NatsClosedError` when NATS is gone for good."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._send_loop(), name="ingest-publish-send")
            group.create_task(self._confirm_loop(), name="ingest-publish-confirm")
            group.create_task(self._watchdog(), name="ingest-publish-watchdog")

    async def drain(self, timeout: float) -> int:
        """Wait (at most `timeout`) until everything handed over is acked; returns what is left."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        return len(self._buffer) + len(self._inflight)

    def _check_closed(self) -> None:
        if self._nc.is_closed:
            raise NatsClosedError("the NATS connection was closed for good; ingest exits so that it is restarted")

    async def _send_loop(self) -> None:
        buffer, inflight, js = self._buffer, self._inflight, self._js
        loop = asyncio.get_running_loop()
        while True:
            if not buffer:
                self._has_work.clear()
                if not inflight:
                    self._idle.set()
                await self._has_work.wait()
            self._check_closed()
            if not self._nc.is_connected:
                if not self.paused:
                    self.paused = True
                    self._drained.set()
                    logger.warning("nats unreachable, publishing paused", extra={"buffered": len(buffer)})
                await asyncio.sleep(PAUSE_POLL_S)
                continue
            if self.paused:
                self.paused = False
                logger.info("nats back, publishing resumed", extra={"buffered": len(buffer)})
            if len(inflight) >= self._window:
                self._room.clear()
                await self._room.wait()
                continue
            deadline = loop.time() + self._ack_timeout
            sent = 0
            while buffer and len(inflight) < self._window:
                item = buffer.popleft()
                try:
                    future = await js.publish_async(item.subject, item.payload, headers=item.headers)
                except (OutboundBufferLimitError, ConnectionClosedError) as exc:
                    buffer.appendleft(item)
                    self._check_closed()
                    logger.warning("publish not sent, will retry", extra={"error": repr(exc)})
                    await asyncio.sleep(PAUSE_POLL_S)
                    break
                except MaxPayloadError:
                    logger.error("message over the max payload dropped", extra={"subject": item.subject})
                    self.dropped += 1
                    if item.agg_id >= 0:
                        self._on_drop(item.symbol, item.agg_id)
                    continue
                inflight.append((item, future, deadline))
                sent += 1
            if len(buffer) <= self._high_water // 2 and not self._drained.is_set():
                self._drained.set()
            if sent:
                self._has_inflight.set()
            await asyncio.sleep(0)

    async def _confirm_loop(self) -> None:
        inflight, on_ack = self._inflight, self._on_ack
        while True:
            if not inflight:
                self._has_inflight.clear()
                if not self._buffer:
                    self._idle.set()
                await self._has_inflight.wait()
                continue
            item, future, _ = inflight[0]
            if not future.done():
                with contextlib.suppress(BaseException):
                    await asyncio.wait((future,))
                continue
            inflight.popleft()
            if not self._room.is_set():
                self._room.set()
            try:
                ack = future.result()
            except (NatsError, TimeoutError, asyncio.CancelledError) as exc:
                self.retried += 1
                self._retry(item, exc)
                continue
            if item.agg_id >= 0:
                on_ack(item.symbol, item.agg_id, bool(ack.duplicate))

    def _retry(self, item: Outgoing, exc: BaseException) -> None:
        if self.retried % 1000 == 1:
            logger.warning(
                "publish ack failed, re-sending",
                extra={"symbol": item.symbol, "error": repr(exc), "retried": self.retried},
            )
        self._buffer.appendleft(item)
        if len(self._buffer) > self._buffer_max:
            self._drop_oldest()
        self._idle.clear()
        self._has_work.set()

    async def _watchdog(self) -> None:
        """Fail acks that are late, so their messages are re-sent; and notice a closed connection."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            self._check_closed()
            now = loop.time()
            for _, future, deadline in self._inflight:
                if deadline > now:
                    break
                if not future.done():
                    future.set_exception(TimeoutError("no ack within the ack timeout"))
