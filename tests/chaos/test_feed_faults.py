"""Chaos: the exchange misbehaves and strangers publish poison, while the tape runs as processes.

One system, fuzzed queries all the while, and in turn, each followed by the invariant:
WebSocket faults (id gaps from dropped trades, duplicates, connections closed after N
trades, `serverShutdown` announcements, connections that go silent); REST faults while
trades are dropped so every gap needs REST (503s, 429s with Retry-After, 200s with an
HTML body, a REST endpoint lagging the stream); 10 % malformed frames with invalid values
besides; poison messages published into the trade subjects by a plain NATS client, which
persist must dead-letter, never store, and survive.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from nats.js import JetStreamContext

from tests.chaos.fuzz import QueryFuzzer
from tests.chaos.invariant import check_invariant
from tests.chaos.system import System
from tradetape.bus.subjects import DEADLETTER_STREAM, trade_subject
from tradetape.services.exchange.faults import FaultConfig

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(360)]

WS_FAULTS: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("id gaps and duplicates", {"drop_every": 40, "duplicate_every": 30}, "gap filled"),
    ("connections dropped every 400 trades", {"disconnect_after": 400}, "exchange connected"),
    ("serverShutdown after 400 trades", {"shutdown_after": 400, "shutdown_grace_s": 0.5}, "announced shutdown"),
    ("silent after 300 trades", {"silent_after": 300}, "keepalive ping timeout"),
)
"""Each WebSocket fault, and what ingest logs when it meets it: the fault holds until ingest has met it."""
REST_FAULTS: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("REST failing with 503", {"drop_every": 25, "rest_error": "503", "rest_error_calls": 4}, "HTTP 503"),
    ("REST 429, Retry-After", {"drop_every": 25, "rest_error": "429", "rest_error_calls": 2}, "rest throttled (429)"),
    ("REST answering HTML", {"drop_every": 25, "rest_error": "html", "rest_error_calls": 4}, "answer is not JSON"),
    ("REST lagging 2 s", {"drop_every": 25, "rest_error": "", "rest_lag_s": 2.0}, "short page"),
)
MET_S = 60.0
"""At most this long for ingest to meet a fault (measured: within seconds)."""
OFF: dict[str, Any] = {
    "drop_every": 0, "duplicate_every": 0, "disconnect_after": 0, "shutdown_after": 0, "silent_after": 0,
    "rest_error": "", "rest_error_calls": 0, "rest_lag_s": 0.0,
}


def poison(now_ms: int) -> list[bytes]:
    """Bodies a careless or hostile publisher might put on a trade subject; none of them is a trade."""
    good = {"a": 1, "p": "100.00000000", "q": "1.00000000", "f": 1, "l": 1, "T": now_ms, "m": False}
    broken: list[dict[str, Any]] = [
        {k: v for k, v in good.items() if k != "p"},
        {**good, "p": "abc"},
        {**good, "q": "1²"},
        {**good, "p": "0"},
        {**good, "a": -1},
        {**good, "a": 2**63},
        {**good, "T": now_ms // 1000},
        {**good, "m": "yes"},
        {**good, "f": 5, "l": 4},
        {**good, "p": 100.0},
    ]
    return [b"", b"not json", b"[]", b"null", b"\xff\xfe", b"{" * 10_000, *(orjson.dumps(b) for b in broken)]


async def deadletters(js: JetStreamContext, source: str) -> Counter[str]:
    info = await js.stream_info(DEADLETTER_STREAM, subjects_filter=f"tape.deadletter.{source}.>")
    return Counter(info.state.subjects or {})


async def invariant(system: System, scenario: str) -> None:
    assert system.settings is not None
    await check_invariant(system.nats, system.rest_url, system.settings.shard_dir, system.first_ids, scenario)


async def run_faults(system: System, faults: tuple[tuple[str, dict[str, Any], str], ...], scenario: str) -> None:
    """Each fault in turn, held until ingest logs that it met it (once more than before the fault), then healed."""
    for what, config, evidence in faults:
        before = system.log("ingest").count(evidence)
        in_force = await system.set_faults(**{**OFF, **config})
        changed = {k: v for k, v in dataclasses.asdict(in_force).items() if v != getattr(FaultConfig(), k)}
        began = time.monotonic()
        while system.log("ingest").count(evidence) == before:
            assert time.monotonic() - began < MET_S, f"[{scenario}] {what}: ingest never logged {evidence!r}"
            system.check_alive()
            await asyncio.sleep(0.2)
        print(f"[{scenario}] {what}: {changed}; ingest logged {evidence!r} after {time.monotonic() - began:.1f}s")
    system.check_alive()
    await system.heal()


async def test_exchange_faults_and_poison_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    async with System(tmp_path) as system:
        assert system.settings is not None
        js = system.nats.jetstream()
        async with QueryFuzzer(system.settings.nats_url or "", system.symbols) as fuzz:
            await run_faults(system, WS_FAULTS, "websocket faults")
            await invariant(system, "websocket faults")

            await run_faults(system, REST_FAULTS, "rest faults")
            await invariant(system, "rest faults")

            before = sum((await deadletters(js, "ingest")).values())
            await system.set_faults(malformed_every=10, invalid_every=20)
            await asyncio.sleep(4.0)
            await system.heal()
            await asyncio.sleep(1.0)
            after = sum((await deadletters(js, "ingest")).values())
            print(f"[malformed frames] 10 % malformed and 5 % invalid frames for 4 s: {after - before} dead-lettered")
            assert after - before >= 100, "about 1.2 bad frames in 8 trades over 4 s at 240/s must be dead-lettered"
            await invariant(system, "malformed frames")

            before_poison = await deadletters(js, "persist")
            publisher = await nats.connect(system.settings.nats_url or "", name="chaos-poison")
            try:
                pjs = publisher.jetstream()
                bodies = poison(int(time.time() * 1000))
                for symbol in system.symbols:
                    for body in bodies:
                        await pjs.publish(trade_subject(symbol), body)
            finally:
                await publisher.close()
            expected = {f"tape.deadletter.persist.{symbol}": len(bodies) for symbol in system.symbols}

            async def all_deadlettered() -> bool:
                now = await deadletters(js, "persist")
                return {s: now[s] - before_poison[s] for s in expected} == expected

            deadline = asyncio.get_running_loop().time() + 30
            while not await all_deadlettered():
                assert asyncio.get_running_loop().time() < deadline, await deadletters(js, "persist")
                await asyncio.sleep(0.5)
            print(f"[poison] {len(bodies)} poison bodies into each of {len(expected)} trade subjects: dead-lettered")
            await invariant(system, "poison")
            system.check_alive()
        fuzz.assert_sound()
