"""The publisher against a real nats-server: batches and single acks that never come, late or refused.

Each runs the publisher in an isolated loop (`tests.isolated`), so a wait that never
ends or an ignored cancellation fails the test within its bounds instead of hanging pytest.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, StreamConfig

from tests.isolated import LoopThread, ended, isolated_loop
from tradetape.bus.publish.numbered_acks import read_ack
from tradetape.bus.publish.publisher import NatsClosedError, Publisher
from tradetape.bus.subjects import MSG_ID_HEADER, trade_msg_id, trade_subject

pytestmark = pytest.mark.timeout(60)

SYMBOL = "PUBUSDT"
SILENT_SUBJECT = "silent.x"
"""A core subscriber listens here and never replies: a JetStream ack for it never comes."""


@dataclass
class Acks:
    acked: Counter[int] = field(default_factory=Counter)
    duplicates: int = 0
    dropped: list[int] = field(default_factory=list)

    def on_ack(self, symbol: str, agg_id: int, duplicate: bool) -> None:
        self.acked[agg_id] += 1
        self.duplicates += duplicate

    def on_drop(self, symbol: str, agg_id: int) -> None:
        self.dropped.append(agg_id)


@dataclass
class Running:
    loop: LoopThread
    nc: Client
    publisher: Publisher
    acks: Acks
    task: asyncio.Task[None]


@asynccontextmanager
async def publishing(nats_url: str, stream: StreamConfig | None = None, **options: float) -> AsyncIterator[Running]:
    """A publisher running in an isolated loop, with a stream for SYMBOL and a silent subscriber."""
    async with isolated_loop() as loop:

        async def start() -> tuple[Client, Publisher, Acks]:
            nc = await nats.connect(nats_url)
            await nc.subscribe(SILENT_SUBJECT)
            await nc.jetstream().add_stream(stream or batched_stream())
            acks = Acks()
            window = int(options.pop("window", 10))
            batches = bool(options.pop("batches", True))
            publisher = Publisher(
                nc, on_ack=acks.on_ack, on_drop=acks.on_drop, window=window, batches=batches, **options
            )
            return nc, publisher, acks

        nc, publisher, acks = await loop.call(start(), 10)
        task = await loop.spawn(publisher.run())
        try:
            yield Running(loop, nc, publisher, acks, task)
        finally:
            loop.cancel(task)
            await loop.call(nc.close(), 5)


def batched_stream(**config: object) -> StreamConfig:
    return StreamConfig(name="PUB", subjects=[trade_subject(SYMBOL)], allow_batched=True, **config)  # type: ignore[arg-type]


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.02)


def submit(running: Running, ids: range, payload: bytes = b"{}") -> None:
    def hand_over() -> None:
        for agg_id in ids:
            running.publisher.submit_trade(SYMBOL, agg_id, payload)

    running.loop.loop.call_soon_threadsafe(hand_over)


def submit_silent(running: Running, count: int) -> None:
    def hand_over() -> None:
        for _ in range(count):
            running.publisher.submit(SILENT_SUBJECT, b"x", {}, SYMBOL)

    running.loop.loop.call_soon_threadsafe(hand_over)


async def test_a_connection_closed_with_acks_outstanding_ends_run(nats_url: str) -> None:
    async with publishing(nats_url, ack_timeout=60) as running:
        submit_silent(running, 5)
        await until(lambda: running.publisher.in_flight == 5, 5, "5 publishes in flight")
        await running.loop.call(running.nc.close(), 5)
        assert await ended(running.task, 2), "run did not end within 2 s of the connection closing"
        error = running.task.exception()
        assert isinstance(error, BaseExceptionGroup) and error.subgroup(NatsClosedError) is not None


async def test_cancelling_run_with_acks_outstanding_is_prompt(nats_url: str) -> None:
    async with publishing(nats_url, ack_timeout=60) as running:
        submit_silent(running, 5)
        await until(lambda: running.publisher.in_flight == 5, 5, "5 publishes in flight")
        running.loop.cancel(running.task)
        assert await ended(running.task, 2), "run did not end within 2 s of its cancellation"
        assert running.task.cancelled()


@pytest.mark.slow
async def test_lost_acks_are_resent_under_the_same_msg_id(nats_url: str) -> None:
    async with publishing(nats_url, window=64, ack_timeout=0.3, batches=False) as running:
        js = running.nc.jetstream()
        config = StreamConfig(name="PUB", subjects=[trade_subject(SYMBOL)], no_ack=True)
        await running.loop.call(js.update_stream(config), 5)  # stores, but answers nothing
        submit(running, range(50))
        await until(lambda: running.publisher.retried >= 50, 10, "every publish re-sent after its ack timed out")
        assert not running.acks.acked
        config.no_ack = False
        await running.loop.call(js.update_stream(config), 5)
        await until(lambda: len(running.acks.acked) == 50, 10, "all 50 acked")
        assert set(running.acks.acked) == set(range(50)) and max(running.acks.acked.values()) == 1
        assert running.acks.duplicates == 50, "the first publish was stored; its re-sends were deduplicated"
        info = await running.loop.call(js.stream_info("PUB"), 5)
        assert info.state.messages == 50


async def test_oversized_messages_never_take_a_window_slot(nats_url: str) -> None:
    async with publishing(nats_url, window=2) as running:
        oversized = b"x" * (running.nc.max_payload + 1)
        submit(running, range(600), oversized)  # more than the client window's headroom of 500
        submit(running, range(600, 610))
        await until(lambda: len(running.acks.acked) == 10, 10, "the 10 small trades acked")
        assert sorted(running.acks.dropped) == list(range(600))


@pytest.mark.slow
async def test_acks_are_matched_by_number_late_and_refused_ones_never_confirm(nats_url: str) -> None:
    """A core responder stands in for JetStream on a subject no stream takes, answering as told."""
    late_symbol = "LATEUSDT"
    answers: list[bytes | None] = []  # per request: the reply body, or None for "answer after 0.5 s"
    async with publishing(nats_url, window=8, ack_timeout=0.3, batches=False) as running:

        async def respond(msg: nats.aio.msg.Msg) -> None:
            body = answers.pop(0) if answers else b'{"stream": "PUB", "seq": 1}'
            if body is None:
                await asyncio.sleep(0.5)
                body = b'{"stream": "PUB", "seq": 1}'
            await running.nc.publish(msg.reply, body)

        await running.loop.call(running.nc.subscribe(trade_subject(late_symbol), cb=respond), 5)
        answers += [None, b'{"error": {"code": 503, "description": "maximum bytes exceeded"}}', b"<html>"]
        running.loop.loop.call_soon_threadsafe(running.publisher.submit_trade, late_symbol, 7, b"{}")
        await until(lambda: running.acks.acked[7] == 1, 10, "the trade acked once")
        await asyncio.sleep(0.6)  # the late answer to the first send arrives, long given up
        assert running.publisher.retried == 3, "timed out, refused, unreadable: three re-sends"
        assert running.publisher.stale_acks == 1
        assert running.acks.acked == Counter({7: 1}) and running.acks.duplicates == 0


async def stored(running: Running) -> int:
    info = await running.loop.call(running.nc.jetstream().stream_info("PUB"), 5)
    return int(info.state.messages)


async def test_trades_go_in_batches_each_confirmed_once(nats_url: str) -> None:
    async with publishing(nats_url) as running:
        submit(running, range(5000))
        await until(lambda: len(running.acks.acked) == 5000, 20, "all 5,000 confirmed")
        assert max(running.acks.acked.values()) == 1 and not running.acks.dropped
        assert running.publisher.batching and running.publisher.retried == 0
        assert running.publisher.batches <= 3, "one long batch, not one per loop turn"
        assert await stored(running) == 5000
        # A flow ack can confirm the whole burst before the idle batch is closed: trades handed over then
        # would rightly join it; the trickle below is meant for a batch of its own.
        await until(lambda: not running.publisher.batch_open, 5, "the burst's batch closed once idle")
        assert running.publisher.in_flight == 0, "the closed batch leaves nothing in flight"
        submit(running, range(5000, 5003))  # a trickle after the burst: a short batch, its tail confirmed
        await until(lambda: len(running.acks.acked) == 5003, 1, "the 3 late trades confirmed by closing the batch")
        assert running.publisher.batches >= 2


@pytest.mark.slow
async def test_a_batch_never_answered_is_sent_again_in_a_new_one(nats_url: str) -> None:
    quiet_symbol = "QUIETUSDT"
    async with publishing(nats_url, ack_timeout=0.3) as running:
        await running.loop.call(running.nc.subscribe(trade_subject(quiet_symbol)), 5)  # takes it, answers nothing
        hand_over = running.publisher.submit_trade
        for agg_id in range(50):
            running.loop.loop.call_soon_threadsafe(hand_over, quiet_symbol, agg_id, b"{}")
        await until(lambda: running.publisher.batches >= 3, 10, "batches given up after their timeout")
        assert not running.acks.acked and running.publisher.batching
        stream = StreamConfig(name="QUIET", subjects=[trade_subject(quiet_symbol)], allow_batched=True)
        await running.loop.call(running.nc.jetstream().add_stream(stream), 5)
        await until(lambda: len(running.acks.acked) == 50, 10, "all 50 confirmed once a stream answers")
        assert max(running.acks.acked.values()) == 1 and running.publisher.retried >= 2


async def test_trades_stored_before_are_confirmed_and_not_stored_again(nats_url: str) -> None:
    """After a lost answer the same trades come again: the stream's `Nats-Msg-Id` check skips them."""
    async with publishing(nats_url) as running:
        js = running.nc.jetstream()
        for agg_id in [*range(0, 100), *range(150, 160)]:
            headers = {MSG_ID_HEADER: trade_msg_id(SYMBOL, agg_id)}
            await running.loop.call(js.publish(trade_subject(SYMBOL), b"{}", headers=headers), 5)
        submit(running, range(200))
        await until(lambda: len(running.acks.acked) == 200, 10, "all 200 confirmed")
        assert max(running.acks.acked.values()) == 1 and running.publisher.retried == 0
        assert await stored(running) == 200


async def test_a_full_stream_ends_the_batch_and_confirms_only_what_it_stored(nats_url: str) -> None:
    full = batched_stream(max_msgs=100, discard=DiscardPolicy.NEW)
    async with publishing(nats_url, stream=full) as running:
        submit(running, range(300))
        await until(lambda: running.publisher.retried >= 200, 10, "the refused trades handed back")
        await asyncio.sleep(0.3)
        assert set(running.acks.acked) == set(range(100)), "the first 100 stored, nothing refused confirmed"
        await running.loop.call(running.nc.jetstream().update_stream(batched_stream(discard=DiscardPolicy.NEW)), 5)
        await until(lambda: len(running.acks.acked) == 300, 10, "the rest confirmed once there is room")
        assert max(running.acks.acked.values()) == 1 and await stored(running) == 300


async def test_a_stream_without_batches_gets_an_ack_a_message(nats_url: str) -> None:
    plain = StreamConfig(name="PUB", subjects=[trade_subject(SYMBOL)])
    async with publishing(nats_url, stream=plain) as running:
        submit(running, range(200))
        await until(lambda: len(running.acks.acked) == 200, 10, "all 200 confirmed")
        assert not running.publisher.batching and max(running.acks.acked.values()) == 1
        assert await stored(running) == 200


async def test_a_server_that_answers_a_batch_like_one_publish_gets_an_ack_a_message(nats_url: str) -> None:
    """A server before 2.14 ignores the batch in the reply subject and acks each message on its own."""
    old_symbol = "OLDUSDT"
    async with publishing(nats_url) as running:

        async def respond(msg: nats.aio.msg.Msg) -> None:
            await running.nc.publish(msg.reply, b'{"stream": "OLD", "seq": 1}')

        await running.loop.call(running.nc.subscribe(trade_subject(old_symbol), cb=respond), 5)
        running.loop.loop.call_soon_threadsafe(running.publisher.submit_trade, old_symbol, 1, b"{}")
        await until(lambda: running.acks.acked[1] == 1, 5, "the first trade confirmed by the plain ack")
        assert not running.publisher.batching
        for agg_id in (2, 3):
            running.loop.loop.call_soon_threadsafe(running.publisher.submit_trade, old_symbol, agg_id, b"{}")
        await until(lambda: len(running.acks.acked) == 3, 5, "later trades confirmed one ack each")


def test_read_ack_tells_stored_duplicate_and_refused_apart() -> None:
    assert read_ack(b'{"stream": "S", "seq": 5}') == (None, False)
    assert read_ack(b'{"stream": "S", "seq": 5, "duplicate": true}') == (None, True)
    for body in (b"", b"[1]", b'{"stream": "S"}', b"\xff", b'{"error": {"code": 503}}'):
        error, duplicate = read_ack(body)
        assert error and not duplicate, body
