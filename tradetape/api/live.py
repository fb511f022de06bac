"""Live updates: what persist publishes as it stores trades, and how a subscriber joins them to a query.

Subjects (core NATS, no JetStream, nothing kept): `tape.live.profile.<SYMBOL>` and
`tape.live.bars.1s.<SYMBOL>`. Persist publishes on both about once a second for every
symbol it stored new trades of; each update covers the writes ("batches") since the last
one and lists, per batch, the agg-id runs that write newly stored.

- profile updates carry increments: per 1-second window of trade time and per price, the
  volume, taker-buy volume and trade count the batch added (exact decimal strings);
- bars updates carry the complete 1 s bars of every second the batches touched, read back
  after the writes, which replace a subscriber's bars of those seconds.

A batch too large for one message comes in parts, each with the batch's ids, in
consecutive messages.

Joining exactly (the client and the web page do this): subscribe first; then take the
snapshot (a normal `volume_profile` query) between two whole-tape `coverage` queries that
agree: nothing was written in between, so the snapshot holds exactly the ids those replies
describe. A write is atomic, so a batch is either wholly in the snapshot or not at all:
apply only the batches it does not hold. Bars replace instead of adding up, so the ids of
one `coverage` before the `bars` snapshot are enough: an update whose last batch they do
not hold was read back after the snapshot's state, or is followed by one that was. A `seq`
that does not follow on, or a new `run` (persist restarted, a slow subscriber lost
messages), means an update may be missing: take a new snapshot. The accumulated state then
equals a fresh query of the same range exactly.
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from tradetape.api.errors import QueryError
from tradetape.api.methods.bars import BarReply, BarsReply, bar_replies
from tradetape.api.methods.coverage import CoverageReply
from tradetape.api.methods.volume_profile import VolumeProfileReply, VolumeProfileRequest
from tradetape.api.methods.volume_profile import handle as volume_profile_reply
from tradetape.bus.subjects import BARS_SUBJECT, PROFILE_SUBJECT
from tradetape.domain.aggregates import SECOND_MS
from tradetape.domain.bars import time_bars
from tradetape.domain.columns import TradeColumns
from tradetape.domain.decimals import format_units, parse_units
from tradetape.domain.id_runs import IdRuns
from tradetape.domain.price_levels import PriceLevels
from tradetape.domain.sums import exact_group_sums
from tradetape.store import window_start

IdRun = tuple[int, int]


class LiveLevels(BaseModel):
    """What one batch added to one 1-second window, per price (parallel lists, ascending by price)."""

    time: int = Field(description="Start of the 1-second window of trade time, epoch ms.")
    price: list[str] = Field(description="Prices, exact decimal strings.")
    volume: list[str] = Field(description="Base volume added at each price.")
    buy_volume: list[str] = Field(description="Taker-buy volume added at each price (sell = volume - buy).")
    trade_count: list[int] = Field(description="Trades added at each price.")


class LiveBatch(BaseModel):
    """The trades one persist write newly stored: all of them are in a query snapshot, or none."""

    ids: list[IdRun] = Field(description="Inclusive agg-id runs [from_id, to_id] the write stored, ascending.")
    levels: list[LiveLevels] = Field(
        default_factory=list, description="Profile updates: the increments per window and price."
    )


class LiveUpdate(BaseModel):
    symbol: str
    run: str = Field(description="The publishing persist process; a new run means: take a new snapshot.")
    seq: int = Field(description="1, 2, 3 … per subject and run; a jump means an update was lost.")
    batches: list[LiveBatch] = Field(description="The writes this update covers, in write order.")


class LiveProfileUpdate(LiveUpdate):
    """On `tape.live.profile.<SYMBOL>`: per-price increments of newly stored trades."""


class LiveBarsUpdate(LiveUpdate):
    """On `tape.live.bars.1s.<SYMBOL>`: the complete 1 s bars of the seconds the batches touched."""

    interval: str = "1s"
    interval_ms: int = SECOND_MS
    bars: list[BarReply]


def live_schema() -> dict[str, Any]:
    """The live subjects and their message schemas, for `api_schema`."""
    return {
        "about": (__doc__ or "").split("\n\n", 1)[1].strip(),
        "profile": {"subject": PROFILE_SUBJECT, "message": LiveProfileUpdate.model_json_schema()},
        "bars": {"subject": BARS_SUBJECT, "message": LiveBarsUpdate.model_json_schema()},
    }


# --- publisher side: pure computations over one write's new trades ---------------------------


def id_runs(ids: np.ndarray[Any, np.dtype[np.int64]]) -> list[IdRun]:
    """The inclusive runs of consecutive ids in `ids` (any order)."""
    runs = IdRuns.of_ids(np.unique(ids))
    return list(zip(runs.low.tolist(), runs.high.tolist(), strict=True))


def window_levels(trades: TradeColumns) -> list[LiveLevels]:
    """Volume, buy volume and trade count per (1-second window, price), in one vectorised pass."""
    if len(trades) == 0:
        return []
    windows = window_start(trades.time)
    order = np.lexsort((trades.price, windows))
    window, price = windows[order], trades.price[order]
    qty, sells = trades.qty[order], trades.buyer_maker[order]
    first = np.r_[True, (window[1:] != window[:-1]) | (price[1:] != price[:-1])]
    group = np.cumsum(first) - 1
    n = int(group[-1]) + 1
    volume = exact_group_sums(group, qty, n)
    buy = exact_group_sums(group[~sells], qty[~sells], n)
    count = np.bincount(group, minlength=n).tolist()
    heads = np.flatnonzero(first)
    group_window, group_price = window[heads], price[heads].tolist()
    cuts = [*np.flatnonzero(np.r_[True, group_window[1:] != group_window[:-1]]).tolist(), n]
    return [
        LiveLevels(
            time=int(group_window[lo]),
            price=[format_units(p) for p in group_price[lo:hi]],
            volume=[format_units(v) for v in volume[lo:hi]],
            buy_volume=[format_units(v) for v in buy[lo:hi]],
            trade_count=count[lo:hi],
        )
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)
    ]


def stored_batch(trades: TradeColumns) -> LiveBatch:
    """The profile batch of the trades one write newly stored."""
    return LiveBatch(ids=id_runs(trades.agg_id), levels=window_levels(trades))


def split_batch(batch: LiveBatch, max_prices: int) -> list[LiveBatch]:
    """`batch` as parts of at most `max_prices` price levels, each with the batch's ids (so a
    subscriber decides on every part alike, and adds them up), for messages that fit."""
    parts: list[LiveBatch] = []
    levels: list[LiveLevels] = []
    count = 0
    for window in batch.levels:
        for lo in range(0, len(window.price), max_prices):
            hi = lo + max_prices
            piece = window if len(window.price) <= max_prices else LiveLevels(
                time=window.time,
                price=window.price[lo:hi],
                volume=window.volume[lo:hi],
                buy_volume=window.buy_volume[lo:hi],
                trade_count=window.trade_count[lo:hi],
            )
            if levels and count + len(piece.price) > max_prices:
                parts.append(LiveBatch(ids=batch.ids, levels=levels))
                levels, count = [], 0
            levels.append(piece)
            count += len(piece.price)
    parts.append(LiveBatch(ids=batch.ids, levels=levels))
    return parts


def second_bars(trades: TradeColumns, seconds: list[int]) -> list[BarReply]:
    """The 1 s bars of `seconds` (window starts) from all the trades stored in them."""
    bars = bar_replies(time_bars(trades, SECOND_MS))
    wanted = set(seconds)
    return [bar for bar in bars if bar.time in wanted]


# --- subscriber side: joining updates to a snapshot -------------------------------------------


class SnapshotIds:
    """The agg ids a snapshot holds: those of a whole-tape coverage reply."""

    def __init__(self, coverage: CoverageReply) -> None:
        self._first = coverage.first_id
        self._last = coverage.last_id
        self._gap_starts = [gap.from_id for gap in coverage.gaps]
        self._gap_ends = [gap.to_id for gap in coverage.gaps]

    @staticmethod
    def agree(before: CoverageReply, after: CoverageReply) -> bool:
        """Whether nothing was stored between the two replies (the stored ids only grow)."""
        return (before.trade_count, before.first_id, before.last_id) == (
            after.trade_count,
            after.first_id,
            after.last_id,
        )

    def holds(self, batch: LiveBatch) -> bool:
        """Whether the snapshot holds the batch (a write is atomic: its first id tells)."""
        if not batch.ids or self._first is None or self._last is None:
            return False
        first = batch.ids[0][0]
        if not self._first <= first <= self._last:
            return False
        i = bisect.bisect_right(self._gap_starts, first) - 1
        return not (i >= 0 and first <= self._gap_ends[i])


class UpdateOrder:
    """Checks that updates follow on: same run, seq one higher."""

    def __init__(self) -> None:
        self._last: tuple[str, int] | None = None

    def follows(self, update: LiveUpdate) -> bool:
        last, self._last = self._last, (update.run, update.seq)
        return last is None or last == (update.run, update.seq - 1)


def align_range(start_ms: int, end_ms: int | None) -> tuple[int, int | None]:
    """A live range in whole seconds (start down, end up): updates come per 1-second window."""
    start = start_ms - start_ms % SECOND_MS
    if end_ms is None:
        return start, None
    return start, -(-end_ms // SECOND_MS) * SECOND_MS


class LiveProfile:
    """A volume profile kept current from a snapshot and the profile updates after it.

    The state is the per-price levels (the snapshot's rows count as levels at their lower
    edge, which fall into the same rows); the reply is computed from them by the
    `volume_profile` method itself, so it is what a fresh query of the range answers.
    """

    def __init__(
        self,
        symbol: str,
        request: VolumeProfileRequest,
        start: int,
        end: int | None,
        snapshot: VolumeProfileReply | None,
        ids: SnapshotIds,
    ) -> None:
        self.symbol = symbol
        self.start, self.end = start, end
        self._ids = ids
        self._request = request.model_copy(update={"min_trades": 0, "last": None, "start": start, "end": end})
        self._levels = PriceLevels.empty()
        if snapshot is not None:
            self._request = self._request.model_copy(update={"row_size": snapshot.row_size, "rows": None})
            rows = [row for row in snapshot.rows if row.trade_count]
            self._levels = PriceLevels(
                np.array([parse_units(row.price_low) for row in rows], dtype=np.int64),
                np.array([parse_units(row.volume) for row in rows], dtype=np.int64),
                np.array([parse_units(row.buy_volume) for row in rows], dtype=np.int64),
                np.array([row.trade_count for row in rows], dtype=np.int64),
            )

    def apply(self, update: LiveProfileUpdate) -> bool:
        """Add the update's batches the snapshot does not hold; whether anything changed."""
        parts = [self._levels]
        for batch in update.batches:
            if self._ids.holds(batch):
                continue
            parts += [_levels_of(levels) for levels in batch.levels if self._covers(levels.time)]
        if len(parts) == 1:
            return False
        merged = PriceLevels.merge(parts)
        if merged is None:
            raise ValueError(f"{self.symbol}: a per-price volume exceeds int64; query the profile instead")
        self._levels = merged
        return True

    def _covers(self, window: int) -> bool:
        return window >= self.start and (self.end is None or window < self.end)

    def reply(self, now_ms: int) -> VolumeProfileReply | None:
        """The profile of the range as of the updates applied (None while it holds no trade)."""
        if len(self._levels) == 0:
            return None
        request = self._request if self.end is not None else self._request.model_copy(update={"end": now_ms})
        return volume_profile_reply(self, self.symbol, request, now_ms)

    def price_levels(self, symbol: str, time_range: tuple[int, int] | None) -> PriceLevels | None:
        return self._levels

    def trades(self, symbol: str, time_range: tuple[int, int] | None) -> TradeColumns:
        raise QueryError("internal", "a live profile holds price levels, not trades")


def _levels_of(levels: LiveLevels) -> PriceLevels:
    return PriceLevels(
        np.array([parse_units(p) for p in levels.price], dtype=np.int64),
        np.array([parse_units(v) for v in levels.volume], dtype=np.int64),
        np.array([parse_units(v) for v in levels.buy_volume], dtype=np.int64),
        np.array(levels.trade_count, dtype=np.int64),
    )


class LiveBars:
    """1 s bars kept current from a snapshot and the bars updates after it."""

    def __init__(self, symbol: str, start: int, end: int | None, snapshot: list[BarReply], ids: SnapshotIds) -> None:
        self.symbol = symbol
        self.start, self.end = start, end
        self._ids = ids
        self._bars = {bar.time: bar for bar in snapshot}

    def apply(self, update: LiveBarsUpdate) -> bool:
        """Take the update's bars unless the snapshot already holds its last batch; whether anything changed."""
        if not update.batches or self._ids.holds(update.batches[-1]):
            return False
        fresh = [bar for bar in update.bars if bar.time >= self.start and (self.end is None or bar.time < self.end)]
        self._bars.update((bar.time, bar) for bar in fresh)
        return bool(fresh)

    def reply(self, now_ms: int) -> BarsReply:
        bars = [self._bars[time] for time in sorted(self._bars)]
        return BarsReply(
            symbol=self.symbol,
            start=self.start,
            end=self.end if self.end is not None else now_ms,
            interval="1s",
            interval_ms=SECOND_MS,
            trade_count=sum(bar.trade_count for bar in bars),
            bars=bars,
        )
