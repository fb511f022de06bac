"""The publisher against a real nats-server: acks that never come, late or refused, a closed connection.

Each runs the publisher in an isolated loop (`tests.ingest.isolated`), so a wait that never
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
from nats.js.api import StreamConfig

from services.ingest.publisher import NatsClosedError, Publisher, read_ack
from tests.ingest.isolated import LoopThread, ended, isolated_loop
from tradetape.bus.subjects import trade_subject

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
async def publishing(nats_url: str, **options: float) -> AsyncIterator[Running]:
    """A publisher running in an isolated loop, with a stream for SYMBOL and a silent subscriber."""
    async with isolated_loop() as loop:

        async def start() -> tuple[Client, Publisher, Acks]:
            nc = await nats.connect(nats_url)
            await nc.subscribe(SILENT_SUBJECT)
            await nc.jetstream().add_stream(StreamConfig(name="PUB", subjects=[trade_subject(SYMBOL)]))
            acks = Acks()
            window = int(options.pop("window", 10))
            publisher = Publisher(nc, on_ack=acks.on_ack, on_drop=acks.on_drop, window=window, **options)
            return nc, publisher, acks

        nc, publisher, acks = await loop.call(start(), 10)
        task = await loop.spawn(publisher.run())
        try:
            yield Running(loop, nc, publisher, acks, task)
        finally:
            loop.cancel(task)
            await loop.call(nc.close(), 5)


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


async def test_lost_acks_are_resent_under_the_same_msg_id(nats_url: str) -> None:
    async with publishing(nats_url, window=64, ack_timeout=0.3) as running:
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


async def test_acks_are_matched_by_number_late_and_refused_ones_never_confirm(nats_url: str) -> None:
    """A core responder stands in for JetStream on a subject no stream takes, answering as told."""
    late_symbol = "LATEUSDT"
    answers: list[bytes | None] = []  # per request: the reply body, or None for "answer after 0.5 s"
    async with publishing(nats_url, window=8, ack_timeout=0.3) as running:

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


def test_read_ack_tells_stored_duplicate_and_refused_apart() -> None:
    assert read_ack(b'{"stream": "S", "seq": 5}') == (None, False)
    assert read_ack(b'{"stream": "S", "seq": 5, "duplicate": true}') == (None, True)
    for body in (b"", b"[1]", b'{"stream": "S"}', b"\xff", b'{"error": {"code": 503}}'):
        error, duplicate = read_ack(body)
        assert error and not duplicate, body
