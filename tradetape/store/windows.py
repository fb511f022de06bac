"""Window assembly: a batch of trade rows → one column set per (symbol, 1-second window)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator

import numpy as np

from tradetape.domain.columns import Int64Array, TradeColumns
from tradetape.domain.trade import TradeRow
from tradetape.store.keys import window_start

WindowId = tuple[str, int]


def split_by(columns: TradeColumns, starts: Int64Array) -> Iterator[tuple[int, TradeColumns]]:
    """`columns` grouped by `starts` (one start time per trade), ascending; each group keeps its order.

    A live write's trades mostly fall in one window: that group is `columns` itself, not a copy.
    """
    if len(starts) and starts[0] == starts[-1] and bool((starts == starts[0]).all()):
        yield int(starts[0]), columns
        return
    order = np.argsort(starts, kind="stable")
    starts = starts[order]
    columns = columns.take(order)
    edges = [0, *(np.flatnonzero(np.diff(starts)) + 1).tolist(), len(starts)]
    for lo, hi in itertools.pairwise(edges):
        yield int(starts[lo]), columns.take(slice(lo, hi))


def assemble_windows(trades: Iterable[tuple[str, TradeRow]]) -> dict[WindowId, TradeColumns]:
    """Group trades by symbol and trade-time window; each window sorted by agg id, ids unique."""
    by_symbol: defaultdict[str, list[TradeRow]] = defaultdict(list)
    for symbol, row in trades:
        by_symbol[symbol].append(row)
    windows: dict[WindowId, TradeColumns] = {}
    for symbol, rows in by_symbol.items():
        columns = TradeColumns.from_rows(rows)
        for start, window in split_by(columns, window_start(columns.time)):
            windows[(symbol, start)] = window
    return windows
