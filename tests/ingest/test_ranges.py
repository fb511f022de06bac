"""RangeSet: the id sets ingest keeps per symbol."""

from __future__ import annotations

import random

from tradetape.services.ingest.ranges import RangeSet


def test_in_order_adds_extend_one_range() -> None:
    ids = RangeSet()
    for value in range(10, 20):
        ids.add(value)
    assert ids.ranges == [(10, 19)]
    assert 15 in ids and 9 not in ids and 20 not in ids
    assert (ids.min, ids.max, ids.count()) == (10, 19, 10)


def test_holes_and_fills_merge() -> None:
    ids = RangeSet([(1, 3), (7, 9)])
    ids.add(5)
    assert ids.ranges == [(1, 3), (5, 5), (7, 9)]
    ids.add(4)
    ids.add(6)
    assert ids.ranges == [(1, 9)]
    ids.add_range(20, 30)
    ids.add_range(0, 25)
    assert ids.ranges == [(0, 30)]


def test_remove_splits_and_trims() -> None:
    ids = RangeSet([(1, 10), (20, 30)])
    ids.remove_range(5, 5)
    assert ids.ranges == [(1, 4), (6, 10), (20, 30)]
    ids.remove_range(8, 25)
    assert ids.ranges == [(1, 4), (6, 7), (26, 30)]
    ids.trim_below(7)
    assert ids.ranges == [(7, 7), (26, 30)]
    ids.remove_range(100, 200)
    assert ids.ranges == [(7, 7), (26, 30)]


def test_missing_and_first_from() -> None:
    ids = RangeSet([(3, 4), (8, 8)])
    assert ids.missing(1, 10) == [(1, 2), (5, 7), (9, 10)]
    assert ids.missing(3, 4) == []
    assert ids.missing(5, 4) == []
    assert ids.first_from(5) == 8
    assert ids.first_from(4) == 4
    assert ids.first_from(9) is None


def test_random_operations_match_a_plain_set() -> None:
    rng = random.Random(7)
    ids, plain = RangeSet(), set[int]()
    for _ in range(3000):
        lo = rng.randrange(200)
        hi = lo + rng.randrange(6)
        if rng.random() < 0.6:
            ids.add_range(lo, hi)
            plain |= set(range(lo, hi + 1))
        else:
            ids.remove_range(lo, hi)
            plain -= set(range(lo, hi + 1))
        assert {v for a, b in ids for v in range(a, b + 1)} == plain
    ranges = ids.ranges
    assert all(a <= b for a, b in ranges)
    assert all(b + 1 < c for (_, b), (c, _) in zip(ranges, ranges[1:], strict=False))
