"""Id runs: a set of agg ids as maximal runs of consecutive ids.

Agg ids are consecutive per symbol, so a complete tape is one run and every gap splits
one; the size grows with the number of gaps, never with the number of ids. The store's
completeness index holds one per symbol (`tradetape.store.index` encodes it); coverage,
imports, repairs and live updates compute with them. Pure functions over numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tradetape.domain.columns import BoolArray, Int64Array


@dataclass(frozen=True, slots=True)
class IdRuns:
    """Inclusive runs ``[low[i], high[i]]``, ascending, disjoint and not adjacent."""

    low: Int64Array
    high: Int64Array

    @classmethod
    def empty(cls) -> IdRuns:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))

    @classmethod
    def of_ids(cls, ids: Int64Array) -> IdRuns:
        """The runs of sorted, unique ids."""
        if len(ids) == 0:
            return cls.empty()
        breaks = np.flatnonzero(np.diff(ids) != 1)
        return cls(ids[np.r_[0, breaks + 1]], ids[np.r_[breaks, len(ids) - 1]])

    def __len__(self) -> int:
        return len(self.low)

    @property
    def count(self) -> int:
        """How many ids the runs hold."""
        return int((self.high - self.low + 1).sum())

    def contains(self, ids: Int64Array) -> BoolArray:
        """Per id, whether a run holds it."""
        if len(self) == 0:
            return np.zeros(len(ids), dtype=np.bool_)
        run = np.searchsorted(self.high, ids, side="left")
        inside = run < len(self)
        held = np.zeros(len(ids), dtype=np.bool_)
        held[inside] = self.low[run[inside]] <= ids[inside]
        return held

    def union(self, other: IdRuns) -> IdRuns:
        if len(other) == 0:
            return self
        if len(self) == 0:
            return other
        low = np.concatenate([self.low, other.low])
        high = np.concatenate([self.high, other.high])
        order = np.argsort(low, kind="stable")
        low, high = low[order], high[order]
        reach = np.maximum.accumulate(high)
        # A run starts where it neither overlaps nor touches everything before it.
        starts = np.r_[True, low[1:] > reach[:-1] + 1]
        first = np.flatnonzero(starts)
        last = np.r_[first[1:] - 1, len(low) - 1]
        return IdRuns(low[first], reach[last])

    def add(self, ids: Int64Array) -> IdRuns:
        """The runs with sorted, unique `ids` added."""
        return self.union(IdRuns.of_ids(ids))

    def clip(self, first_id: int | None, last_id: int | None) -> IdRuns:
        """The part of the runs inside ``[first_id, last_id]`` (None: unbounded)."""
        low, high = self.low, self.high
        if first_id is not None:
            keep = high >= first_id
            low, high = np.maximum(low[keep], first_id), high[keep]
        if last_id is not None:
            keep = low <= last_id
            low, high = low[keep], np.minimum(high[keep], last_id)
        return IdRuns(low, high)

    def gaps(self) -> list[tuple[int, int]]:
        """Missing inclusive id ranges between the first and the last id held."""
        return list(zip((self.high[:-1] + 1).tolist(), (self.low[1:] - 1).tolist(), strict=True))
