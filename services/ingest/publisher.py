"""Pipelined JetStream publishing through NATS outages, every ack checked.

Trades (and dead letters) are handed over synchronously into a bounded in-memory
buffer, so reading the exchange never waits on NATS. A sender moves them into at most
`window` in flight while the connection is up and pauses while it is not; a confirmer
takes the acks in order and reports each one (`on_ack`). A failed or late ack
(`ack_timeout`) puts the message back at the front, to be re-sent with the same
`Nats-Msg-Id`. When the buffer is full the oldest trade is dropped and reported
(`on_drop`) so the gap ledger can fetch it from REST later. A connection nats-py has
closed for good raises `NatsClosedError`: the process should end and be restarted.

Why not nats-py's `publish_async`: measured with py-spy under `bench/ingest.py`, a
third of ingest's time went to its per-message machinery (a random inbox token, a
future and a semaphore wait per message, acks parsed with the stdlib and a dataclass).
A JetStream publish is a plain publish with a reply subject, so the publisher sends
each message with `nc.publish` to one wildcard ack inbox of its own, numbered by a
counter, and matches the acks (parsed with orjson) to what is in flight: no slot can
leak, and an ack for a message already given up (re-sent under a new number) is ignored.

No wait lasts longer than `POLL_S` without looking at the connection again: closing the
connection leaves acks unanswered for ever, so the confirmer bounds each by its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, MaxPayloadError, OutboundBufferLimitError
from nats.errors import Error as NatsError

from tradetape.bus.subjects import MSG_ID_HEADER, trade_msg_id, trade_subject
from tradetape.runtime.tasks import wait_event

logger = logging.getLogger(__name__)

PAUSE_POLL_S = 0.05
POLL_S = 0.25
"""The longest the send and confirm loops wait before they look at the connection again."""


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
        self._buffer_max = buffer_max
        self._ack_timeout = ack_timeout
        self._buffer: deque[Outgoing] = deque()
        self._inflight: dict[int, tuple[Outgoing, float]] = {}
        """By ack number: the message and its ack deadline."""
        self._order: deque[int] = deque()
        """The ack numbers in flight, oldest first (a dict emptied from the front iterates slowly)."""
        self._acks: dict[int, bytes] = {}
        """Ack bodies received for messages still in flight, by ack number."""
        self._sent = 0
        self._ack_prefix = ""
        self._has_work = asyncio.Event()
        self._has_inflight = asyncio.Event()
        self._has_ack = asyncio.Event()
        self._room = asyncio.Event()
        self._drained = asyncio.Event()
        self._high_water = 2 * window
        self._subjects: dict[str, str] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.retried = 0
        self.dropped = 0
        self.deadletters_lost = 0
        self.stale_acks = 0
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
        inbox = self._nc.new_inbox()
        self._ack_prefix = inbox + "."
        acks = await self._nc.subscribe(inbox + ".*", cb=self._on_ack_message)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._send_loop(), name="ingest-publish-send")
                group.create_task(self._confirm_loop(), name="ingest-publish-confirm")
        finally:
            with contextlib.suppress(NatsError):
                await acks.unsubscribe()

    async def _on_ack_message(self, msg: Msg) -> None:
        number = msg.subject[len(self._ack_prefix) :]
        if not number.isdecimal() or int(number) not in self._inflight:
            self.stale_acks += 1  # the message was given up and re-sent under a new number
            return
        self._acks[int(number)] = msg.data
        if not self._has_ack.is_set():
            self._has_ack.set()

    async def drain(self, timeout: float) -> int:
        """Wait (at most `timeout`) until everything handed over is acked; returns what is left."""
        await wait_event(self._idle, timeout)
        return len(self._buffer) + len(self._inflight)

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
        buffer, inflight, nc, prefix = self._buffer, self._inflight, self._nc, self._ack_prefix
        deadline = asyncio.get_running_loop().time() + self._ack_timeout
        sent = 0
        while buffer and len(inflight) < self._window and nc.is_connected:
            item = buffer.popleft()
            if len(item.payload) > nc.max_payload:
                logger.error("message over the max payload dropped", extra={"subject": item.subject})
                self._drop(item)
                continue
            self._sent += 1
            try:
                await nc.publish(item.subject, item.payload, reply=f"{prefix}{self._sent}", headers=item.headers)
            except (OutboundBufferLimitError, ConnectionClosedError) as exc:
                buffer.appendleft(item)
                raise_if_closed(nc)
                logger.warning("publish not sent, will retry", extra={"error": repr(exc)})
                break
            except MaxPayloadError:
                logger.error("message over the max payload dropped", extra={"subject": item.subject})
                self._drop(item)
                continue
            inflight[self._sent] = (item, deadline)
            self._order.append(self._sent)
            sent += 1
        return sent

    async def _confirm_loop(self) -> None:
        inflight, order, acks, on_ack = self._inflight, self._order, self._acks, self._on_ack
        loop = asyncio.get_running_loop()
        while True:
            raise_if_closed(self._nc)
            if not inflight:
                self._has_inflight.clear()
                self._note_idle()
                await wait_event(self._has_inflight, POLL_S)
                continue
            number = order[0]
            item, deadline = inflight[number]
            body = acks.pop(number, None)
            if body is None:
                left = deadline - loop.time()
                if left > 0:
                    self._has_ack.clear()
                    await wait_event(self._has_ack, min(left, POLL_S))
                    continue
                error: str | None = "no ack within the ack timeout"
                duplicate = False
            else:
                error, duplicate = read_ack(body)
            del inflight[number]
            order.popleft()
            if not self._room.is_set():
                self._room.set()
            if error is not None:
                self.retried += 1
                self._retry(item, error)
            elif item.agg_id >= 0:
                on_ack(item.symbol, item.agg_id, duplicate)

    def _retry(self, item: Outgoing, error: str) -> None:
        if self.retried % 1000 == 1:
            logger.warning(
                "publish ack failed, re-sending", extra={"symbol": item.symbol, "error": error, "retried": self.retried}
            )
        self._buffer.appendleft(item)
        if len(self._buffer) > self._buffer_max:
            self._drop_oldest()
        self._idle.clear()
        self._has_work.set()


def read_ack(body: bytes) -> tuple[str | None, bool]:
    """A JetStream publish reply: (why the message was not stored, or None; whether it was a duplicate).

    An empty body is a status message (503: no stream takes the subject); an error is
    JetStream's refusal (a full stream, say); both are retried like a lost ack.
    """
    if not body:
        return "no stream answered (no responders)", False
    try:
        ack = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"unreadable ack {body[:80]!r}", False
    if not isinstance(ack, dict) or "error" in ack or "seq" not in ack:
        refusal = ack.get("error") if isinstance(ack, dict) else ack
        return f"jetstream refused the message: {refusal!r}"[:200], False
    return None, ack.get("duplicate") is True
