"""Coverage and id-gap ranges."""

from __future__ import annotations

import numpy as np
import pytest

from tradetape.domain.gaps import Coverage, coverage, find_gaps


def ids(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def test_no_gaps_in_consecutive_ids() -> None:
    assert find_gaps(ids(5, 6, 7, 8)) == []


def test_empty_and_single_id_have_no_gaps() -> None:
    assert find_gaps(ids()) == []
    assert find_gaps(ids(42)) == []


def test_one_gap() -> None:
    # 10, 11 held, 12..14 missing, 15 held.
    assert find_gaps(ids(10, 11, 15)) == [(12, 14)]


def test_single_missing_id() -> None:
    assert find_gaps(ids(1, 2, 4, 5)) == [(3, 3)]


def test_several_gaps() -> None:
    # missing: 2; 5..9; 11; nothing after the last id is a gap.
    assert find_gaps(ids(1, 3, 4, 10, 12, 13)) == [(2, 2), (5, 9), (11, 11)]


def test_gaps_with_real_agg_ids() -> None:
    base = 3_800_397_495
    held = np.concatenate([np.arange(base, base + 1000), np.arange(base + 1500, base + 3000)]).astype(np.int64)
    gaps = find_gaps(held)
    assert gaps == [(base + 1000, base + 1499)]
    assert all(type(x) is int for gap in gaps for x in gap)


@pytest.mark.parametrize("bad", [(1, 3, 2), (1, 2, 2, 3)])
def test_gaps_reject_unsorted_or_duplicate_ids(bad: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        find_gaps(ids(*bad))


def test_coverage_summary() -> None:
    got = coverage(ids(100, 101, 104, 105), ids(1_000, 1_000, 1_250, 1_900))
    assert got == Coverage(
        trade_count=4,
        first_id=100,
        last_id=105,
        first_time=1_000,
        last_time=1_900,
        gaps=[(102, 103)],
    )


def test_coverage_of_nothing() -> None:
    got = coverage(ids(), ids())
    assert got == Coverage(0, None, None, None, None, [])


def test_coverage_sorts_ids_it_is_given_out_of_order() -> None:
    got = coverage(ids(7, 3, 4), ids(30, 10, 20))
    assert (got.first_id, got.last_id, got.gaps) == (3, 7, [(5, 6)])
    assert (got.first_time, got.last_time) == (10, 30)


def test_coverage_rejects_duplicate_ids_and_mismatched_columns() -> None:
    with pytest.raises(ValueError):
        coverage(ids(1, 2, 2), ids(1, 2, 3))
    with pytest.raises(ValueError):
        coverage(ids(1, 2), ids(1))
