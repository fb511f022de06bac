"""The join rules of `tradetape.api.live.messages`, checked on a known tape without any server: a snapshot of
some writes plus the updates of all writes (some already in it, one a late backfill) must give the
reply of the query over every trade, exactly."""

from __future__ import annotations

import numpy as np
import pytest

from tests.store.synthetic import T0, tape
from tradetape.api.live.building import second_bars, split_batch, stored_batches
from tradetape.api.live.joining import LiveBars, LiveProfile, SnapshotIds, UpdateOrder, align_range
from tradetape.api.live.messages import LiveBarsUpdate, LiveBatch, LiveProfileUpdate
from tradetape.api.methods import bars, coverage, volume_profile
from tradetape.domain.columns import TradeColumns
from tradetape.domain.decimals import parse_units
from tradetape.domain.id_runs import IdRuns
from tradetape.domain.price_levels import PriceLevels
from tradetape.store.keys import window_start
from tradetape.testing import HeldTrades

SYMBOL = "BTCUSDT"
START, END = T0, T0 + 300_000


def writes() -> list[TradeColumns]:
    """3,000 trades over 200 s written in 40 batches; the ids of batch 7 arrive last (a backfill)."""
    trades = tape(3000, 200_000)
    cuts = np.linspace(0, len(trades), 41).astype(int)
    batches = [trades.take(slice(int(lo), int(hi))) for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]
    return [*batches[:7], *batches[8:], batches[7]]


def test_each_writes_batch_sums_its_windows_per_price_and_names_its_id_runs() -> None:
    trades = tape(2000, 20_000, seed=3)
    every_other = trades.take(np.arange(1200, 1600, 2))  # ids with holes: many runs
    written = [
        trades.take(slice(0, 700)),
        TradeColumns.empty(),
        trades.take(slice(700, 701)),
        every_other,
        trades.take(slice(1600, 2000)),
        trades.take(slice(0, 0)),
    ]
    batches = stored_batches(written)
    assert len(batches) == len(written)
    for trades_of_write, batch in zip(written, batches, strict=True):
        runs = IdRuns.of_ids(np.unique(trades_of_write.agg_id))
        assert batch.ids == list(zip(runs.low.tolist(), runs.high.tolist(), strict=True))
        assert [level.time for level in batch.levels] == sorted(set(window_start(trades_of_write.time).tolist()))
        for level in batch.levels:
            expected = PriceLevels.of_trades(trades_of_write.between(level.time, level.time + 1000))
            assert expected is not None
            assert [parse_units(p) for p in level.price] == expected.price.tolist()
            assert [parse_units(v) for v in level.volume] == expected.volume.tolist()
            assert [parse_units(v) for v in level.buy_volume] == expected.buy_volume.tolist()
            assert level.trade_count == expected.trade_count.tolist()
    assert len(batches[3].ids) == 200 and batches[1] == batches[5] == LiveBatch(ids=[], levels=[])


@pytest.mark.parametrize("held", [0, 5, 20, 39])
def test_snapshot_plus_updates_equals_the_query_of_everything(held: int) -> None:
    batches = writes()
    snapshot_trades = TradeColumns.concat(batches[:held])
    everything = TradeColumns.concat(batches)
    request = volume_profile.VolumeProfileRequest(start=START, end=END, row_size="5", min_trades=0)
    ids = SnapshotIds(coverage.handle(HeldTrades(snapshot_trades), SYMBOL, coverage.CoverageRequest(), END))
    snapshot = volume_profile.handle(HeldTrades(snapshot_trades), SYMBOL, request, END) if held else None
    profile = LiveProfile(SYMBOL, request, START, END, snapshot, ids)
    bars_request = bars.BarsRequest(start=START, end=END, interval="1s")
    snapshot_bars = bars.handle(HeldTrades(snapshot_trades), SYMBOL, bars_request, END).bars
    live_bars = LiveBars(SYMBOL, START, END, snapshot_bars, ids)

    stored: list[TradeColumns] = []
    for seq, batch in enumerate(batches, 1):  # every write is published, those in the snapshot too
        stored.append(batch)
        update = LiveProfileUpdate(symbol=SYMBOL, run="r", seq=seq, batches=[stored_batches([batch])[0]])
        profile.apply(update)
        seconds = sorted(set(window_start(batch.time).tolist()))
        bars_update = LiveBarsUpdate(
            symbol=SYMBOL,
            run="r",
            seq=seq,
            batches=[LiveBatch(ids=update.batches[0].ids)],
            bars=second_bars(TradeColumns.concat(stored), seconds),
        )
        live_bars.apply(bars_update)

    assert profile.reply(END) == volume_profile.handle(HeldTrades(everything), SYMBOL, request, END)
    assert live_bars.reply(END) == bars.handle(HeldTrades(everything), SYMBOL, bars_request, END)


def test_a_batch_is_held_by_its_first_id_gaps_included() -> None:
    batches = writes()
    held = TradeColumns.concat(batches[:10])  # batch 7 is missing: a gap inside the held ids
    ids = SnapshotIds(coverage.handle(HeldTrades(held), SYMBOL, coverage.CoverageRequest(), END))
    assert [ids.holds(stored_batches([batch])[0]) for batch in batches[:12]] == [True] * 10 + [False, False]
    assert ids.holds(stored_batches([batches[-1]])[0]) is False  # the backfill, in the gap
    assert not ids.holds(LiveBatch(ids=[]))


def test_updates_must_follow_on() -> None:
    order = UpdateOrder()

    def update(run: str, seq: int) -> LiveProfileUpdate:
        return LiveProfileUpdate(symbol=SYMBOL, run=run, seq=seq, batches=[])

    assert [order.follows(update(*key)) for key in [("a", 4), ("a", 5), ("a", 7), ("a", 8), ("b", 1)]] == [
        True,
        True,
        False,
        True,
        False,
    ]


def test_live_ranges_are_whole_seconds() -> None:
    assert align_range(1_767_225_600_123, None) == (1_767_225_600_000, None)
    assert align_range(1_767_225_600_123, 1_767_225_700_001) == (1_767_225_600_000, 1_767_225_701_000)
    assert align_range(1_767_225_600_000, 1_767_225_700_000) == (1_767_225_600_000, 1_767_225_700_000)


def test_a_batch_split_for_small_messages_adds_up_to_the_whole() -> None:
    batch = stored_batches([tape(400, 3_000, seed=5)])[0]
    assert max(len(window.price) for window in batch.levels) > 7
    parts = split_batch(batch, 7)
    assert len(parts) > 3 and all(part.ids == batch.ids for part in parts)
    assert all(sum(len(window.price) for window in part.levels) <= 7 for part in parts)

    def per_price(batches: list[LiveBatch]) -> dict[tuple[int, str], tuple[int, int, int]]:
        sums: dict[tuple[int, str], tuple[int, int, int]] = {}
        for part in batches:
            for w in part.levels:
                for price, volume, buy, count in zip(w.price, w.volume, w.buy_volume, w.trade_count, strict=True):
                    v, b, c = sums.get((w.time, price), (0, 0, 0))
                    sums[(w.time, price)] = (v + parse_units(volume), b + parse_units(buy), c + count)
        return sums

    assert per_price(parts) == per_price([batch])
    assert split_batch(LiveBatch(ids=[(1, 2)]), 7) == [LiveBatch(ids=[(1, 2)])]
