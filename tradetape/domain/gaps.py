"""Tape coverage: how many trades a range holds and which agg ids are missing.

Binance aggregate-trade ids are consecutive per symbol, so every hole between the first and
the last id held is a gap. Pure functions over numpy columns; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["Coverage", "coverage", "find_gaps"]


@dataclass(frozen=True)
class Coverage:
    """Trades held for one symbol over a range; ids and times are ``None`` when empty.

    Ids and times span the voids held too: ``trade_count + void_count`` ids lie between
    `first_id` and `last_id` beside the gaps.
    """

    trade_count: int
    first_id: int | None
    last_id: int | None
    first_time: int | None
    """Earliest trade time ``T`` held, epoch ms."""
    last_time: int | None
    """Latest trade time ``T`` held, epoch ms."""
    gaps: list[tuple[int, int]] = field(default_factory=list)
    """Missing agg-id ranges ``(from_id, to_id)``, inclusive, ascending."""
    void_count: int = 0
    """Agg ids held as voids (`tradetape.domain.trade.is_void`): in the sequence, not in `trade_count`."""


def find_gaps(ids: npt.ArrayLike) -> list[tuple[int, int]]:
    """Missing inclusive id ranges between the first and the last of ``ids``.

    ``ids`` must be sorted ascending without duplicates (as the store yields them);
    otherwise ``ValueError``. ``[1, 2, 5, 7]`` gives ``[(3, 4), (6, 6)]``.
    """
    array = _int64_column(ids, "ids")
    if array.size < 2:
        return []
    steps = np.diff(array)
    if bool((steps <= 0).any()):
        raise ValueError("ids must be sorted ascending without duplicates")
    before = np.flatnonzero(steps > 1)
    starts = (array[before] + 1).tolist()
    ends = (array[before + 1] - 1).tolist()
    return list(zip(starts, ends, strict=True))


def coverage(ids: npt.ArrayLike, times: npt.ArrayLike) -> Coverage:
    """Summarise the trades held: count, first and last id, time span and id gaps.

    ``ids`` and ``times`` (epoch ms) are aligned columns. Unsorted ids are sorted first;
    a duplicate id raises ``ValueError`` (the store holds each agg id once).
    """
    id_array = _int64_column(ids, "ids")
    time_array = _int64_column(times, "times")
    if id_array.shape != time_array.shape or id_array.ndim != 1:
        raise ValueError(
            f"ids and times must be 1-D columns of the same length, got {id_array.shape} and {time_array.shape}"
        )
    if id_array.size == 0:
        return Coverage(0, None, None, None, None, [])
    if id_array.size > 1 and bool((np.diff(id_array) < 0).any()):
        id_array = np.sort(id_array)
    return Coverage(
        trade_count=int(id_array.size),
        first_id=int(id_array[0]),
        last_id=int(id_array[-1]),
        first_time=int(time_array.min()),
        last_time=int(time_array.max()),
        gaps=find_gaps(id_array),
    )


def _int64_column(values: npt.ArrayLike, name: str) -> npt.NDArray[np.int64]:
    array = np.asarray(values)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be an integer column, got {array.dtype}")
    return array.astype(np.int64, copy=False)
