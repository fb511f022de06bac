"""Window assembly: a batch of trade rows → one column set per (symbol, 1-second window)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from services.tape.columns import TradeColumns
from services.tape.keys import WINDOW_MS
from services.tape.trade import TradeRow

WindowId = tuple[str, int]


def assemble_windows(trades: Iterable[tuple[str, TradeRow]]) -> dict[WindowId, TradeColumns]:
    """Group trades by symbol and trade-time window; each window sorted by agg id, ids unique."""
    grouped: defaultdict[WindowId, list[TradeRow]] = defaultdict(list)
    for symbol, row in trades:
        grouped[(symbol, row.time - row.time % WINDOW_MS)].append(row)
    return {window: TradeColumns.from_rows(rows) for window, rows in grouped.items()}
