"""Chaos: processes die and NATS goes away while the exchange keeps trading.

One system (nats-server with a file store, the simulator trading four symbols, persist,
two analytics replicas, ingest, each its own process), fuzzed queries and a query flood
(`tests/chaos/flood.py`) all the while, and
in turn: `kill -9` of persist three times at random moments (roll-ups run every 250 ms,
so kills land inside writes and roll-ups) with a restart each time; `kill -9` of ingest,
restarted 2 s later; nats-server stopped and restarted on its port and file store. After
each, the invariant (`tests/chaos/invariant.py`).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from tests.chaos.flood import QueryFlood, complete_ranges
from tests.chaos.fuzz import QueryFuzzer
from tests.chaos.invariant import check_invariant, coverage
from tests.chaos.system import System

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


async def stored_count(system: System) -> int:
    replies = [await coverage(system.nats, symbol) for symbol in system.symbols]
    return sum(reply.get("trade_count", 0) for reply in replies)


async def invariant(system: System, scenario: str) -> None:
    assert system.settings is not None
    await check_invariant(system.nats, system.rest_url, system.settings.shard_dir, system.first_ids, scenario)


async def test_killed_services_and_a_restarted_nats_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    rng = random.Random(5)
    async with System(tmp_path) as system:
        assert system.settings is not None
        url = system.settings.nats_url or ""
        ranges = await complete_ranges(system.nats, system.symbols)
        async with QueryFuzzer(url, system.symbols) as fuzz, QueryFlood(url, ranges) as flood:
            for round_ in range(3):
                await asyncio.sleep(rng.uniform(0.5, 2.0))
                system.kill("persist")
                print(f"[kill persist] round {round_ + 1}: kill -9 persist, {await stored_count(system)} stored")
                await asyncio.sleep(rng.uniform(0.5, 1.5))
                system.start_service("persist")
            assert "persist started" in system.log("persist")
            await invariant(system, "kill persist")

            before = await stored_count(system)
            system.kill("ingest")
            await asyncio.sleep(2.0)
            print(f"[kill ingest] kill -9 ingest with {before} stored, 2 s of trading missed, restarted")
            system.start_service("ingest")
            await invariant(system, "kill ingest")
            assert "gap filled" in system.log("ingest"), system.log("ingest")[-3000:]

            before = await stored_count(system)
            await system.stop_nats()
            await asyncio.sleep(2.0)
            await system.start_nats()
            print(f"[nats restart] nats-server stopped for 2 s with {before} stored, restarted on its file store")
            await invariant(system, "nats restart")
            system.check_alive()
        fuzz.assert_sound()
        await flood.check(system.nats)
        system.check_alive()
