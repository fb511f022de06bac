"""The completeness index: per symbol, the agg ids stored, as maximal runs of consecutive ids.

Agg ids are consecutive per symbol, so a complete tape is one run and every gap splits
one; the index's size grows with the number of gaps, never with the number of trades.
The writer updates it in the same atomic write as the trades it adds (so it is never
ahead of or behind the store) and uses it to drop trades it holds already, which keeps
each agg id once across windows and segments. Coverage of the whole tape is answered
from it alone. Pure functions over numpy arrays, plus the value codec (sealed: `tradetape.store.sealed`).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack
import numpy as np

from tradetape.domain.columns import BoolArray, Int64Array
from tradetape.errors import FormatError
from tradetape.store.sealed import seal, unseal

INDEX_FORMAT = 1


class IndexFormatError(FormatError):
    """A stored index value that this version cannot read."""


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

    def encode(self) -> bytes:
        body = {"v": INDEX_FORMAT, "low": self.low.astype("<i8").tobytes(), "high": self.high.astype("<i8").tobytes()}
        return seal(msgpack.packb(body, use_bin_type=True))

    @classmethod
    def decode(cls, value: bytes | None) -> IdRuns:
        if value is None:
            return cls.empty()
        try:
            body = msgpack.unpackb(unseal(value), raw=False)
            if body.get("v") != INDEX_FORMAT:
                raise IndexFormatError(f"unknown index format {body.get('v')!r}")
            low = np.frombuffer(body["low"], dtype="<i8").astype(np.int64)
            high = np.frombuffer(body["high"], dtype="<i8").astype(np.int64)
        except (KeyError, TypeError, ValueError, AttributeError, msgpack.ExtraData) as exc:
            if isinstance(exc, IndexFormatError):
                raise
            raise IndexFormatError(f"unreadable index: {exc}") from exc
        if low.shape != high.shape:
            raise IndexFormatError("index runs of different lengths")
        return cls(low, high)
