"""The joining side of live updates: a snapshot query plus the updates after it, kept equal to a fresh query.

The client and the web page (`tradetape/web/static/app.js`) follow the join rules of
`tradetape.api.live.messages`; these classes are the client's, and the tests' reference.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from tradetape.api.errors import QueryError
from tradetape.api.live.messages import LiveBarsUpdate, LiveBatch, LiveLevels, LiveMessage, LiveProfileUpdate
from tradetape.api.methods.bars import BarReply, BarsReply
from tradetape.api.methods.coverage import CoverageReply
from tradetape.api.methods.trades import TradeReply
from tradetape.api.methods.volume_profile import VolumeProfileReply, VolumeProfileRequest
from tradetape.api.methods.volume_profile import handle as volume_profile_reply
from tradetape.domain.aggregates import SECOND_MS
from tradetape.domain.columns import TradeColumns
from tradetape.domain.decimals import parse_units
from tradetape.domain.price_levels import PriceLevels


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

    @property
    def started(self) -> bool:
        """Whether an update was seen."""
        return self._last is not None

    def follows(self, update: LiveMessage) -> bool:
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



Span = tuple[int, int | None]
"""Inclusive trade times (epoch ms) between which some agg ids lie; None: up to the open end."""


class LiveTradesBatch(BaseModel):
    """Trades of one symbol, ascending by agg id, none delivered before (`TapeClient.live_trades`)."""

    symbol: str
    trades: list[TradeReply]
    stored_at: int | None
    """When persist stored them (epoch ms), from the live message; None for trades read with a `trades` query."""


class LiveTrades:
    """The trades of one symbol's range `[start, end)` (end None: open), each delivered exactly once.

    Holds the agg ids delivered (or found to be voids) as inclusive runs, each with the time
    of a trade near each end: ids ascend with trade time, so ids missing between two runs lie
    between those times and are read again with `trades` over that span alone. `take` admits
    the trades of a live message or a snapshot page not delivered before; `missing` says
    which ids a `coverage` reply of the range holds that were not delivered, and where.
    """

    def __init__(self, symbol: str, start: int, end: int | None) -> None:
        self.symbol = symbol
        self.start, self.end = start, end
        self.order = UpdateOrder()
        self._low: list[int] = []
        self._high: list[int] = []
        self._low_time: list[int | None] = []
        self._high_time: list[int | None] = []

    def covers(self, time_ms: int) -> bool:
        return time_ms >= self.start and (self.end is None or time_ms < self.end)

    def seen(self, agg_id: int) -> bool:
        i = bisect.bisect_right(self._low, agg_id) - 1
        return i >= 0 and agg_id <= self._high[i]

    def take(self, trades: list[TradeReply], voids: Sequence[int] = ()) -> list[TradeReply]:
        """The trades of the range not delivered before, ascending by agg id; they (and `voids`) count as delivered."""
        newest = self._high[-1] if self._high else None
        fresh: dict[int, TradeReply] = {}
        for trade in trades:
            if self.covers(trade.T) and (newest is None or trade.a > newest or not self.seen(trade.a)):
                fresh.setdefault(trade.a, trade)
        taken = [fresh[agg_id] for agg_id in sorted(fresh)]
        run_start = 0
        for i, trade in enumerate(taken):
            if i + 1 == len(taken) or taken[i + 1].a != trade.a + 1:
                first = taken[run_start]
                self._add(first.a, trade.a, first.T, trade.T)
                run_start = i + 1
        for agg_id in voids:
            self._add(agg_id, agg_id, None, None)
        return taken

    def missing(self, coverage: CoverageReply) -> list[tuple[int, int, Span]]:
        """The runs of ids `coverage` (of this range) holds that were not delivered, each with the span of
        trade time its trades lie in."""
        if coverage.first_id is None or coverage.last_id is None:
            return []
        held: list[tuple[int, int]] = []
        cursor = coverage.first_id
        for gap in coverage.gaps:
            if gap.from_id > cursor:
                held.append((cursor, gap.from_id - 1))
            cursor = max(cursor, gap.to_id + 1)
        if cursor <= coverage.last_id:
            held.append((cursor, coverage.last_id))
        return [(a, b, self._span(a, b)) for low, high in held for a, b in self._unseen(low, high)]

    def _unseen(self, low: int, high: int) -> list[tuple[int, int]]:
        """The runs of `low`…`high` not delivered."""
        out: list[tuple[int, int]] = []
        cursor = low
        i = bisect.bisect_left(self._high, low)
        while cursor <= high and i < len(self._low) and self._low[i] <= high:
            if self._low[i] > cursor:
                out.append((cursor, self._low[i] - 1))
            cursor = self._high[i] + 1
            i += 1
        if cursor <= high:
            out.append((cursor, high))
        return out

    def _span(self, low: int, high: int) -> Span:
        """Where ids `low`…`high` (none delivered) lie in time: between known times of the delivered trades around
        them, else the range's edges."""
        i = bisect.bisect_left(self._low, low)
        before = next((t for t in reversed(self._high_time[:i]) if t is not None), None)
        after = next((t for t in self._low_time[i:] if t is not None), None)
        first = self.start if before is None else max(self.start, before)
        if after is not None:
            return first, after if self.end is None else min(after, self.end - 1)
        return first, None if self.end is None else self.end - 1

    def _add(self, low: int, high: int, low_time: int | None, high_time: int | None) -> None:
        """Merge the run `low`…`high` with the runs it overlaps or touches, keeping a known time near each end."""
        i = bisect.bisect_left(self._high, low - 1)
        j = bisect.bisect_right(self._low, high + 1)
        if i < j:
            lows = sorted([(low, low_time), *zip(self._low[i:j], self._low_time[i:j], strict=True)], key=_first)
            highs = sorted([(high, high_time), *zip(self._high[i:j], self._high_time[i:j], strict=True)], key=_first)
            low_time = next((t for _, t in lows if t is not None), None)
            high_time = next((t for _, t in reversed(highs) if t is not None), None)
            low, high = lows[0][0], highs[-1][0]
        self._low[i:j] = [low]
        self._high[i:j] = [high]
        self._low_time[i:j] = [low_time]
        self._high_time[i:j] = [high_time]


def _first(pair: tuple[int, int | None]) -> int:
    return pair[0]
