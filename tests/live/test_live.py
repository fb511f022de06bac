"""Live updates end to end: a subscriber that joins while the simulator trades ends up, update by
update, with exactly what a fresh query of the same range answers."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from nats.aio.client import Client

from tests.harness import replay_pipeline, wait_for, wait_until_stored
from tradetape.api.methods.bars import BarsReply
from tradetape.api.methods.volume_profile import VolumeProfileReply
from tradetape.bus.subjects import bars_subject, profile_subject
from tradetape.client import TapeClient

pytestmark = pytest.mark.timeout(120)

TOTAL = 5000


@pytest.mark.slow
async def test_late_subscriber_accumulates_exactly_what_a_fresh_query_answers(nats_url: str, tmp_path: Path) -> None:
    # 100x real time: the file's 12 minutes of trades arrive over about 7 seconds.
    async with replay_pipeline(nats_url, tmp_path / "data", speed=100) as (_, running, client):
        tape = CountingClient(client)
        stored = await wait_for(lambda: _stored_at_least(tape, 500), 60, interval=0.05, running=running)
        start = int(time.time() * 1000) - 3_600_000
        end = int(time.time() * 1000) + 300_000  # 1 s bars: at most 4,000 seconds
        profiles: list[VolumeProfileReply] = []
        bars: list[BarsReply] = []

        async def follow(iterator: Any, into: list[Any]) -> None:
            async for reply in iterator:
                into.append(reply)

        tasks = [
            asyncio.create_task(follow(tape.live_profile("BTCUSDT", start=start, end=end, row_size="10"), profiles)),
            asyncio.create_task(follow(tape.live_bars("BTCUSDT", start=start, end=end), bars)),
        ]
        try:
            await wait_for(lambda: _true(bool(profiles and bars)), 30, interval=0.05)
            # A message of another run (as after a persist restart): both followers must join again.
            joins = tape.asked["coverage"]
            intruder = {"symbol": "BTCUSDT", "run": "intruder", "seq": 1, "batches": []}
            await client.publish(profile_subject("BTCUSDT"), orjson.dumps(intruder))
            await client.publish(bars_subject("BTCUSDT"), orjson.dumps({**intruder, "bars": []}))
            await wait_for(lambda: _true(tape.asked["coverage"] >= joins + 2), 30, interval=0.05)
            await wait_until_stored(client, "BTCUSDT", TOTAL, running=running)

            async def caught_up() -> bool:
                for task in tasks:
                    if task.done():
                        task.result()
                return bool(profiles and bars and profiles[-1].trade_count == TOTAL and bars[-1].trade_count == TOTAL)

            await wait_for(caught_up, 10, interval=0.05)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        assert stored < TOTAL
        assert profiles[0].trade_count < TOTAL, "the subscriber joined while trades were still arriving"
        assert len(profiles) >= 3 and len(bars) >= 3, "it received updates, not only the snapshot"
        # The live range is in whole seconds (updates come per 1-second window): ask for the same one.
        assert (profiles[-1].start, profiles[-1].end) == (start - start % 1000, end - end % 1000 + 1000)
        span = {"start": profiles[-1].start, "end": profiles[-1].end}
        fresh_profile = await tape.query("volume_profile", "BTCUSDT", **span, row_size="10", min_trades=0)
        assert profiles[-1] == fresh_profile
        fresh_bars = await tape.query("bars", "BTCUSDT", **span, interval="1s")
        assert bars[-1] == fresh_bars
        assert running.services["persist"].live.published["BTCUSDT"] >= 3


class CountingClient(TapeClient):
    """Counts the queries asked: every join asks `coverage` (the profile beside its snapshot, the bars before it)."""

    def __init__(self, nc: Client) -> None:
        super().__init__(nc)
        self.asked: Counter[str] = Counter()

    async def _ask(self, method: str, symbol: str, /, **fields: Any) -> tuple[Any, str | None]:
        self.asked[method] += 1
        return await super()._ask(method, symbol, **fields)


async def _true(value: bool) -> bool:
    return value


async def _stored_at_least(tape: TapeClient, count: int) -> int:
    stored: int = (await tape.query("coverage", "BTCUSDT")).trade_count
    return stored if stored >= count else 0
