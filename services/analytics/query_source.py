"""The shard's store as one query sees it: the reads the query methods make (`tradetape.api.query_method.TradeSource`),
each within the query's memory budget, in the quantity it asked for, with ingest's open gaps of its symbol."""

from __future__ import annotations

from tradetape.bus.ledger import LedgerGap
from tradetape.domain.aggregates import MinuteLevels, OhlcRows, SecondBars
from tradetape.domain.columns import Quantity, TradeColumns
from tradetape.domain.gaps import Coverage
from tradetape.domain.price_levels import PriceLevels
from tradetape.store import ReadBudget, ShardReader


class QuerySource:
    """The shard's store as one query sees it: every read within the query's memory budget,
    plus ingest's open gaps of its symbol (read from the ledger for this answer, if it needs them)."""

    def __init__(
        self,
        reader: ShardReader,
        budget: ReadBudget,
        symbol: str,
        gaps: list[LedgerGap] | None = None,
        quantity: Quantity = "all",
        contract_sizes: dict[str, int] | None = None,
    ) -> None:
        self._reader = reader
        self._budget = budget
        self._symbol = symbol
        self._gaps = gaps
        self._quantity: Quantity = quantity
        self._contract_sizes = contract_sizes or {}

    def with_quantity(self, quantity: Quantity) -> QuerySource:
        """The same reads summing `quantity` (USD-M's `nq` for "normal": from the layer's normal figures)."""
        return QuerySource(self._reader, self._budget, self._symbol, self._gaps, quantity, self._contract_sizes)

    def contract_size(self, symbol: str) -> int | None:
        return self._contract_sizes.get(symbol)

    def trades(self, symbol: str, time_range: tuple[int, int] | None) -> TradeColumns:
        trades = self._reader.trades(symbol, time_range, self._budget)
        return trades.normal() if self._quantity == "normal" else trades

    def coverage(self, symbol: str, time_range: tuple[int, int] | None) -> Coverage:
        return self._reader.coverage(symbol, time_range)

    def price_levels(self, symbol: str, time_range: tuple[int, int] | None) -> PriceLevels | None:
        return self._reader.price_levels(symbol, time_range, self._budget, self._quantity)

    def second_bars(self, symbol: str, time_range: tuple[int, int] | None) -> SecondBars:
        return self._reader.second_bars(symbol, time_range, self._budget, self._quantity)

    def minute_levels(
        self, symbol: str, time_range: tuple[int, int] | None, price_step: int = 1
    ) -> MinuteLevels | None:
        return self._reader.minute_levels(symbol, time_range, price_step, budget=self._budget, quantity=self._quantity)

    def minute_bars(self, symbol: str, time_range: tuple[int, int] | None) -> OhlcRows:
        return self._reader.minute_bars(symbol, time_range, self._budget, self._quantity)

    def ingest_gaps(self, symbol: str) -> list[LedgerGap] | None:
        return self._gaps if symbol == self._symbol else None
