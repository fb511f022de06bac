"""Pipelined JetStream publishing through NATS outages, every ack checked.

Trades (and dead letters) are handed over synchronously into a bounded in-memory
buffer, so reading the exchange never waits on NATS. A sender moves them into at most
`window` in-flight `publish_async` calls while the connection is up and pauses while it
is not; a confirmer takes the acks in order and reports each one (`on_ack`). A failed
or late ack (`ack_timeout`) puts the message back at the front, to be re-sent with the
same `Nats-Msg-Id`. When the buffer is full the oldest trade is dropped and reported
(`on_drop`) so the gap ledger can fetch it from REST later. A connection nats-py has
closed for good raises `NatsClosedError`: the process should end and be restarted.

No wait lasts longer than `POLL_S` without looking at the connection again: nats-py's
ack futures have no timeout of their own, and closing the connection leaves them
pending for ever, so the confirmer bounds each one by its deadline itself. The
publisher keeps its own JetStream context, because a `publish_async` that fails after
taking a slot of the client's window (`publish_async_max_pending`) never gives it back:
messages that cannot succeed (over the max payload, no connection) are never offered,
and a window found exhausted by such slots is replaced by a fresh context.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.client import Client
from nats.errors import ConnectionClosedError, MaxPayloadError, OutboundBufferLimitError
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import TooManyStalledMsgsError

from tradetape.bus.subjects import MSG_ID_HEADER, trade_msg_id, trade_subject
from tradetape.runtime.tasks import wait_event

logger = logging.getLogger(__name__)

PAUSE_POLL_S = 0.05
POLL_S = 0.25
"""The longest the send and confirm loops wait before they look at the connection again."""
STALL_S = 1.0
"""`wait_stall` for a slot of the client's window, used only when the window may be short."""
SLOT_HEADROOM = 500
"""The client's window is this much wider than the publisher's, so a slot is always free."""


class NatsClosedError(RuntimeError):
    """nats-py closed the connection for good; ingest cannot publish any more."""


def raise_if_closed(nc: Client) -> None:
    """Raise `NatsClosedError` if nats-py has closed `nc` for good."""
    if nc.is_closed:
        raise NatsClosedError("the NATS connection was closed for good; ingest exits so that it is restarted")


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
        *,
        on_ack: Callable[[str, int, bool], None],
        on_drop: Callable[[str, int], None],
        window: int = 2000,
        buffer_max: int = 100_000,
        ack_timeout: float = 5.0,
    ) -> None:
        self._nc = nc
        self._on_ack = on_ack
        self._on_drop = on_drop
        self._window = window
        self._js = self._new_context()
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
        self.stalls = 0
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
            await wait_event(self._drained, POLL_S)

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
        self._drop(self._buffer.popleft())

    def _drop(self, item: Outgoing) -> None:
        self.dropped += 1
        if item.agg_id < 0:
            self.deadletters_lost += 1
        else:
            self._on_drop(item.symbol, item.agg_id)

    async def run(self) -> None:
        """Send and confirm until cancelled; raises `NatsClosedError` when NATS is gone for good."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._send_loop(), name="ingest-publish-send")
            group.create_task(self._confirm_loop(), name="ingest-publish-confirm")

    async def drain(self, timeout: float) -> int:
        """Wait (at most `timeout`) until everything handed over is acked; returns what is left."""
        await wait_event(self._idle, timeout)
        return len(self._buffer) + len(self._inflight)

    def _new_context(self) -> JetStreamContext:
        return self._nc.jetstream(publish_async_max_pending=self._window + SLOT_HEADROOM)

    def _note_idle(self) -> None:
        if not self._buffer and not self._inflight:
            self._idle.set()

    async def _send_loop(self) -> None:
        buffer, inflight = self._buffer, self._inflight
        while True:
            raise_if_closed(self._nc)
            if not buffer:
                self._has_work.clear()
                self._note_idle()
                await wait_event(self._has_work, POLL_S)
                continue
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
                await wait_event(self._room, POLL_S)
                continue
            sent = await self._send_some()
            if len(buffer) <= self._high_water // 2 and not self._drained.is_set():
                self._drained.set()
            if sent:
                self._has_inflight.set()
            await asyncio.sleep(0 if sent else PAUSE_POLL_S)

    async def _send_some(self) -> int:
        """Move buffered messages into flight while there is room and a connection; returns how many."""
        buffer, inflight, nc = self._buffer, self._inflight, self._nc
        deadline = asyncio.get_running_loop().time() + self._ack_timeout
        sent = 0
        while buffer and len(inflight) < self._window and nc.is_connected:
            item = buffer.popleft()
            if len(item.payload) > nc.max_payload:
                logger.error("message over the max payload dropped", extra={"subject": item.subject})
                self._drop(item)
                continue
            js = self._js
            # Below the publisher's window a slot of the client's is free, and the call must not
            # yield (a `wait_stall` costs a task per message); at or above it, slots were lost.
            stall = None if js.publish_async_pending() < self._window else STALL_S
            try:
                future = await js.publish_async(item.subject, item.payload, wait_stall=stall, headers=item.headers)
            except TooManyStalledMsgsError:
                buffer.appendleft(item)
                self._stalled(js)
                break
            except (OutboundBufferLimitError, ConnectionClosedError) as exc:
                buffer.appendleft(item)
                raise_if_closed(nc)
                logger.warning("publish not sent, will retry", extra={"error": repr(exc)})
                break
            except MaxPayloadError:
                logger.error("message over the max payload dropped", extra={"subject": item.subject})
                self._drop(item)
                continue
            inflight.append((item, future, deadline))
            sent += 1
        return sent

    def _stalled(self, js: JetStreamContext) -> None:
        """No slot of the client's window came free within `STALL_S`: replace the context whose slots leaked.

        nats-py turns a cancellation during that wait into `TooManyStalledMsgsError`; it is
        turned back here.
        """
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        self.stalls += 1
        if js is self._js:
            logger.error(
                "publish window of the nats client exhausted by lost slots, using a fresh one",
                extra={"client_pending": js.publish_async_pending(), "in_flight": len(self._inflight)},
            )
            self._js = self._new_context()

    async def _confirm_loop(self) -> None:
        inflight, on_ack = self._inflight, self._on_ack
        loop = asyncio.get_running_loop()
        while True:
            raise_if_closed(self._nc)
            if not inflight:
                self._has_inflight.clear()
                self._note_idle()
                await wait_event(self._has_inflight, POLL_S)
                continue
            item, future, deadline = inflight[0]
            if not future.done():
                left = deadline - loop.time()
                if left > 0:
                    await asyncio.wait((future,), timeout=min(left, POLL_S))
                    continue
                future.set_exception(TimeoutError("no ack within the ack timeout"))
            inflight.popleft()
            if not self._room.is_set():
                self._room.set()
            error = _ack_error(future)
            if error is not None:
                self.retried += 1
                self._retry(item, error)
                continue
            if item.agg_id >= 0:
                on_ack(item.symbol, item.agg_id, bool(future.result().duplicate))

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


def _ack_error(future: asyncio.Future[PubAck]) -> BaseException | None:
    """Why a done ack future failed (to be re-sent), None for an ack; an unexpected error is raised."""
    if future.cancelled():
        return asyncio.CancelledError("the ack future was cancelled")
    error = future.exception()
    if error is None or isinstance(error, (NatsError, TimeoutError)):
        return error
    raise error
