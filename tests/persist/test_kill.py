"""`kill -9` of a persist process mid-stream and mid-roll-up: after a restart the store equals the stream."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Awaitable
from pathlib import Path

import nats
import orjson
import pytest
from nats.js.errors import NotFoundError

from tests.harness import wait_for
from tests.processes import ServiceProcesses, service_env
from tradetape.bus.provision import ensure_streams
from tradetape.settings import Settings
from tradetape.store.codec import decode_windows
from tradetape.store.keys import SUMMARY, WINDOW, kind_prefix, prefix_end
from tradetape.store.reader import SecondaryStore
from tradetape.store.reads import read_all_trades, read_coverage
from tradetape.store.rocks import scan
from tradetape.store.segments import SegmentSummary

pytestmark = pytest.mark.timeout(120)

SYMBOL = "BTCUSDT"
TOTAL = 12_000


def stored_without_dedup(settings: Settings) -> tuple[int, list[int]]:
    """How many trades the segments and windows hold, counted raw (a duplicate would count twice)."""
    reader = SecondaryStore(settings.shard_dir)
    try:
        db = reader.catch_up()
        summaries = kind_prefix(SUMMARY, SYMBOL)
        windows = kind_prefix(WINDOW, SYMBOL)
        raw = sum(SegmentSummary.decode(v).trade_count for _, v in scan(db, summaries, prefix_end(summaries)))
        raw += sum(len(decode_windows([v])) for _, v in scan(db, windows, prefix_end(windows)))
        assert read_coverage(db, SYMBOL, None).gaps == []
        return raw, read_all_trades(db, SYMBOL).agg_id.tolist()
    finally:
        reader.close()


@pytest.mark.slow
async def test_killed_persist_restarts_with_every_agg_id_once(
    nats_url: str, tmp_path: Path, processes: ServiceProcesses
) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path / "data", symbols=(SYMBOL,), rollup_age_s=0.3)
    env = service_env(settings)
    client = await nats.connect(nats_url)
    js = client.jetstream()
    rng = random.Random(7)

    async def ack_floor() -> int:
        try:
            info = await js.consumer_info("TAPE_TRADES", "persist-main")
        except NotFoundError:  # the first persist has not bound its consumer yet
            return 0
        return info.ack_floor.stream_seq or 0

    try:
        await ensure_streams(js, settings)
        persist = processes.start(["persist"], env)
        floor = 0
        for agg_id in range(1, TOTAL + 1):
            now = int(time.time() * 1000)
            body = {"a": agg_id, "p": "87000.01", "q": "0.001", "f": agg_id, "l": agg_id, "T": now, "m": False}
            await js.publish_async(f"tape.trades.binance.{SYMBOL}", orjson.dumps(body))
            if agg_id % 500 == 0:
                await js.publish_async_completed()
                await asyncio.sleep(0.05)
            if agg_id % 3_000 == 0 and agg_id < TOTAL:
                await wait_for(lambda before=floor: _above(ack_floor(), before), timeout=60)  # this persist is writing
                await asyncio.sleep(rng.uniform(0.0, 0.5))  # land inside a write or a roll-up
                persist.send_signal(signal.SIGKILL)
                persist.wait(10)
                floor = await ack_floor()
                persist = processes.start(["persist"], env)
        await js.publish_async_completed()

        async def drained() -> bool:
            info = await js.consumer_info("TAPE_TRADES", "persist-main")
            return info.num_pending == 0 and info.num_ack_pending == 0

        await wait_for(lambda before=floor: _above(ack_floor(), before), timeout=60)

        await wait_for(drained, timeout=60)
        await asyncio.sleep(1.0)  # a last roll-up of the young windows
    finally:
        await client.close()
        processes.stop_all()
    raw, ids = stored_without_dedup(settings)
    assert raw == TOTAL
    assert ids == list(range(1, TOTAL + 1))


async def _above(current: Awaitable[int], floor: int) -> bool:
    return await current > floor
