"""Bars that close on activity, not time: every N trades, or every threshold of volume or of quote value.

The closing rule: trades are taken in agg-id order; a bar closes on the trade at which its
running total (trade count, base volume, or price × quantity) reaches the threshold
(total ≥ threshold). That trade is the bar's last, never split; the next bar starts at 0
with the next trade. The last bar of a range may fall short: it is reported as partial.

Totals are exact: a quantity (units of 1e-8) or a price × quantity (units of 1e-16, up to
2**126, far past int64) is cut into 32-bit limbs, the limbs are summed cumulatively in int64
and carried into running totals held as `hi * 2**64 + lo`, which compare in the order of
the true values; each bar's close is then found by binary search (numpy), with Python ints
only at bar boundaries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tradetape.domain.aggregates import TimeBars
from tradetape.domain.bars import grouped_bars
from tradetape.domain.columns import Int64Array, TradeColumns
from tradetape.errors import LimitError

_BITS = 32
_MASK = (1 << _BITS) - 1
_MAX_TRADES = 1 << 28
"""Limbs below 2**34 summed over fewer trades than this stay below 2**62 in int64."""

UInt64Array = npt.NDArray[np.uint64]


class TooManyBars(LimitError, ValueError):
    """More bars than the caller allows, or totals beyond what is summed exactly (2**127)."""


@dataclass(frozen=True, slots=True)
class RunningTotal:
    """Exact running totals `value[i] = x[0] + ... + x[i]`, held as `hi[i] * 2**64 + lo[i]` (ascending)."""

    hi: Int64Array
    lo: UInt64Array

    def __len__(self) -> int:
        return len(self.hi)

    def at(self, index: int) -> int:
        return (int(self.hi[index]) << 64) | int(self.lo[index])

    def first_reaching(self, target: int, begin: int) -> int:
        """The smallest index from `begin` whose total is at least `target` (the length when none is)."""
        high, low = divmod(target, 1 << 64)
        his = self.hi[begin:]
        if not len(his) or high > int(his[-1]):
            return len(self)
        left = int(np.searchsorted(his, high, side="left"))
        right = int(np.searchsorted(his, high, side="right"))
        if left == right:
            return begin + left
        return begin + left + int(np.searchsorted(self.lo[begin + left : begin + right], np.uint64(low), side="left"))


def running_total(limbs: list[Int64Array]) -> RunningTotal:
    """Running totals of `sum(limbs[k] << 32k)` per trade, for up to four non-negative limbs below 2**34."""
    if len(limbs[0]) >= _MAX_TRADES:
        raise TooManyBars(f"more than {_MAX_TRADES} trades to total exactly")
    digits: list[Int64Array] = []
    carry: Int64Array | int = 0
    for k in range(4):
        total = np.cumsum(limbs[k]) + carry if k < len(limbs) else np.asarray(carry, dtype=np.int64)
        if k == 3:
            digits.append(total)
        else:
            digits.append(total & _MASK)
            carry = total >> _BITS
    if int(digits[3][-1]) >> (63 - _BITS):
        raise TooManyBars("the totals reach 2**127 units: ask a shorter range")
    hi = (digits[3] << _BITS) | digits[2]
    lo = (digits[1].astype(np.uint64) << np.uint64(_BITS)) | digits[0].astype(np.uint64)
    return RunningTotal(hi, lo)


def quantity_limbs(qty: Int64Array) -> list[Int64Array]:
    return [qty & _MASK, qty >> _BITS]


def notional_limbs(price: Int64Array, qty: Int64Array) -> list[Int64Array]:
    """price × quantity per trade as four 32-bit-weighted limbs (each below 2**34), exact."""
    p_low, p_high = (price & _MASK).astype(np.uint64), (price >> _BITS).astype(np.uint64)
    q_low, q_high = (qty & _MASK).astype(np.uint64), (qty >> _BITS).astype(np.uint64)
    mask, bits = np.uint64(_MASK), np.uint64(_BITS)
    low = p_low * q_low  # < 2**64
    cross_a = p_high * q_low  # < 2**63
    cross_b = p_low * q_high
    high = p_high * q_high  # < 2**62
    return [
        (low & mask).astype(np.int64),
        ((low >> bits) + (cross_a & mask) + (cross_b & mask)).astype(np.int64),
        ((cross_a >> bits) + (cross_b >> bits) + (high & mask)).astype(np.int64),
        (high >> bits).astype(np.int64),
    ]


@dataclass(frozen=True, slots=True)
class ThresholdBars:
    bars: TimeBars
    """`start` is each bar's first trade's time; `interval_ms` 0."""
    end: Int64Array
    """Each bar's last (closing) trade's time."""
    first: Int64Array
    """Each bar's first trade's position in the trades."""
    last_complete: bool
    """Whether the last bar reached the threshold (false: it is partial)."""


def tick_bars(trades: TradeColumns, count: int, limit: int) -> ThresholdBars:
    """A bar every `count` trades."""
    n = len(trades)
    if count < 1:
        raise ValueError(f"tick bars need a positive count, got {count}")
    if -(-n // count) > limit:
        raise TooManyBars(f"{-(-n // count)} bars of {count} trades; at most {limit}")
    return _bars(trades, np.arange(0, n, count, dtype=np.int64), n % count == 0)


def volume_bars(trades: TradeColumns, threshold: int, limit: int) -> ThresholdBars:
    """A bar closing where its base volume (units of 1e-8) reaches `threshold`."""
    return _summed(trades, lambda part: quantity_limbs(trades.qty[part]), threshold, limit)


def dollar_bars(trades: TradeColumns, threshold: int, limit: int) -> ThresholdBars:
    """A bar closing where its quote value, price × quantity in units of 1e-16, reaches `threshold`."""
    return _summed(trades, lambda part: notional_limbs(trades.price[part], trades.qty[part]), threshold, limit)


CHUNK = 1 << 16
"""Trades totalled at a time: the limbs and running totals of a chunk are all that is held (~2 MB), not a range's."""


def _summed(
    trades: TradeColumns, limbs_of: Callable[[slice], list[Int64Array]], threshold: int, limit: int
) -> ThresholdBars:
    """Bar starts found chunk by chunk; `carried` is the total of the bar still open where a chunk begins."""
    if threshold < 1:
        raise ValueError(f"a bar threshold must be positive, got {threshold}")
    firsts: list[int] = []
    carried, open_bar = 0, False
    for offset in range(0, len(trades), CHUNK):
        total = running_total(limbs_of(slice(offset, offset + CHUNK)))
        begin, before = 0, -carried  # totals inside the chunk count from its start; the open bar's part before it
        while begin < len(total):
            if not open_bar:
                if len(firsts) == limit:
                    raise TooManyBars(f"more than {limit} bars")
                firsts.append(offset + begin)
            close = total.first_reaching(before + threshold, begin)
            if close >= len(total):
                carried, open_bar = total.at(len(total) - 1) - before, True
                break
            before, begin = total.at(close), close + 1
            carried, open_bar = 0, False
    return _bars(trades, np.array(firsts, dtype=np.int64), not open_bar)


def _bars(trades: TradeColumns, firsts: Int64Array, last_complete: bool) -> ThresholdBars:
    n = len(trades)
    if n == 0:
        return ThresholdBars(TimeBars.empty(0), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), True)
    lasts = np.r_[firsts[1:] - 1, n - 1]
    bars = grouped_bars(trades.price, trades.qty, trades.buyer_maker, firsts, trades.time[firsts], 0)
    return ThresholdBars(bars, trades.time[lasts], firsts, last_complete)
