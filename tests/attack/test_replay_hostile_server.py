"""`TapeClient.replay` against a hostile worker: a plain NATS client answering `tape.replay.open.>` over a real
nats-server with forged streams. The client must refuse with a clear error (`TapeUnavailable`), keep its memory
bounded, and never hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable

import msgpack
import nats
import numpy as np
import pytest
from nats.aio.msg import Msg

from tradetape.api.replay.chunks import ReplayEnd, ReplayStart, encode_chunk, encode_end, encode_start
from tradetape.bus.subjects import REPLAY_FLOW_PREFIX, replay_subject
from tradetape.client import TapeClient, TapeUnavailable
from tradetape.domain.columns import TradeColumns

pytestmark = pytest.mark.timeout(90)

START = 1_750_000_000_000
END = START + 3_600_000
FLOW = f"{REPLAY_FLOW_PREFIX}.hostile"


def trades(count: int, first_time: int, first_id: int) -> TradeColumns:
    """`count` trades a millisecond apart from `first_time`, ids from `first_id`."""
    ids = np.arange(first_id, first_id + count, dtype=np.int64)
    times = np.arange(first_time, first_time + count, dtype=np.int64)
    units = np.full(count, 10**8, dtype=np.int64)
    return TradeColumns(ids, units, units, ids, ids, times, np.zeros(count, dtype=np.bool_))


Forger = Callable[[nats.NATS, Msg], Awaitable[None]]


@contextlib.asynccontextmanager
async def hostile_worker(nats_url: str, forge: Forger) -> AsyncIterator[list[asyncio.Task[None]]]:
    """A 'worker' answering every BTCUSDT replay request with `forge(nc, request)`, run as a task each."""
    nc = await nats.connect(nats_url)
    tasks: list[asyncio.Task[None]] = []

    async def on_request(msg: Msg) -> None:
        tasks.append(asyncio.create_task(forge(nc, msg)))

    await nc.subscribe(replay_subject("BTCUSDT"), cb=on_request)
    await nc.flush()
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await nc.close()


async def replayed(client: TapeClient, **fields: object) -> int:
    frames = [frame async for frame in client.replay("BTCUSDT", **{"start": START, "end": END, **fields})]
    return sum(len(frame) for frame in frames)


async def test_trades_outside_the_range_asked_are_refused(nats_url: str) -> None:
    async def outside(nc: nats.NATS, msg: Msg) -> None:
        await nc.publish(msg.reply, encode_start(ReplayStart(FLOW, 100, 8, 30_000)))
        await nc.publish(msg.reply, encode_chunk(0, trades(100, END, 1)))  # every trade at or after `end`
        await nc.publish(msg.reply, encode_end(ReplayEnd(1, 100)))

    async with hostile_worker(nats_url, outside), await TapeClient.connect(url=nats_url, timeout=2) as client:
        with pytest.raises(TapeUnavailable, match="outside"):
            await replayed(client, chunk=100)

    async def before(nc: nats.NATS, msg: Msg) -> None:
        await nc.publish(msg.reply, encode_start(ReplayStart(FLOW, 100, 8, 30_000)))
        await nc.publish(msg.reply, encode_chunk(0, trades(100, START - 50, 1)))  # half before `start`
        await nc.publish(msg.reply, encode_end(ReplayEnd(1, 100)))

    async with hostile_worker(nats_url, before), await TapeClient.connect(url=nats_url, timeout=2) as client:
        with pytest.raises(TapeUnavailable, match="outside"):
            await replayed(client, chunk=100)


@pytest.mark.slow
async def test_a_worker_that_never_starts_the_stream_is_unavailable_in_time(nats_url: str) -> None:
    async def silent(nc: nats.NATS, msg: Msg) -> None:
        await asyncio.sleep(3600)

    async with hostile_worker(nats_url, silent), await TapeClient.connect(url=nats_url, timeout=1) as client:
        began = time.monotonic()
        with pytest.raises(TapeUnavailable, match="BTCUSDT"):
            await replayed(client)
        assert time.monotonic() - began < 10


@pytest.mark.slow
async def test_a_worker_that_ignores_the_window_cannot_fill_the_clients_memory(nats_url: str) -> None:
    """Chunks pushed without credit (a forged flood, or a forger acking for the client) are held up to the window
    the client granted, not nats-py's 128 MB a subscription; the stream then breaks with a clear error."""
    chunk, flood = 1_000, 600  # 600 chunks of 49 KB: ~29 MB pushed at once

    async def flooding(nc: nats.NATS, msg: Msg) -> None:
        await nc.publish(msg.reply, encode_start(ReplayStart(FLOW, chunk, 2, 30_000)))
        for seq in range(flood):
            await nc.publish(msg.reply, encode_chunk(seq, trades(chunk, START + seq * chunk, 1 + seq * chunk)))
        await nc.flush()

    async with hostile_worker(nats_url, flooding), await TapeClient.connect(url=nats_url, timeout=2) as client:
        tracemalloc.start()
        try:
            with pytest.raises(TapeUnavailable):
                async for frame in client.replay("BTCUSDT", start=START, end=END, chunk=chunk, window=2):
                    if frame["agg_id"][0] == 1:
                        await asyncio.sleep(1.0)  # a slow consumer while the flood arrives
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 12 * 2**20, f"{peak / 2**20:.1f} MB held for a window of 2 chunks of 49 KB"


@pytest.mark.slow
async def test_a_tiny_idle_timeout_does_not_make_the_client_spin(nats_url: str) -> None:
    """A start claiming an idle timeout of 1 ms must not make the client publish keep-alives thousands of times
    a second."""
    flows: list[bytes] = []

    async def heard(flow: Msg) -> None:
        flows.append(flow.data)

    async def tiny(nc: nats.NATS, msg: Msg) -> None:
        await nc.subscribe(FLOW, cb=heard)
        await nc.flush()
        await nc.publish(msg.reply, encode_start(ReplayStart(FLOW, 100, 8, 1)))
        await nc.publish(msg.reply, encode_chunk(0, trades(100, START, 1)))
        await asyncio.sleep(3600)

    async with hostile_worker(nats_url, tiny), await TapeClient.connect(url=nats_url, timeout=1.5) as client:
        with pytest.raises(TapeUnavailable):
            async for _ in client.replay("BTCUSDT", start=START, end=END, chunk=100):
                await asyncio.sleep(1.0)
    assert 0 < len(flows) < 200, f"{len(flows)} flow messages"


def _chunk_with(seq: int, count: int, columns: list[bytes]) -> bytes:
    return msgpack.packb([1, seq, count, *columns])


GOOD = [np.arange(1, 11, dtype="<i8").tobytes()] * 6 + [bytes(10)]
FORGED = {
    "not msgpack": b"\xc1\xc1\xc1",
    "a map": msgpack.packb({"kind": 1}),
    "unknown kind": msgpack.packb([7, 0]),
    "short column": _chunk_with(0, 10, [*GOOD[:5], GOOD[5][:-8], GOOD[6]]),
    "bool byte 2": _chunk_with(0, 10, [*GOOD[:6], bytes([2]) * 10]),
    "more trades than the chunk": _chunk_with(0, 200, [b"\0" * 1600] * 6 + [bytes(200)]),
    "out of order": _chunk_with(0, 10, [GOOD[0], *GOOD[1:5], np.arange(10, 0, -1, dtype="<i8").tobytes(), GOOD[6]]),
    "oversized": b"\x00" * 600_000,
    "a second start": encode_start(ReplayStart(FLOW, 100, 8, 30_000)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FORGED))
async def test_a_forged_message_is_refused_with_a_clear_error(nats_url: str, name: str) -> None:
    async def forged(nc: nats.NATS, msg: Msg) -> None:
        await nc.publish(msg.reply, encode_start(ReplayStart(FLOW, 100, 8, 30_000)))
        await nc.publish(msg.reply, FORGED[name])

    async with hostile_worker(nats_url, forged), await TapeClient.connect(url=nats_url, timeout=2) as client:
        with pytest.raises(TapeUnavailable, match="BTCUSDT"):
            await replayed(client, chunk=100)


@pytest.mark.parametrize("flow", ["tape.trades.binance.BTCUSDT", f"{REPLAY_FLOW_PREFIX}.*", "_INBOX.x"])
async def test_a_start_naming_a_flow_subject_outside_the_replay_flows_is_refused(nats_url: str, flow: str) -> None:
    """The client would publish its acks there: a worker must not aim them at trades, wildcards or inboxes."""

    async def aiming(nc: nats.NATS, msg: Msg) -> None:
        await nc.publish(msg.reply, encode_start(ReplayStart(flow, 100, 8, 30_000)))

    async with hostile_worker(nats_url, aiming), await TapeClient.connect(url=nats_url, timeout=2) as client:
        with pytest.raises(TapeUnavailable, match="not what was asked"):
            await replayed(client, chunk=100)
