"""The publisher against a real nats-server: acks that never come, a closed connection, lost window slots.

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

from services.ingest.publisher import NatsClosedError, Publisher
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


async def test_a_window_exhausted_by_lost_slots_is_replaced(nats_url: str) -> None:
    async with publishing(nats_url, window=2) as running:
        js = running.publisher._js  # the very client window the publisher uses

        async def lose_slots() -> None:
            for _ in range(502):
                with pytest.raises(nats.errors.MaxPayloadError):
                    await js.publish_async(trade_subject(SYMBOL), b"x" * (running.nc.max_payload + 1))

        await running.loop.call(lose_slots(), 5)
        submit(running, range(10))
        await until(lambda: len(running.acks.acked) == 10, 10, "10 trades acked after the lost slots")
        assert running.publisher.stalls >= 1
