"""The store's upkeep runs beside persist's live writes: between its slices, and beside a closed hour's join."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.harness import wait_for
from tests.store.synthetic import SYMBOL, T0, same, tape, windows_of
from tradetape.services.persist import maintenance
from tradetape.services.persist.maintenance import StoreMaintenance
from tradetape.services.persist.store_thread import StoreThread
from tradetape.settings import Settings
from tradetape.store import SegmentJoin, ShardWriter
from tradetape.store.keys import SEGMENT, timed_key
from tradetape.store.reads import read_all_trades
from tradetape.store.segments import segment_in_blocks

HOUR = 3_600_000


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", symbols=(SYMBOL,), retention_days=3650)


async def test_a_live_write_is_stored_between_two_symbols_roll_ups(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass over every symbol's roll-up was one change of the store: a live write asked meanwhile waited for all."""
    monkeypatch.setattr(maintenance, "MAINTENANCE_SLICE_S", 0.0)
    store, store_thread, stop = ShardWriter(tmp_path / "shard"), StoreThread(), asyncio.Event()
    order: list[str] = []
    first_started, write_asked = threading.Event(), threading.Event()
    roll_up = store.roll_up

    def watched_roll_up(symbol: str, before_ms: int, **options: Any) -> int:
        order.append(symbol)
        if symbol == "AUSDT":
            first_started.set()
            write_asked.wait(10)
        return roll_up(symbol, before_ms, **options)

    def write(windows: Any) -> int:
        order.append("write")
        return store.write(windows)

    monkeypatch.setattr(store, "roll_up", watched_roll_up)
    upkeep = StoreMaintenance(settings, store_thread, rollup_interval=60)
    task = asyncio.create_task(upkeep.run(store, lambda: ("AUSDT", "BUSDT", "CUSDT"), stop))
    try:
        assert await asyncio.to_thread(first_started.wait, 10)
        written = asyncio.create_task(store_thread.run(write, windows_of(SYMBOL, tape(50, 1_000))))
        await asyncio.sleep(0.05)  # the write is asked while the first symbol's roll-up holds the store thread
        write_asked.set()
        assert await written == 50
        await wait_for(lambda: asyncio.sleep(0, len(order) >= 4), 10, interval=0.01)
        assert order[:4] == ["AUSDT", "write", "BUSDT", "CUSDT"]
    finally:
        write_asked.set()
        stop.set()
        await task
        store_thread.shutdown()
        store.close()


async def test_live_writes_are_stored_while_a_closed_hour_is_joined(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    trades = tape(6_000, HOUR + 60_000, seed=8)
    store, store_thread, stop = ShardWriter(tmp_path / "shard"), StoreThread(), asyncio.Event()
    joining, release = threading.Event(), threading.Event()
    join = SegmentJoin.joined

    def held_join(found: SegmentJoin) -> tuple[bytes, bytes | None]:
        joining.set()
        assert threading.current_thread().name.startswith("asyncio"), threading.current_thread().name
        release.wait(10)
        return join(found)

    monkeypatch.setattr(SegmentJoin, "joined", held_join)
    store.write(windows_of(SYMBOL, trades.between(T0, T0 + HOUR - 10_000)))
    store.roll_up(SYMBOL, T0 + HOUR - 10_000, join=False)  # the hour in blocks, not closed yet
    store.write(windows_of(SYMBOL, trades.between(T0 + HOUR - 10_000, T0 + HOUR + 30_000)))
    upkeep = StoreMaintenance(settings, store_thread, rollup_interval=60)
    task = asyncio.create_task(upkeep.run(store, lambda: (SYMBOL,), stop))  # rolls up past the hour's end
    try:
        assert await asyncio.to_thread(joining.wait, 10)
        live = trades.between(T0 + HOUR + 30_000, T0 + HOUR + 60_000)
        assert await asyncio.wait_for(store_thread.run(store.write, windows_of(SYMBOL, live)), 5) == len(live)
        assert segment_in_blocks(store.db.get(timed_key(SEGMENT, SYMBOL, T0)))  # the join is still in hand
        release.set()
        await wait_for(lambda: asyncio.sleep(0, upkeep.joined), 10, interval=0.01)
        assert upkeep.errors == 0
        assert not segment_in_blocks(store.db.get(timed_key(SEGMENT, SYMBOL, T0)))
        assert same(read_all_trades(store.db, SYMBOL), trades)
    finally:
        release.set()
        stop.set()
        await task
        store_thread.shutdown()
        store.close()


async def test_a_closed_hour_a_stop_left_in_blocks_is_joined_at_the_next_start(
    tmp_path: Path, settings: Settings
) -> None:
    trades = tape(6_000, HOUR + 30_000, seed=9)
    store = ShardWriter(tmp_path / "shard")
    try:
        for end in (T0 + HOUR - 10_000, T0 + HOUR + 30_000):
            store.write(windows_of(SYMBOL, trades.between(T0, end)))
            store.roll_up(SYMBOL, end, join=False)
        assert store.take_unjoined() == [(SYMBOL, T0)]  # and persist stopped before joining it
    finally:
        store.close()
    store, store_thread, stop = ShardWriter(tmp_path / "shard"), StoreThread(), asyncio.Event()
    upkeep = StoreMaintenance(settings, store_thread, rollup_interval=60)
    task = asyncio.create_task(upkeep.run(store, lambda: (SYMBOL,), stop))
    try:
        await wait_for(lambda: asyncio.sleep(0, upkeep.joined), 10, interval=0.01)
        assert not segment_in_blocks(store.db.get(timed_key(SEGMENT, SYMBOL, T0)))
        assert same(read_all_trades(store.db, SYMBOL), trades)
    finally:
        stop.set()
        await task
        store_thread.shutdown()
        store.close()
