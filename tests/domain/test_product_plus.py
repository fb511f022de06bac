"""`product_plus` (a × b + c, exact in 128 bits of uint64 halves) equals Python's integers, and refuses what wide
sums cannot keep: the aggregate layer derives every second's quote volume with it on decode."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradetape.domain.sums import SumOverflowError, WideSums, product_digits, product_plus, run_sums

INT63 = st.integers(0, 2**63 - 1)
ROWS = st.lists(st.tuples(INT63, INT63, st.integers(0, 2**63 - 1), INT63), min_size=1, max_size=40)


def columns(rows: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray, WideSums]:
    a, b, hi, lo = (np.array(column, dtype=np.int64) for column in zip(*rows, strict=True))
    return a, b, WideSums(hi, lo)


@given(ROWS)
def test_equals_python_integers_or_refuses_past_2_126(rows: list[tuple[int, int, int, int]]) -> None:
    a, b, c = columns(rows)
    expected = [x * y + (h << 63) + lo for x, y, h, lo in rows]
    if max(expected) >= 2**126:
        with pytest.raises(SumOverflowError):
            product_plus(a, b, c)
    else:
        assert product_plus(a, b, c).ints() == expected


@given(st.lists(st.tuples(INT63, st.integers(0, 2**40), st.integers(0, 2**20), INT63), min_size=1, max_size=40))
def test_equals_the_digit_columns_it_replaces(rows: list[tuple[int, int, int, int]]) -> None:
    a, b, c = columns(rows)
    digits = [x + y for x, y in zip(product_digits(a, b), c.digits(), strict=True)]
    reference = run_sums(digits, np.arange(len(a), dtype=np.intp))
    found = product_plus(a, b, c)
    assert np.array_equal(found.hi, reference.hi) and np.array_equal(found.lo, reference.lo)


def test_a_negative_factor_is_refused() -> None:
    values = np.array([3, -1], dtype=np.int64)
    with pytest.raises(ValueError):
        product_plus(values, values, WideSums.of(np.zeros(2, dtype=np.int64)))
