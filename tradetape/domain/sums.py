"""Exact per-group sums of int64 columns (volumes in units of 1e-8) without int64 overflow.

Quantities are split into chunks of `bits` bits with `n * (2**bits - 1) < 2**53`, so every
float64 partial sum of a chunk column is an exactly represented integer whatever the
summation order; the chunk sums per group come from `np.bincount` and are recombined as
Python ints. Nothing accumulates in int64, so sums past 9.2e18 units do not overflow.

Wide sums (`WideSums`, `run_sums`) keep such sums as numpy columns instead: each number is
split into base-2**21 digits (a product of two int64s into six), digits are summed per run
in int64, and carries propagated into a pair ``hi * 2**63 + lo``: exact up to 2**126, all
vectorised, and summable again (the aggregate layer's per-second volumes and notionals).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tradetape.errors import LimitError

Int64Array = npt.NDArray[np.int64]

_FLOAT_EXACT_BITS = 53  # integers below 2**53 are exact in float64
_INT64_MAX = np.iinfo(np.int64).max


def exact_group_sums(
    groups: npt.NDArray[np.int64], values: npt.NDArray[np.int64], n_groups: int, *, max_value: int | None = None
) -> list[int]:
    """Sum of the non-negative `values` per group `0 .. n_groups - 1`, as exact Python ints."""
    n = int(values.shape[0])
    if n == 0:
        return [0] * n_groups
    max_qty = int(values.max()) if max_value is None else max_value
    bits = _FLOAT_EXACT_BITS - n.bit_length()
    if bits < 1:  # more than 2**52 values: not reachable in memory
        raise ValueError("too many values to sum exactly")
    # When even all values together cannot reach 2**63, recombine the chunks in int64.
    fits_int64 = max_qty * n <= _INT64_MAX
    wide = [0] * n_groups
    narrow = np.zeros(n_groups, dtype=np.int64)
    shift = 0
    remaining = max_qty
    mask = np.int64((1 << bits) - 1)
    while True:
        chunk = values if shift == 0 else np.right_shift(values, shift)
        if remaining >> bits:
            chunk = np.bitwise_and(chunk, mask)
        sums = np.bincount(groups, weights=chunk.astype(np.float64), minlength=n_groups)
        exact = sums.astype(np.int64)
        if fits_int64:
            narrow += np.left_shift(exact, shift)
        else:
            for i, s in enumerate(exact.tolist()):
                if s:
                    wide[i] += s << shift
        remaining >>= bits
        shift += bits
        if not remaining:
            return narrow.tolist() if fits_int64 else wide  # int64's tolist gives Python ints


# --- wide sums: exact past int64, kept as int64 pairs ------------------------------------------

_DIGIT_BITS = 21
_DIGIT_MASK = np.int64((1 << _DIGIT_BITS) - 1)
_HALF_DIGITS = 3
"""Base-2**21 digits in one non-negative int64 (63 bits)."""


_RUN_ROWS = 2**31
"""Rows `WideSums.summed_runs` sums by halves of 32 bits: more could carry a run's low halves past int64."""
_LOW_32_MAX = 2**32 - 1
_LOW_32_MASK = np.int64(_LOW_32_MAX)
_LOW_31_MASK = np.int64(2**31 - 1)
_SHIFT_32_SIGNED = np.int64(32)


class SumOverflowError(LimitError, ArithmeticError):
    """A sum of 2**126 units or more (a notional of ~8.5e21 quote units): past what wide sums keep exactly."""


@dataclass(frozen=True, slots=True)
class WideSums:
    """Exact non-negative sums as int64 pairs: each value is ``hi * 2**63 + lo``, with ``0 <= lo, hi < 2**63``.

    Why: price × quantity is in units of 1e-16 and passes int64 at a few thousand USDT of
    notional; a pair keeps every plausible sum exact in two numpy columns (the high one all
    zeros, and so free under zstd, for most symbols), which sum again exactly per group.
    """

    hi: Int64Array
    lo: Int64Array

    def __len__(self) -> int:
        return len(self.lo)

    @classmethod
    def of(cls, values: Int64Array) -> WideSums:
        """Non-negative int64 values as wide ones."""
        return cls(np.zeros(len(values), dtype=np.int64), values)

    def ints(self) -> list[int]:
        """The values as exact Python ints."""
        if not self.hi.any():
            ints: list[int] = self.lo.tolist()  # Python ints already, as int64's tolist gives them
            return ints
        return [(h << 63) | lo for h, lo in zip(self.hi.tolist(), self.lo.tolist(), strict=True)]

    def floats(self) -> npt.NDArray[np.float64]:
        """The values as floats (deterministic, not always correctly rounded past 2**63)."""
        return self.lo.astype(np.float64) + self.hi.astype(np.float64) * 2.0**63

    def digits(self) -> list[Int64Array]:
        return _digits(self.lo) + _digits(self.hi)

    def summed_runs(self, starts: npt.NDArray[np.intp]) -> WideSums:
        """Exact sums of consecutive runs (each starting at `starts`): `run_sums` of `digits`, in a third of its
        passes over the rows. Each `lo` is split at 32 bits and each half summed per run in int64, which fewer than
        2**31 rows cannot overflow, nor `hi`'s sums where its largest value times the rows stays below 2**63 - 2**32
        (then no sum reaches 2**126); else by digits. Why: a worker's first read of an hour rolls its 3,600 second
        bars into minutes three sums at a time (measured: ~0.3 of an older day's cold answer by digits)."""
        rows = len(self.lo)
        top = int(self.hi.max()) if rows else 0
        if len(starts) == 0 or rows >= _RUN_ROWS or top * rows > _INT64_MAX - _LOW_32_MAX:
            return run_sums(self.digits(), starts)
        low = np.add.reduceat(self.lo & _LOW_32_MASK, starts)  # each < 2**32: a run's sum < 2**63
        middle = np.add.reduceat(self.lo >> _SHIFT_32_SIGNED, starts) + (low >> _SHIFT_32_SIGNED)  # < 2**62 + 2**31
        hi = np.add.reduceat(self.hi, starts) if top else np.zeros(len(starts), dtype=np.int64)
        lo = ((middle & _LOW_31_MASK) << _SHIFT_32_SIGNED) | (low & _LOW_32_MASK)
        return WideSums(hi + (middle >> np.int64(31)), lo)

    def minus(self, other: WideSums) -> WideSums:
        """Each value less `other`'s, exact; every difference must be at least 0 (a part of a sum taken off it)."""
        lo = self.lo - other.lo  # both in [0, 2**63): no overflow
        borrow = lo < 0
        lo[borrow] += _INT64_MAX  # + 2**63 in two steps, each in range
        lo[borrow] += 1
        hi = self.hi - other.hi - borrow.astype(np.int64)
        if bool((hi < 0).any()):
            raise ValueError("a wide difference below 0")
        return WideSums(hi, lo)


def _digits(values: Int64Array) -> list[Int64Array]:
    """Non-negative int64 values as three base-2**21 digit columns."""
    return [(values >> np.int64(_DIGIT_BITS * k)) & _DIGIT_MASK for k in range(_HALF_DIGITS)]


def product_digits(a: Int64Array, b: Int64Array) -> list[Int64Array]:
    """``a * b`` per element (both non-negative int64) as six base-2**21 digit columns, not carried (each < 2**24)."""
    return times_digits(_digits(a), b)


def times_digits(digits: list[Int64Array], b: Int64Array) -> list[Int64Array]:
    """The number whose carried digit columns (each < 2**21) are given, times `b` (non-negative int64), per element:
    its digit columns, not carried (each < 2**24)."""
    out = [np.zeros(len(b), dtype=np.int64) for _ in range(len(digits) + _HALF_DIGITS)]
    for i, x in enumerate(digits):
        for j, y in enumerate(_digits(b)):
            product = x * y  # < 2**42
            out[i + j] += product & _DIGIT_MASK
            out[i + j + 1] += product >> np.int64(_DIGIT_BITS)
    return out


def carried(digits: list[Int64Array]) -> list[Int64Array]:
    """Per element, the same numbers with carries propagated: each digit below 2**21, one more digit on top."""
    out = [column.copy() for column in digits] + [np.zeros_like(digits[0])]
    for m in range(len(out) - 1):
        out[m + 1] += out[m] >> np.int64(_DIGIT_BITS)
        out[m] &= _DIGIT_MASK
    return out


def value_digits(values: Int64Array) -> list[Int64Array]:
    """Non-negative int64 values as digit columns, for `run_sums`."""
    return _digits(values)


def run_sums(digits: list[Int64Array], starts: npt.NDArray[np.intp]) -> WideSums:
    """Exact sums of consecutive runs (each starting at `starts`) of the numbers whose digit columns are given.

    Each digit column is summed in int64 (a run of n digits below 2**24 stays below 2**63
    for n < 2**39), then the carries are propagated; `SumOverflowError` past 2**126.
    With `starts` every index, it carries each number alone (digits back into a pair).
    """
    if len(starts) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return WideSums(empty, empty)
    sums = [np.add.reduceat(column, starts) for column in digits]
    sums += [np.zeros(len(starts), dtype=np.int64) for _ in range(max(2 * _HALF_DIGITS + 1 - len(sums), 1))]
    for m in range(len(sums) - 1):
        sums[m + 1] += sums[m] >> np.int64(_DIGIT_BITS)
        sums[m] &= _DIGIT_MASK
    if any(bool(column.any()) for column in sums[2 * _HALF_DIGITS :]):
        raise SumOverflowError("a sum reaches 2**126 units: past what is kept exactly")

    def joined(part: list[Int64Array]) -> Int64Array:
        return part[0] | (part[1] << np.int64(_DIGIT_BITS)) | (part[2] << np.int64(2 * _DIGIT_BITS))

    return WideSums(joined(sums[_HALF_DIGITS : 2 * _HALF_DIGITS]), joined(sums[:_HALF_DIGITS]))


_LOW_32 = np.uint64(0xFFFF_FFFF)
_SHIFT_32 = np.uint64(32)


def product_plus(a: Int64Array, b: Int64Array, c: WideSums) -> WideSums:
    """``a * b + c`` per element, exact, for non-negative `a` and `b`; `SumOverflowError` at 2**126 or more.

    Why not `product_digits` and `run_sums`: in 128 bits made of uint64 halves it is ~15 numpy passes instead of
    ~60 (the aggregate layer derives each second's quote volume so on every decode).
    """
    if bool((a < 0).any()) or bool((b < 0).any()):
        raise ValueError("a product of a negative value")
    ua, ub = a.view(np.uint64), b.view(np.uint64)
    a_lo, a_hi, b_lo, b_hi = ua & _LOW_32, ua >> _SHIFT_32, ub & _LOW_32, ub >> _SHIFT_32
    low = a_lo * b_lo  # < 2**64
    middle = a_hi * b_lo + a_lo * b_hi  # each < 2**63: the sum < 2**64
    lower = low + (middle << _SHIFT_32)  # mod 2**64
    upper = a_hi * b_hi + (middle >> _SHIFT_32) + (lower < low).astype(np.uint64)
    c_lo, c_hi = c.lo.view(np.uint64), c.hi.view(np.uint64)
    total = lower + (c_lo | ((c_hi & np.uint64(1)) << np.uint64(63)))
    upper += (c_hi >> np.uint64(1)) + (total < lower).astype(np.uint64)
    if bool((upper >> np.uint64(62)).any()):
        raise SumOverflowError("a sum reaches 2**126 units: past what is kept exactly")
    hi = (upper << np.uint64(1)) | (total >> np.uint64(63))
    return WideSums(hi.view(np.int64), (total & np.uint64(_INT64_MAX)).view(np.int64))
