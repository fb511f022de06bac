"""`TapeClient.live_trades` with a slow consumer while large live messages keep coming: what the client holds for it
is bounded in bytes, not only in messages (persist's messages run up to a share of the max payload each)."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from pathlib import Path

import nats
import pytest

from tests.analytics.test_replay import HOUR_MS, SYMBOLS, answered, tape, write_store
from tests.harness import run_services, wait_for
from tradetape.bus.subjects import live_trades_subject
from tradetape.client import TapeClient
from tradetape.settings import Settings

pytestmark = pytest.mark.timeout(120)

FLOOD = 200
MESSAGE_BYTES = 500_000


@pytest.mark.slow
async def test_a_slow_live_trades_consumer_holds_a_bounded_number_of_bytes(nats_url: str, tmp_path: Path) -> None:
    now_ms = int(time.time() * 1000)
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=SYMBOLS)
    write_store(settings.shard_dir, {"BTCUSDT": tape(100, now_ms - HOUR_MS, 60_000, 3, 1)}, now_ms - 2 * HOUR_MS)
    async with (
        run_services(settings, "analytics") as running,
        await TapeClient.connect(url=nats_url, timeout=5) as client,
    ):
        await wait_for(lambda: answered(client, "BTCUSDT"), timeout=20, running=running)
        publisher = await nats.connect(nats_url)
        try:
            tracemalloc.start()
            try:
                async for _ in client.live_trades("BTCUSDT", start=now_ms - HOUR_MS):
                    # the snapshot's batch is in hand; the consumer is busy while (what stands for) persist
                    # announces large writes
                    tracemalloc.reset_peak()
                    before, _ = tracemalloc.get_traced_memory()
                    body = b"x" * MESSAGE_BYTES
                    for _ in range(FLOOD):
                        await publisher.publish(live_trades_subject("BTCUSDT"), body)
                    await publisher.flush()
                    await asyncio.sleep(3.0)
                    _, peak = tracemalloc.get_traced_memory()
                    break
            finally:
                tracemalloc.stop()
        finally:
            await publisher.close()
        held = peak - before
        assert held < 32 << 20, f"{held / 2**20:.0f} MB held for a slow live_trades consumer"
        running.check()
