"""Persist's live publisher against a real nats-server and a real shard store: what each write newly
stored goes out once, split over messages that fit the server's max payload, in order."""

from __future__ import annotations

from pathlib import Path

import nats
import orjson
import pytest

from tests.store.synthetic import SYMBOL, T0, tape, windows_of
from tradetape.api.live.joining import LiveProfile, SnapshotIds
from tradetape.api.live.messages import LiveBarsUpdate, LiveProfileUpdate
from tradetape.api.methods import bars, coverage, volume_profile
from tradetape.bus.subjects import bars_subject, profile_subject
from tradetape.runtime.nats_server import EmbeddedNatsServer
from tradetape.services.persist.live import LivePublisher
from tradetape.store.writer import ShardWriter
from tradetape.testing import HeldTrades


@pytest.mark.slow
async def test_new_trades_go_out_once_in_messages_that_fit(tmp_path: Path) -> None:
    config = tmp_path / "small.conf"
    config.write_text("max_payload: 64KB\n")
    trades = tape(6000, 900_000)  # 15 minutes: about 900 windows, far more than 64 KB of levels
    first, second = trades.take(slice(0, 4000)), trades.take(slice(3000, 6000))  # the second repeats 1,000
    async with EmbeddedNatsServer(tmp_path / "nats", config_file=config) as server:
        nc = await nats.connect(server.url)
        store = ShardWriter(tmp_path / "shard")
        try:
            profile_sub = await nc.subscribe(profile_subject(SYMBOL))
            bars_sub = await nc.subscribe(bars_subject(SYMBOL))
            await nc.flush()
            publisher = LivePublisher(nc)
            for part in (first, second):
                windows = windows_of(SYMBOL, part)
                fresh = store.write_new(windows)
                publisher.stored(fresh)
            assert len(fresh.trades[SYMBOL]) == 2000
            await publisher.flush()
            await publisher.flush()  # nothing new: nothing sent
            await nc.flush()
            profile_updates = [LiveProfileUpdate.model_validate_json(m.data) for m in await _drain(profile_sub)]
            bars_updates = [LiveBarsUpdate.model_validate_json(m.data) for m in await _drain(bars_sub)]
        finally:
            store.close()
            await nc.close()

    assert len(profile_updates) > 2, "split to fit 64 KB"
    assert [u.seq for u in profile_updates] == list(range(1, len(profile_updates) + 1))
    assert all(len(orjson.dumps(u.model_dump(mode="json"))) <= 64 * 1024 for u in profile_updates)
    # Each write once (the 1,000 repeated trades were not new), its parts in consecutive messages.
    runs = list(dict.fromkeys(tuple(map(tuple, batch.ids)) for u in profile_updates for batch in u.batches))
    assert runs == [((1000, 4999),), ((5000, 6999),)]

    nothing = SnapshotIds(coverage.handle(HeldTrades.empty(), SYMBOL, coverage.CoverageRequest(), T0))
    request = volume_profile.VolumeProfileRequest(start=T0, end=T0 + 900_000, row_size="1", min_trades=0)
    live = LiveProfile(SYMBOL, request, T0, T0 + 900_000, None, nothing)
    for update in profile_updates:
        live.apply(update)
    assert live.reply(T0) == volume_profile.handle(HeldTrades(trades), SYMBOL, request, T0)

    bars_request = bars.BarsRequest(start=T0, end=T0 + 900_000, interval="1s")
    got = {bar.time: bar for update in bars_updates for bar in update.bars}
    assert [got[time] for time in sorted(got)] == bars.handle(HeldTrades(trades), SYMBOL, bars_request, T0).bars
    assert all(u.batches == [b.model_copy(update={"levels": []}) for b in u.batches] for u in bars_updates)


async def _drain(subscription: nats.aio.subscription.Subscription) -> list[nats.aio.msg.Msg]:
    messages = []
    while True:
        try:
            messages.append(await subscription.next_msg(timeout=0.5))
        except (TimeoutError, nats.errors.TimeoutError):
            return messages


async def test_bars_come_from_what_the_writes_held_not_from_reading_the_store(tmp_path: Path) -> None:
    trades = tape(3000, 60_000)  # a minute: each second's trades split over the two writes
    first, second = trades.take(slice(0, 3000, 2)), trades.take(slice(1, 3000, 2))
    async with EmbeddedNatsServer(tmp_path / "nats") as server:
        nc = await nats.connect(server.url)
        store = ShardWriter(tmp_path / "shard")
        try:
            bars_sub = await nc.subscribe(bars_subject(SYMBOL))
            await nc.flush()
            publisher = LivePublisher(nc)
            for part in (first, second):
                publisher.stored(store.write_new(windows_of(SYMBOL, part)))
        finally:
            store.close()  # nothing can be read back from here on
        try:
            await publisher.flush()
            await nc.flush()
            bars_updates = [LiveBarsUpdate.model_validate_json(m.data) for m in await _drain(bars_sub)]
        finally:
            await nc.close()
    bars_request = bars.BarsRequest(start=T0, end=T0 + 60_000, interval="1s")
    got = {bar.time: bar for update in bars_updates for bar in update.bars}
    assert [got[time] for time in sorted(got)] == bars.handle(HeldTrades(trades), SYMBOL, bars_request, T0).bars
