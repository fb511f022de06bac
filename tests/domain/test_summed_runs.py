"""`WideSums.summed_runs` (each run's sum by 32-bit halves) equals the digit route it replaces and Python's integers:
the aggregate layer rolls every hour's second bars into minutes with it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradetape.domain.sums import SumOverflowError, WideSums, run_sums

INT63 = st.integers(0, 2**63 - 1)
SMALL = st.integers(0, 2**20)


@given(
    st.lists(st.tuples(st.one_of(SMALL, INT63), st.one_of(st.just(0), SMALL, INT63)), min_size=1, max_size=60),
    st.sets(st.integers(1, 59)),
)
def test_equals_the_digit_route_and_python_integers(rows: list[tuple[int, int]], cuts: set[int]) -> None:
    lo, hi = (np.array(column, dtype=np.int64) for column in zip(*rows, strict=True))
    sums = WideSums(hi, lo)
    starts = np.array([0, *sorted(cut for cut in cuts if cut < len(rows))], dtype=np.intp)
    bounds = [*starts.tolist(), len(rows)]
    expected = [sum((h << 63) + low for low, h in rows[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    if max(expected) >= 2**126:
        with pytest.raises(SumOverflowError):
            sums.summed_runs(starts)
        return
    found = sums.summed_runs(starts)
    reference = run_sums(sums.digits(), starts)
    assert np.array_equal(found.hi, reference.hi) and np.array_equal(found.lo, reference.lo)
    assert found.ints() == expected


def test_low_halves_that_carry_into_hi() -> None:
    top = 2**63 - 1
    sums = WideSums(np.array([0, 0, 0, 5], dtype=np.int64), np.array([top, top, top, 1], dtype=np.int64))
    found = sums.summed_runs(np.array([0, 3], dtype=np.intp))
    assert found.ints() == [3 * top, (5 << 63) + 1]
    assert int(found.lo.min()) >= 0 and int(found.lo.max()) < 2**63
