"""Sets of agg ids as sorted, disjoint, non-adjacent inclusive ranges.

Ingest tracks per symbol which ids it handed to JetStream and which the stream confirmed.
Ids arrive almost always in order, so `add` extends the last range in O(1); the general
cases (holes, fills below the top) bisect. Pure, no I/O.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator


class RangeSet:
    __slots__ = ("_hi", "_lo")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._lo: list[int] = []
        self._hi: list[int] = []
        for lo, hi in ranges:
            self.add_range(lo, hi)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self._lo, self._hi, strict=True))

    def __len__(self) -> int:
        """The number of ranges."""
        return len(self._lo)

    def __repr__(self) -> str:
        return f"RangeSet({list(self)})"

    @property
    def ranges(self) -> list[tuple[int, int]]:
        return list(self)

    @property
    def max(self) -> int | None:
        return self._hi[-1] if self._hi else None

    @property
    def min(self) -> int | None:
        return self._lo[0] if self._lo else None

    def count(self) -> int:
        """The number of ids held."""
        return sum(hi - lo + 1 for lo, hi in self)

    def __contains__(self, value: int) -> bool:
        hi = self._hi
        if not hi or value > hi[-1]:
            return False
        index = bisect.bisect_left(hi, value)
        return self._lo[index] <= value

    def add(self, value: int) -> None:
        hi = self._hi
        if hi:
            last = hi[-1]
            if value == last + 1:
                hi[-1] = value
                return
            if value > last + 1:
                self._lo.append(value)
                hi.append(value)
                return
        self.add_range(value, value)

    def add_range(self, lo: int, hi: int) -> None:
        if lo > hi:
            return
        los, his = self._lo, self._hi
        if not his or lo > his[-1] + 1:
            los.append(lo)
            his.append(hi)
            return
        # first range that ends at or after lo - 1 (touching counts), last that starts at or before hi + 1
        start = bisect.bisect_left(his, lo - 1)
        stop = bisect.bisect_right(los, hi + 1)
        if start < stop:
            lo = min(lo, los[start])
            hi = max(hi, his[stop - 1])
        los[start:stop] = [lo]
        his[start:stop] = [hi]

    def remove_range(self, lo: int, hi: int) -> None:
        if lo > hi or not self._hi:
            return
        los, his = self._lo, self._hi
        start = bisect.bisect_left(his, lo)
        stop = bisect.bisect_right(los, hi)
        if start >= stop:
            return
        keep_lo: list[int] = []
        keep_hi: list[int] = []
        if los[start] < lo:
            keep_lo.append(los[start])
            keep_hi.append(lo - 1)
        if his[stop - 1] > hi:
            keep_lo.append(hi + 1)
            keep_hi.append(his[stop - 1])
        los[start:stop] = keep_lo
        his[start:stop] = keep_hi

    def trim_below(self, value: int) -> None:
        """Forget every id below `value`."""
        self.remove_range(self._lo[0] if self._lo else value, value - 1)

    def missing(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The ranges of `[lo, hi]` not in the set, ascending."""
        out: list[tuple[int, int]] = []
        if lo > hi:
            return out
        los, his = self._lo, self._hi
        index = bisect.bisect_left(his, lo)
        cursor = lo
        while index < len(los) and los[index] <= hi:
            if los[index] > cursor:
                out.append((cursor, los[index] - 1))
            cursor = max(cursor, his[index] + 1)
            index += 1
        if cursor <= hi:
            out.append((cursor, hi))
        return out

    def first_from(self, lo: int) -> int | None:
        """The lowest id `>= lo` in the set."""
        his = self._hi
        index = bisect.bisect_left(his, lo)
        if index >= len(his):
            return None
        return max(lo, self._lo[index])
