"""Exact per-group sums of int64 columns (volumes in units of 1e-8) without int64 overflow.

Quantities are split into chunks of `bits` bits with `n * (2**bits - 1) < 2**53`, so every
float64 partial sum of a chunk column is an exactly represented integer whatever the
summation order; the chunk sums per group come from `np.bincount` and are recombined as
Python ints. Nothing accumulates in int64, so sums past 9.2e18 units do not overflow.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

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
            return [int(v) for v in narrow.tolist()] if fits_int64 else wide
