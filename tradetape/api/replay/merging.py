"""Several instruments' replay streams as one, ordered by `(time, symbol, agg id)`.

Each stream arrives in `(time, agg id)` order, chunk after chunk. A buffered trade may be handed
on once no open stream can still send one that sorts before it: every open stream's next trade
sorts after its last buffered one, so the smallest of those last keys (the horizon) bounds what
is final. A stream with nothing buffered must be read first (`wanted`); a finished one bounds
nothing. Pure: the client reads the streams and feeds them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tradetape.domain.columns import TradeColumns


@dataclass(frozen=True, slots=True)
class MergedTrades:
    """Trades of several instruments in `(time, symbol, agg id)` order; `which[i]` indexes row i's symbol."""

    trades: TradeColumns
    which: npt.NDArray[np.intp]


class ReplayMerge:
    """The merge of streams named `symbols`; ties between streams go by symbol (their order as names)."""

    def __init__(self, symbols: Sequence[str]) -> None:
        self.symbols = list(symbols)
        self._rank = {symbol: rank for rank, symbol in enumerate(sorted(self.symbols))}
        self._buffered: dict[str, TradeColumns] = {symbol: TradeColumns.empty() for symbol in self.symbols}
        self._open = set(self.symbols)

    def add(self, symbol: str, trades: TradeColumns) -> None:
        """The next trades of `symbol`'s stream, in `(time, agg id)` order after those before."""
        buffered = self._buffered[symbol]
        self._buffered[symbol] = _concatenated([buffered, trades]) if len(buffered) else trades

    def finish(self, symbol: str) -> None:
        """`symbol`'s stream has ended: nothing more will sort before what it sent."""
        self._open.discard(symbol)

    def wanted(self) -> list[str]:
        """Open streams with nothing buffered: until they are read (or end), nothing is final."""
        return [symbol for symbol in self.symbols if symbol in self._open and len(self._buffered[symbol]) == 0]

    @property
    def done(self) -> bool:
        return not self._open and all(len(trades) == 0 for trades in self._buffered.values())

    def take(self) -> MergedTrades | None:
        """Every buffered trade that is final, merged; None when there is none yet."""
        if self.wanted():
            return None
        horizon = self._horizon()
        parts: list[TradeColumns] = []
        ranks: list[npt.NDArray[np.intp]] = []
        for symbol in self.symbols:
            buffered = self._buffered[symbol]
            cut = len(buffered) if horizon is None else self._cut(symbol, buffered, horizon)
            if cut == 0:
                continue
            parts.append(buffered.take(slice(0, cut)))
            ranks.append(np.full(cut, self.symbols.index(symbol), dtype=np.intp))
            self._buffered[symbol] = buffered.take(slice(cut, None))
        if not parts:
            return None
        joined = _concatenated(parts)
        which = np.concatenate(ranks)
        rank_of = np.array([self._rank[symbol] for symbol in self.symbols], dtype=np.intp)
        order = np.lexsort((joined.agg_id, rank_of[which], joined.time))
        return MergedTrades(joined.take(order), which[order])

    def _horizon(self) -> tuple[int, int, int] | None:
        """The smallest last key `(time, rank, agg id)` of the open streams; None: every stream ended."""
        keys = [
            (int(trades.time[-1]), self._rank[symbol], int(trades.agg_id[-1]))
            for symbol, trades in self._buffered.items()
            if symbol in self._open
        ]
        return min(keys) if keys else None

    def _cut(self, symbol: str, trades: TradeColumns, horizon: tuple[int, int, int]) -> int:
        """How many of `symbol`'s buffered trades sort at or before `horizon`."""
        time, rank, _ = horizon
        own = self._rank[symbol]
        if own == rank:  # the stream the horizon is the last key of: all of it
            return len(trades)
        if own < rank:  # ties at the horizon's time sort before it
            return int(np.searchsorted(trades.time, time, side="right"))
        return int(np.searchsorted(trades.time, time, side="left"))


def _concatenated(parts: Sequence[TradeColumns]) -> TradeColumns:
    """`parts` one after the other, as they are (`TradeColumns.concat` would restore agg-id order)."""
    columns = zip(*(part.arrays() for part in parts), strict=True)
    return TradeColumns.of_arrays([np.concatenate(column) for column in columns])
