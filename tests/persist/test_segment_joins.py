"""A closed hour is joined beside persist's store thread: live writes go on while it is."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from tests.store.synthetic import SYMBOL, T0, same, tape, windows_of
from tradetape.services.persist.segment_joins import SegmentJoins
from tradetape.services.persist.store_thread import StoreThread
from tradetape.store import SegmentJoin, ShardWriter
from tradetape.store.keys import SEGMENT, timed_key
from tradetape.store.reads import read_all_trades
from tradetape.store.segments import segment_in_blocks

HOUR = 3_600_000


async def test_live_writes_are_stored_while_a_closed_hour_is_joined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trades = tape(6_000, HOUR + 60_000, seed=8)
    store, store_thread = ShardWriter(tmp_path / "shard"), StoreThread()
    joins = SegmentJoins(store_thread)
    joining, release = threading.Event(), threading.Event()
    join = SegmentJoin.joined

    def held_join(found: SegmentJoin) -> bytes:
        joining.set()
        assert threading.current_thread().name.startswith("asyncio"), threading.current_thread().name
        release.wait(10)
        return join(found)

    monkeypatch.setattr(SegmentJoin, "joined", held_join)
    try:
        for end in (T0 + HOUR - 10_000, T0 + HOUR + 30_000):
            await store_thread.run(store.write, windows_of(SYMBOL, trades.between(T0, end)))
            await store_thread.run(lambda end=end: store.roll_up(SYMBOL, end, join=False))
        joins.start(store, await store_thread.run(store.take_unjoined))
        assert await asyncio.to_thread(joining.wait, 10)
        live = trades.between(T0 + HOUR + 30_000, T0 + HOUR + 60_000)
        assert await asyncio.wait_for(store_thread.run(store.write, windows_of(SYMBOL, live)), 5) == len(live)
        assert segment_in_blocks(store.db.get(timed_key(SEGMENT, SYMBOL, T0)))  # the join is still in hand
        release.set()
        await joins.close()
        assert joins.joined == 1 and joins.errors == 0
        assert not segment_in_blocks(store.db.get(timed_key(SEGMENT, SYMBOL, T0)))
        assert same(read_all_trades(store.db, SYMBOL), trades)
    finally:
        release.set()
        await joins.close()
        store_thread.shutdown()
        store.close()
