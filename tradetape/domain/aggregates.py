"""The aggregate layer's figures: 1-second bars and per-minute price levels, built from trades, rolled up.

The store keeps both beside every hour segment (`tradetape.store.layer`), so a long range
reads one row a second (or one a minute and price) instead of every trade, and decodes
trades only at its ragged edges. Every figure is exact or computed the same way from the
same trades whichever path made it, so a range answered from the layer equals the same
range answered from its trades, bit for bit:

- `second_bars(trades)`: per second of trade time holding trades: first and last agg id,
  open/high/low/close by agg-id order, trade count, and as exact wide sums
  (`tradetape.domain.sums.WideSums`): volume, taker-buy volume, quote volume (Σ p·q, units
  of 1e-16) and the moments about the second's low, Σ q·(p − low) and Σ q·(p − low)² (what
  the VWAP's deviation is computed from: exact, so they compress, and any path that made
  them gives the same floats);
- `SecondBars.rolled(interval_ms)`: `TimeBars` of any whole-second interval, exact: open
  from the second holding the lowest agg id, close from the one holding the highest;
- `minute_levels(trades)`: per minute and distinct price: volume, taker-buy volume, count
  (int64, like `PriceLevels`; None when a sum could leave int64);
- `MinuteLevels.per_interval(interval_ms)` and `MinuteLevels.levels()`: levels per interval
  of any whole number of minutes, or over all of it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from tradetape.domain.columns import Int64Array, TradeColumns
from tradetape.domain.price_levels import PriceLevels
from tradetape.domain.sums import WideSums, carried, product_digits, run_sums, times_digits, value_digits

SECOND_MS = 1000
MINUTE_MS = 60_000
_INT64_MAX = 2**63 - 1

IndexArray = npt.NDArray[np.intp]


def _runs(keys: Int64Array) -> tuple[IndexArray, IndexArray]:
    """Start and end (exclusive) of each run of equal `keys`."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return starts, np.r_[starts[1:], len(keys)].astype(np.intp)


@dataclass(frozen=True, slots=True)
class SecondBars:
    """One row per second holding trades, ascending by second; prices in units of 1e-8."""

    time: Int64Array
    """Start of the second, epoch ms."""
    first_id: Int64Array
    last_id: Int64Array
    open: Int64Array
    high: Int64Array
    low: Int64Array
    close: Int64Array
    volume: WideSums
    buy_volume: WideSums
    quote: WideSums
    """Σ price × quantity, units of 1e-16 (= low × volume + `above_low`)."""
    trade_count: Int64Array
    above_low: WideSums
    """Σ q·(p − low), units of 1e-16."""
    above_low_square: WideSums
    """Σ q·(p − low)², units of 1e-24."""

    def __len__(self) -> int:
        return len(self.time)

    @classmethod
    def empty(cls) -> SecondBars:
        """No seconds, built directly: `second_bars` of no trades makes ~60 numpy calls (0.2 ms), and every read of
        bars builds this as its answer for a store not there."""
        none = np.zeros(0, dtype=np.int64)
        wide = WideSums(none, none)
        return cls(none, none, none, none, none, none, none, wide, wide, wide, none, wide, wide)

    def arrays(self) -> tuple[Int64Array, ...]:
        wide = (self.volume, self.buy_volume, self.quote, self.above_low, self.above_low_square)
        return (self.time, self.first_id, self.last_id, self.open, self.high, self.low, self.close, self.trade_count,
                *(part for sums in wide for part in (sums.hi, sums.lo)))  # fmt: skip

    @classmethod
    def of_arrays(cls, columns: list[Int64Array]) -> SecondBars:
        t, a, z, o, h, lo, c, n = columns[:8]
        v, b, q, m1, m2 = (WideSums(columns[i], columns[i + 1]) for i in range(8, 18, 2))
        return cls(t, a, z, o, h, lo, c, v, b, q, n, m1, m2)

    def take(self, index: IndexArray | npt.NDArray[np.bool_] | slice) -> SecondBars:
        return SecondBars.of_arrays([column[index] for column in self.arrays()])

    def between(self, start_ms: int, end_ms: int) -> SecondBars:
        """The seconds starting in ``[start_ms, end_ms)``."""
        lo, hi = np.searchsorted(self.time, [start_ms, end_ms])
        return self if (lo, hi) == (0, len(self)) else self.take(slice(int(lo), int(hi)))

    @staticmethod
    def concat(parts: list[SecondBars]) -> SecondBars:
        """Parts as one, ascending by second; where two parts hold the same second, the later part's row stands.

        (A reader may see a window rolled up into its segment between two reads: the segment, read
        later and passed later, holds every trade the window did.)
        """
        parts = [part for part in parts if len(part)]
        if not parts:
            return SecondBars.empty()
        if len(parts) == 1:
            return parts[0]
        joined = SecondBars.of_arrays([np.concatenate(cols) for cols in zip(*(p.arrays() for p in parts), strict=True)])
        if bool((np.diff(joined.time) > 0).all()):
            return joined
        order = np.argsort(joined.time, kind="stable")
        time = joined.time[order]
        keep = np.r_[time[1:] != time[:-1], True]
        return joined.take(order[keep])

    def less(self, part: SecondBars) -> SecondBars:
        """These bars with the sums of `part` taken off: `part` holds the same seconds' bars over a share of each
        trade's quantity (its RPI share, ``q - nq``), so what is left is exactly the normal-quantity bars."""
        sums = ("volume", "buy_volume", "quote", "above_low", "above_low_square")
        return replace(self, **{name: getattr(self, name).minus(getattr(part, name)) for name in sums})

    @property
    def total_count(self) -> int:
        return int(self.trade_count.sum())

    def ohlc(self) -> OhlcRows:
        """These bars without their moments: what rolls up into longer bars (the same arrays, no copy)."""
        return OhlcRows(self.time, self.first_id, self.last_id, self.open, self.high, self.low, self.close,
                        self.volume, self.buy_volume, self.quote, self.trade_count)  # fmt: skip

    def rolled(self, interval_ms: int) -> TimeBars:
        """Bars of `interval_ms` (a whole number of seconds), aligned to the epoch, exact."""
        return self.ohlc().rolled(interval_ms)

    def grouped(self, bucket: Int64Array, start: Int64Array, interval_ms: int) -> TimeBars:
        """`OhlcRows.grouped` of these bars."""
        return self.ohlc().grouped(bucket, start, interval_ms)


@dataclass(frozen=True, slots=True)
class OhlcRows:
    """Bars of a second or of a minute each (ascending by time), with the first and last agg id each holds: what rolls
    up exactly into longer bars that each row lies in wholly (rows of a second into any whole number of seconds, rows
    of a minute, or of both, into whole minutes).

    A footprint of 5-minute bars over a day rolls 1,440 minute rows (`per_minute`, made once per hour segment and
    cached) instead of 86,400 seconds.
    """

    time: Int64Array
    """Start of the row's second or minute, epoch ms."""
    first_id: Int64Array
    last_id: Int64Array
    open: Int64Array
    high: Int64Array
    low: Int64Array
    close: Int64Array
    volume: WideSums
    buy_volume: WideSums
    quote: WideSums
    trade_count: Int64Array

    def __len__(self) -> int:
        return len(self.time)

    def arrays(self) -> tuple[Int64Array, ...]:
        wide = (self.volume, self.buy_volume, self.quote)
        return (self.time, self.first_id, self.last_id, self.open, self.high, self.low, self.close, self.trade_count,
                *(part for sums in wide for part in (sums.hi, sums.lo)))  # fmt: skip

    @classmethod
    def of_arrays(cls, columns: list[Int64Array]) -> OhlcRows:
        t, a, z, o, h, lo, c, n = columns[:8]
        v, b, q = (WideSums(columns[i], columns[i + 1]) for i in range(8, 14, 2))
        return cls(t, a, z, o, h, lo, c, v, b, q, n)

    def between(self, start_ms: int, end_ms: int) -> OhlcRows:
        """The rows starting in ``[start_ms, end_ms)``."""
        lo, hi = np.searchsorted(self.time, [start_ms, end_ms])
        if (lo, hi) == (0, len(self)):
            return self
        return OhlcRows.of_arrays([column[int(lo) : int(hi)] for column in self.arrays()])

    @staticmethod
    def joined(parts: list[OhlcRows]) -> OhlcRows:
        """Parts of disjoint trades, each after the one before it in time, as one."""
        parts = [part for part in parts if len(part)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return SecondBars.empty().ohlc()
        return OhlcRows.of_arrays([np.concatenate(cols) for cols in zip(*(p.arrays() for p in parts), strict=True)])

    @property
    def total_count(self) -> int:
        return int(self.trade_count.sum())

    def per_minute(self) -> OhlcRows:
        """A row a minute holding trades, exact: open from its row holding the lowest agg id, close from the one
        holding the highest, high and low, the sums summed."""
        starts, ends = _runs(self.time // MINUTE_MS)
        if len(starts) == len(self):
            return self
        bucket = self.time // MINUTE_MS
        return OhlcRows(
            time=bucket[starts] * MINUTE_MS,
            first_id=np.minimum.reduceat(self.first_id, starts),
            last_id=np.maximum.reduceat(self.last_id, starts),
            open=self.open[_first_per_run(self.first_id, bucket, starts, ends, lowest=True)],
            high=np.maximum.reduceat(self.high, starts),
            low=np.minimum.reduceat(self.low, starts),
            close=self.close[_first_per_run(self.last_id, bucket, starts, ends, lowest=False)],
            volume=self.volume.summed_runs(starts),
            buy_volume=self.buy_volume.summed_runs(starts),
            quote=self.quote.summed_runs(starts),
            trade_count=np.add.reduceat(self.trade_count, starts),
        )

    def rolled(self, interval_ms: int) -> TimeBars:
        """Bars of `interval_ms` (a whole number of seconds), aligned to the epoch, exact."""
        if interval_ms <= 0 or interval_ms % SECOND_MS:
            raise ValueError(f"an interval of whole seconds, got {interval_ms} ms")
        bucket = self.time // interval_ms
        return self.grouped(bucket, bucket * interval_ms, interval_ms)

    def grouped(self, bucket: Int64Array, start: Int64Array, interval_ms: int) -> TimeBars:
        """One bar per run of equal `bucket` (ascending, one per row), starting at that run's `start`.

        `interval_ms` is the length the bars report: nominal where buckets differ in length
        (local days of 23 or 25 hours, `tradetape.domain.bars.calendar_bars`).
        """
        starts, ends = _runs(bucket)
        if len(self) == 0:
            return TimeBars.empty(interval_ms)
        volume = self.volume.summed_runs(starts).ints()
        buy = self.buy_volume.summed_runs(starts).ints()
        return TimeBars(
            interval_ms=interval_ms,
            start=start[starts],
            open=self.open[_first_per_run(self.first_id, bucket, starts, ends, lowest=True)],
            high=np.maximum.reduceat(self.high, starts),
            low=np.minimum.reduceat(self.low, starts),
            close=self.close[_first_per_run(self.last_id, bucket, starts, ends, lowest=False)],
            volume=volume,
            buy_volume=buy,
            sell_volume=[v - b for v, b in zip(volume, buy, strict=True)],
            trade_count=np.add.reduceat(self.trade_count, starts),
            quote=self.quote.summed_runs(starts).ints(),
        )


def _first_per_run(
    ids: Int64Array, bucket: Int64Array, starts: IndexArray, ends: IndexArray, *, lowest: bool
) -> IndexArray:
    """Per run of `bucket`, the row with the lowest (or highest) id."""
    if bool((ids[1:] > ids[:-1]).all()):  # the usual case: agg ids rise with time
        return starts if lowest else ends - 1
    order = np.lexsort((ids if lowest else -ids, bucket))
    return order[starts]


@dataclass(frozen=True, slots=True)
class TimeBars:
    """One entry per interval that holds trades, ascending by time; prices in units of 1e-8, sums exact."""

    interval_ms: int
    start: Int64Array
    open: Int64Array
    high: Int64Array
    low: Int64Array
    close: Int64Array
    volume: list[int]
    buy_volume: list[int]
    sell_volume: list[int]
    trade_count: Int64Array
    quote: list[int]
    """Σ price × quantity per bar, units of 1e-16."""

    def __len__(self) -> int:
        return len(self.start)

    @classmethod
    def empty(cls, interval_ms: int) -> TimeBars:
        none = np.zeros(0, dtype=np.int64)
        return cls(interval_ms, none, none, none, none, none, [], [], [], none, [])

    @property
    def vwap_units(self) -> list[float]:
        """VWAP per bar in units of 1e-8, correctly rounded from the exact sums (NaN where a bar's volume is 0)."""
        return [q / v if v else float("nan") for q, v in zip(self.quote, self.volume, strict=True)]


def second_bars(trades: TradeColumns) -> SecondBars:
    """The 1-second bars of `trades` (ascending by agg id, each id once); `SumOverflowError` past 2**126."""
    bucket = trades.time // SECOND_MS
    if bool((bucket[1:] >= bucket[:-1]).all()):  # the usual case: times ascend with agg ids
        ordered = trades
    else:
        order = np.argsort(bucket, kind="stable")  # agg-id order kept inside a second
        ordered, bucket = trades.take(order), bucket[order]
    starts, ends = _runs(bucket)
    price, qty = ordered.price, ordered.qty
    n = len(starts)
    low = np.minimum.reduceat(price, starts) if n else price[:0]
    above = price - np.repeat(low, ends - starts)
    weighted = product_digits(qty, above)
    return SecondBars(
        time=bucket[starts] * SECOND_MS,
        first_id=ordered.agg_id[starts],
        last_id=ordered.agg_id[ends - 1],
        open=price[starts],
        high=np.maximum.reduceat(price, starts) if n else price[:0],
        low=low,
        close=price[ends - 1],
        volume=run_sums(value_digits(qty), starts),
        buy_volume=run_sums(value_digits(np.where(ordered.buyer_maker, 0, qty)), starts),
        quote=run_sums(product_digits(price, qty), starts),
        trade_count=(ends - starts).astype(np.int64),
        above_low=run_sums(weighted, starts),
        above_low_square=run_sums(times_digits(carried(weighted), above), starts),
    )


@dataclass(frozen=True, slots=True)
class MinuteLevels:
    """Volume, taker-buy volume and trade count per minute and distinct price, ascending by (minute, price)."""

    time: Int64Array
    """Start of the minute, epoch ms."""
    price: Int64Array
    volume: Int64Array
    buy_volume: Int64Array
    trade_count: Int64Array

    def __len__(self) -> int:
        return len(self.time)

    @classmethod
    def empty(cls) -> MinuteLevels:
        empty = np.zeros(0, dtype=np.int64)
        return cls(empty, empty, empty, empty, empty)

    def arrays(self) -> tuple[Int64Array, ...]:
        return (self.time, self.price, self.volume, self.buy_volume, self.trade_count)

    def take(self, index: IndexArray | npt.NDArray[np.bool_] | slice) -> MinuteLevels:
        return MinuteLevels(*(column[index] for column in self.arrays()))

    def between(self, start_ms: int, end_ms: int) -> MinuteLevels:
        """The levels of the minutes starting in ``[start_ms, end_ms)``."""
        lo, hi = np.searchsorted(self.time, [start_ms, end_ms])
        return self if (lo, hi) == (0, len(self)) else self.take(slice(int(lo), int(hi)))

    @staticmethod
    def concat(parts: list[MinuteLevels]) -> MinuteLevels | None:
        """Parts as one; a (minute, price) in several parts is summed (levels of disjoint trades add up: a minute
        the roll-up mark cuts is in a segment and in the young windows). None if a sum could leave int64.

        Parts that follow one another once ordered by their first row are joined as they are, without a sort."""
        parts = sorted((part for part in parts if len(part)), key=lambda part: (int(part.time[0]), int(part.price[0])))
        if len(parts) <= 1:
            return parts[0] if parts else MinuteLevels.empty()
        joined = MinuteLevels(*(np.concatenate(cols) for cols in zip(*(p.arrays() for p in parts), strict=True)))
        minutes, prices = np.diff(joined.time), np.diff(joined.price)
        if bool(((minutes > 0) | ((minutes == 0) & (prices > 0))).all()):
            return joined
        if int(joined.volume.max()) * len(joined) > _INT64_MAX:
            return None
        return _grouped(joined.time, joined.price, joined.volume, joined.buy_volume, joined.trade_count)

    def per_interval(self, interval_ms: int) -> MinuteLevels:
        """Levels per interval of `interval_ms` (a whole number of minutes), aligned to the epoch."""
        if interval_ms <= 0 or interval_ms % MINUTE_MS:
            raise ValueError(f"an interval of whole minutes, got {interval_ms} ms")
        if interval_ms == MINUTE_MS or len(self) == 0:
            return self
        return _grouped(self.time - self.time % interval_ms, self.price, self.volume, self.buy_volume, self.trade_count)

    def less(self, volume: Int64Array, buy_volume: Int64Array) -> MinuteLevels:
        """These levels with a share of each trade's quantity taken off (`volume`, `buy_volume` per row: the RPI
        share): the normal-quantity levels."""
        return MinuteLevels(self.time, self.price, self.volume - volume, self.buy_volume - buy_volume, self.trade_count)

    def levels(self) -> PriceLevels | None:
        """Every minute's levels summed per price; None if a sum could leave int64."""
        return PriceLevels.of_levels(self.price, self.volume, self.buy_volume, self.trade_count)

    def bucketed(self, step: int) -> MinuteLevels:
        """The levels with each price taken down to a multiple of `step`, summed per (minute, bucket): what a
        footprint of rows a multiple of `step` reads (a level's row is its bucket's), a few rows a minute instead
        of one a price. Unchanged where a bucket's sum could leave int64 (each level is in its bucket's row too).

        No sort: prices ascend within each minute, so each bucket of a minute is one run of rows.
        """
        if step <= 0:
            raise ValueError(f"a positive price step, got {step}")
        n = len(self)
        if n == 0 or step == 1 or max(int(self.volume.max()), int(self.trade_count.max())) * n > _INT64_MAX:
            return self
        price = self.price - self.price % np.int64(step)
        heads = np.flatnonzero(np.r_[True, (self.time[1:] != self.time[:-1]) | (price[1:] != price[:-1])])
        sums = (np.add.reduceat(column, heads) for column in (self.volume, self.buy_volume, self.trade_count))
        return MinuteLevels(self.time[heads], price[heads], *sums)


def _grouped(
    time: Int64Array, price: Int64Array, volume: Int64Array, buy: Int64Array, count: Int64Array
) -> MinuteLevels:
    """Rows summed per (time, price), ascending by both (the caller has checked the sums fit int64); times are
    whole minutes.

    Sorted by one int64 key of (minute, price) where it fits, stably: rows come in runs already ascending (each
    minute's prices), which the sort finds. Measured on a day's 1.4M minute levels summed per 5 minutes: 200 ms
    with a lexsort of the two columns, 25 ms with the key.
    """
    if len(time) == 0:
        return MinuteLevels.empty()
    first, low = int(time.min()), int(price.min())
    slots = int(price.max()) - low + 1
    if ((int(time.max()) - first) // MINUTE_MS + 1) * slots <= _INT64_MAX:
        key = (time - first) // MINUTE_MS * slots + (price - low)
        order = np.argsort(key, kind="stable")
        key = key[order]
        heads = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    else:  # prices spread beyond what one int64 key can hold beside the minute
        order = np.lexsort((price, time))
        ordered_time, ordered_price = time[order], price[order]
        changed = (ordered_time[1:] != ordered_time[:-1]) | (ordered_price[1:] != ordered_price[:-1])
        heads = np.flatnonzero(np.r_[True, changed])
    picked = order[heads]
    sums = [np.add.reduceat(column[order], heads) for column in (volume, buy, count)]
    return MinuteLevels(time[picked], price[picked], *sums)


def minute_levels(trades: TradeColumns) -> MinuteLevels | None:
    """The per-minute price levels of `trades`; None if a sum could leave int64 (then read the trades)."""
    if len(trades) == 0:
        return MinuteLevels.empty()
    qty = trades.qty
    if int(qty.max()) * len(qty) > _INT64_MAX:
        return None
    buy = np.where(trades.buyer_maker, 0, qty)
    return _grouped(trades.time - trades.time % MINUTE_MS, trades.price, qty, buy, np.ones(len(qty), dtype=np.int64))
