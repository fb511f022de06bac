"""Chaos: persist's volume fills up mid-stream, then space comes back.

Persist's data directory is a small tmpfs (mounting needs root; skipped with the reason
otherwise). A file fills it while the exchange trades; persist must refuse to write with
a clear error, stay up, ack nothing it has not written (the stream keeps every trade),
and once the file is deleted catch up from the stream by itself (it reopens the store:
RocksDB refuses every write on a handle that once failed): the invariant then holds.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.chaos.fuzz import QueryFuzzer
from tests.chaos.invariant import check_invariant, coverage
from tests.chaos.system import System, fill, small_volume

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

RESUME_S = 30.0
"""Once space is back, persist must be writing again within this."""

VOLUME_MB = 64
FULL_S = 4.0
"""How long the disk stays full once persist has hit it."""


async def wait_log(system: System, name: str, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in system.log(name):
        assert time.monotonic() < deadline, f"{name} never logged {text!r}:\n{system.log(name)[-3000:]}"
        system.check_alive()
        await asyncio.sleep(0.3)


async def writing_again(system: System, held: dict[str, int]) -> bool:
    """Whether persist stores trades again within `RESUME_S` of space coming back."""
    deadline = time.monotonic() + RESUME_S
    now = held
    while not all(now[s] > held[s] for s in held):
        if time.monotonic() > deadline:
            print(f"[full disk] persist wrote nothing in the {RESUME_S:g}s after space came back: tape at {now}")
            return False
        system.check_alive()
        await asyncio.sleep(0.5)
        now = {s: (await coverage(system.nats, s))["last_id"] for s in held}
    print(f"[full disk] persist writing again: tape at {now}")
    return True


async def test_a_full_disk_stops_persist_writing_and_loses_nothing(tmp_path: Path) -> None:
    with small_volume(tmp_path / "data" / "shards", VOLUME_MB):
        async with System(tmp_path) as system:
            assert system.settings is not None
            async with QueryFuzzer(system.settings.nats_url or "", system.symbols) as fuzz:
                filler = tmp_path / "data" / "shards" / "filler"
                filled = await asyncio.to_thread(fill, filler)
                await wait_log(system, "persist", "store write failed", 30)
                stuck = {s: (await coverage(system.nats, s))["last_id"] for s in system.symbols}
                await asyncio.sleep(FULL_S)
                still = {s: (await coverage(system.nats, s))["last_id"] for s in system.symbols}
                errors = system.log("persist").count("store write failed")
                print(
                    f"[full disk] filled persist's {VOLUME_MB} MB volume with {filled >> 20} MB; "
                    f"{errors} failed writes logged; stored tape held at {still} for {FULL_S:g}s"
                )
                assert still == stuck, "persist wrote to a full disk?"
                system.check_alive()
                assert "No space left on device" in system.log("persist")
                filler.unlink()
                print("[full disk] space freed")
                assert await writing_again(system, still), "persist did not write again once space was back"
                await check_invariant(
                    system.nats, system.rest_url, system.settings.shard_dir, system.first_ids, "full disk"
                )
                system.check_alive()
            fuzz.assert_sound()
