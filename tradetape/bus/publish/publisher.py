"""Pipelined JetStream publishing through NATS outages, every trade confirmed.

Trades (and dead letters) are handed over synchronously into a bounded in-memory
buffer, so reading the exchange never waits on NATS. A sender moves them into flight
while the connection is up and pauses while it is not; each confirmed trade is reported
(`on_ack`). When the buffer is full the oldest trade is dropped and reported (`on_drop`)
so the gap ledger can fetch it from REST later. A connection nats-py has closed for good
raises `NatsClosedError`: the process should end and be restarted.

Trades go in fast-ingest batches (ADR-50, `tradetape.bus.publish.fast_batch`): the server acks
every few hundred messages, so the per-trade work is the publish alone. A batch is
closed after `COMMIT_IDLE_S` without new trades, which confirms its tail; it ends early
when a message is lost or refused, when the connection was re-established, or when an
answer does not come within `ack_timeout`, and its unconfirmed trades are sent again in
a new batch under the same `Nats-Msg-Id`. Against a server or stream without batches
(the first answer tells), and for dead letters (another stream), each message gets its
own ack instead: sent with `nc.publish` to a numbered reply subject under one wildcard
inbox, matched oldest first (`tradetape.bus.publish.numbered_acks`), and re-sent on an
error, an unreadable ack or a timeout. The batched trades of a send round go to nats-py
as one buffer append (`tradetape.bus.publish.bulk`).

Why not nats-py's `publish_async`: measured with py-spy under `bench/ingest.py`, a
third of ingest's time went to its per-message machinery (a random inbox token, a
future and a semaphore wait per message, acks parsed with the stdlib and a dataclass);
the acks alone, even matched cheaply, were a quarter. `bench/ingest.py` prints both raw
ceilings beside ingest.

No wait lasts longer than `POLL_S` without looking at the connection again: closing the
connection leaves acks unanswered for ever, so every answer is bounded by its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, MaxPayloadError, OutboundBufferLimitError
from nats.errors import Error as NatsError

from tradetape.bus.publish.bulk import BulkPublish
from tradetape.bus.publish.fast_batch import (
    BATCH_NOT_ENABLED,
    SUFFIX,
    FastBatch,
    Op,
    ReplyKind,
    read_batch_reply,
    reply_base,
    reply_subject,
)
from tradetape.bus.publish.numbered_acks import NumberedAcks, read_ack
from tradetape.bus.publish.pending import Outgoing, Pending
from tradetape.bus.subjects import MSG_ID_HEADER, trade_msg_id, trade_subject
from tradetape.errors import BusError
from tradetape.ground.backoff import Backoff
from tradetape.ground.tasks import raise_if_cancelled, wait_event

logger = logging.getLogger(__name__)

PAUSE_POLL_S = 0.05
POLL_S = 0.25
"""The longest the send and confirm loops wait before they look at the connection again."""
COMMIT_IDLE_S = 0.005
"""A batch is closed (its tail confirmed) once no trade came for this long."""


class NatsClosedError(BusError, RuntimeError):
    """nats-py closed the connection for good; ingest cannot publish any more."""


def raise_if_closed(nc: Client) -> None:
    """Raise `NatsClosedError` if nats-py has closed `nc` for good."""
    if nc.is_closed:
        raise NatsClosedError("the NATS connection was closed for good; ingest exits so that it is restarted")


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
        batches: bool = True,
    ) -> None:
        self._nc = nc
        self._on_ack = on_ack
        self._window = window
        self._ack_timeout = ack_timeout
        self._pending = Pending(buffer_max, on_drop)
        self._buffer = self._pending.items
        self._single: NumberedAcks[Outgoing] = NumberedAcks()
        """Messages sent with an ack each (dead letters; every message without batches)."""
        self._inbox = ""
        self._ack_prefix = ""
        self.batching = batches
        """Trades go in fast-ingest batches; False once the server showed it has none."""
        self._batch: FastBatch[Outgoing] | None = None
        self._bulk = BulkPublish(nc)
        self._batch_backoff = Backoff(0.05, 2.0)
        self._batch_not_before = 0.0
        self._reconnects = 0
        self._has_work = asyncio.Event()
        self._has_inflight = asyncio.Event()
        self._has_ack = asyncio.Event()
        self._room = asyncio.Event()
        self._drained = asyncio.Event()
        self._high_water = 2 * window
        self._subjects: dict[str, str] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.batches = 0
        self._stale_batch_replies = 0
        self.paused = False

    @property
    def retried(self) -> int:
        """Messages sent again after no (or a failed) confirmation."""
        return self._pending.retried

    @property
    def dropped(self) -> int:
        return self._pending.dropped

    @property
    def deadletters_lost(self) -> int:
        return self._pending.deadletters_lost

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def in_flight(self) -> int:
        return len(self._single) + (len(self._batch.items) if self._batch is not None else 0)

    @property
    def batch_open(self) -> bool:
        """A fast-ingest batch is open: trades handed over now join it (even once all it holds is confirmed)."""
        return self._batch is not None

    @property
    def stale_acks(self) -> int:
        """Answers for messages or batches already given up."""
        return self._single.stale + self._stale_batch_replies

    @property
    def pressure(self) -> float:
        """How full the buffer is, 0..1: the gap filler holds back above one half."""
        return len(self._buffer) / self._pending.max_items

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
        self._submit(Outgoing(subject, payload, trade_msg_id(symbol, agg_id), None, symbol, agg_id))

    def submit(self, subject: str, payload: bytes, headers: dict[str, str], symbol: str) -> None:
        """Any other message (a dead letter): buffered and retried like a trade, sent with an ack each."""
        self._submit(Outgoing(subject, payload, "", headers, symbol, -1))

    def _submit(self, item: Outgoing) -> None:
        self._pending.add(item)
        if self._idle.is_set():
            self._idle.clear()
        if not self._has_work.is_set():
            self._has_work.set()

    async def run(self) -> None:
        """Send and confirm until cancelled; raises `NatsClosedError` when NATS is gone for good."""
        self._inbox = self._nc.new_inbox()
        self._ack_prefix = self._inbox + "."
        self._reconnects = self._nc.stats["reconnects"]
        acks = await self._nc.subscribe(self._inbox + ".>", cb=self._on_reply)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._send_loop(), name="ingest-publish-send")
                group.create_task(self._confirm_loop(), name="ingest-publish-confirm")
        finally:
            with contextlib.suppress(NatsError):
                await acks.unsubscribe()

    async def drain(self, timeout: float) -> int:
        """Wait (at most `timeout`) until everything handed over is confirmed; returns what is left."""
        await wait_event(self._idle, timeout)
        return len(self._buffer) + self.in_flight

    def _note_idle(self) -> None:
        if not self._buffer and not self._single and (self._batch is None or not self._batch.items):
            self._idle.set()

    # -- sending ----------------------------------------------------------------------

    async def _send_loop(self) -> None:
        buffer, nc = self._buffer, self._nc
        while True:
            raise_if_cancelled()
            raise_if_closed(nc)
            if not buffer:
                self._has_work.clear()
                self._note_idle()
                batch = self._batch
                # Closed only once the server answered its first message: a server without
                # batches would store the empty closing message as a trade.
                if batch is not None and batch.flow and not batch.committing and not batch.failed and nc.is_connected:
                    if not await wait_event(self._has_work, COMMIT_IDLE_S):
                        await self._commit(batch)
                    continue
                await wait_event(self._has_work, POLL_S)
                continue
            if not nc.is_connected:
                if not self.paused:
                    self.paused = True
                    self._drained.set()
                    logger.warning("nats unreachable, publishing paused", extra={"buffered": len(buffer)})
                await asyncio.sleep(PAUSE_POLL_S)
                continue
            if self.paused:
                self.paused = False
                logger.info("nats back, publishing resumed", extra={"buffered": len(buffer)})
            if nc.stats["reconnects"] != self._reconnects:
                self._reconnects = nc.stats["reconnects"]
                if self._batch is not None:  # what was in flight over the old connection may be lost
                    self._end_batch(self._batch, "the connection was re-established", retry_now=True)
            self._room.clear()
            sent = await self._send_some()
            if len(buffer) <= self._high_water // 2 and not self._drained.is_set():
                self._drained.set()
            if sent:
                self._has_inflight.set()
                await asyncio.sleep(0)
            else:
                await wait_event(self._room, min(POLL_S, max(self._batch_not_before - self._now(), PAUSE_POLL_S)))

    async def _send_some(self) -> int:
        """Move buffered messages into flight, in order, while their lane has room; returns how many."""
        buffer, single, nc, bulk = self._buffer, self._single, self._nc, self._bulk
        now = self._now()
        deadline = now + self._ack_timeout
        sent = 0
        batch = self._batch
        room = batch.room() if batch is not None else 0
        while buffer and nc.is_connected:
            item = buffer[0]
            batched = self.batching and item.agg_id >= 0
            if batched and room <= 0:
                if batch is not None or now < self._batch_not_before:
                    break
                batch = self._open_batch()
                room = batch.room()
            elif not batched and len(single) >= self._window:
                break
            buffer.popleft()
            if len(item.payload) > nc.max_payload:
                logger.error("message over the max payload dropped", extra={"subject": item.subject})
                self._pending.drop(item)
                continue
            if batched:
                assert batch is not None
                bulk.add(
                    item.subject, reply_subject(batch.base, batch.sent + 1, batch.next_op()), item.msg_id, item.payload
                )
                batch.sent_one(item, now)
                batch.subject = item.subject
                room -= 1
                sent += 1
                continue
            await bulk.flush()
            number = single.next_number()
            headers = item.headers if item.headers is not None else {MSG_ID_HEADER: item.msg_id}
            try:
                await nc.publish(item.subject, item.payload, reply=f"{self._ack_prefix}{number}", headers=headers)
            except (OutboundBufferLimitError, ConnectionClosedError) as exc:
                buffer.appendleft(item)
                raise_if_closed(nc)
                logger.warning("publish not sent, will retry", extra={"error": repr(exc)})
                break
            except MaxPayloadError:
                logger.error("message over the max payload dropped", extra={"subject": item.subject})
                self._pending.drop(item)
                continue
            single.sent(number, item, deadline)
            sent += 1
        await bulk.flush()
        return sent

    def _open_batch(self) -> FastBatch[Outgoing]:
        self.batches += 1
        batch_id = f"{self._inbox.rpartition('.')[2]}-{self.batches}"
        self._batch = FastBatch(batch_id, reply_base(self._inbox, batch_id))
        return self._batch

    async def _commit(self, batch: FastBatch[Outgoing]) -> None:
        """Close the batch: an empty, unstored last message; the server's pub ack confirms the tail."""
        if not batch.sent:
            self._batch = None
            return
        seq = batch.commit(self._now())
        try:
            await self._nc.publish(batch.subject, b"", reply=reply_subject(batch.base, seq, Op.COMMIT_EOB))
        except (OutboundBufferLimitError, ConnectionClosedError) as exc:
            raise_if_closed(self._nc)
            self._end_batch(batch, f"closing the batch failed: {exc!r}", retry_now=True)

    # -- confirming -------------------------------------------------------------------

    async def _on_reply(self, msg: Msg) -> None:
        rest = msg.subject[len(self._ack_prefix) :]
        if rest.endswith(SUFFIX):
            self._on_batch_reply(rest[: rest.find(".")], msg.data)
            return
        if self._single.answered(rest, msg.data) and not self._has_ack.is_set():
            self._has_ack.set()

    def _on_batch_reply(self, batch_id: str, body: bytes) -> None:
        batch = self._batch
        if batch is None or batch_id != batch.id:
            self._stale_batch_replies += 1  # a batch already ended (its later messages are answered as unknown)
            return
        reply = read_batch_reply(body)
        now = self._now()
        kind = reply.kind
        if kind is ReplyKind.FLOW:
            first = not batch.flow
            self._confirm(batch.flow_ack(reply.seq, reply.flow, now), False)
            self._batch_backoff.reset()
            self._room.set()
            if first:
                self._has_work.set()  # a sender idle since the first message may close the batch now
        elif kind is ReplyKind.END:
            if not reply.batched:
                self._stop_batching("the server answered a batch like a single publish (no fast-ingest batches)")
            self._confirm(batch.confirm(reply.seq, now), reply.duplicate)
            self._end_batch(batch, batch.failed, retry_now=not batch.failed)
        elif kind is ReplyKind.REFUSED:
            if reply.error_code == BATCH_NOT_ENABLED:
                self._stop_batching(reply.error)
            self._end_batch(batch, reply.error, retry_now=reply.error_code == BATCH_NOT_ENABLED)
        else:  # a gap or a refused message: in gap mode `fail` the server closes the batch next
            batch.failed = batch.failed or reply.error or f"message {reply.seq} of the batch was lost"
        self._note_idle()

    def _confirm(self, items: list[Outgoing], duplicate: bool) -> None:
        on_ack = self._on_ack
        for item in items:
            on_ack(item.symbol, item.agg_id, duplicate)

    def _end_batch(self, batch: FastBatch[Outgoing], error: str, *, retry_now: bool) -> None:
        """Forget the batch; its unconfirmed trades go back to the front, to be sent in the next one."""
        self._batch = None
        left = batch.items
        if left:
            self._give_back(left)
        if error and not retry_now:
            self._batch_not_before = self._now() + self._batch_backoff.next_delay()
        if error or left:
            logger.warning(
                "publish batch ended early, re-sending",
                extra={"error": (error or "the server ended it")[:200], "unconfirmed": len(left)},
            )
        self._room.set()

    def _stop_batching(self, reason: str) -> None:
        if self.batching:
            self.batching = False
            logger.warning("fast-ingest batches unavailable, publishing with an ack each", extra={"reason": reason})

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _confirm_loop(self) -> None:
        single, on_ack = self._single, self._on_ack
        loop = asyncio.get_running_loop()
        while True:
            raise_if_cancelled()
            raise_if_closed(self._nc)
            batch = self._batch
            if (
                batch is not None
                and batch.waiting_since is not None
                and (loop.time() - batch.waiting_since > self._ack_timeout)
            ):
                self._end_batch(batch, "no answer within the ack timeout", retry_now=True)
            oldest = single.oldest()
            if oldest is None:
                self._has_inflight.clear()
                self._note_idle()
                await wait_event(self._has_inflight, POLL_S)
                continue
            item, deadline, body = oldest
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
            single.settle_oldest()
            self._room.set()
            if error is not None:
                self._retry(item, error)
            elif item.agg_id >= 0:
                on_ack(item.symbol, item.agg_id, duplicate)

    def _retry(self, item: Outgoing, error: str) -> None:
        if self.retried % 1000 == 0:
            logger.warning(
                "publish ack failed, re-sending",
                extra={"symbol": item.symbol, "error": error, "retried": self.retried + 1},
            )
        self._give_back((item,))

    def _give_back(self, items: Sequence[Outgoing]) -> None:
        """Unconfirmed messages back to the front of the buffer, in order, to be sent again."""
        self._pending.give_back(items)
        self._idle.clear()
        self._has_work.set()
