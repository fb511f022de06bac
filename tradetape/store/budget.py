"""A read's memory budget: what a query may hold, checked against counts known before decoding.

The analytics worker computes `query_concurrency` queries at once; without a bound, a few
long ranges decoded side by side outgrow the machine. A read knows how many trades it is
about to decode before it decodes them (segment summaries' counts, window values' sizes)
and how many price levels it is about to merge once it holds the histograms; the caller
knows what each trade and each level costs it at peak (measured per query method). A
read whose estimate exceeds the budget is refused before the large allocations.
"""

from __future__ import annotations

from dataclasses import dataclass

from tradetape.errors import LimitError


class ReadTooLargeError(LimitError, RuntimeError):
    """A read whose estimated memory exceeds its budget; nothing large was allocated."""

    def __init__(self, estimate: int, budget: ReadBudget, trades: int, levels: int) -> None:
        super().__init__(f"about {estimate} bytes for {trades} trades and {levels} levels, over {budget.max_bytes}")
        self.estimate = estimate
        self.budget = budget
        self.trades = trades
        self.levels = levels


@dataclass(frozen=True, slots=True)
class ReadBudget:
    max_bytes: int
    trade_bytes: int
    """Peak bytes the caller needs per trade it reads (the decoded columns and what it computes from them)."""
    level_bytes: int = 0
    """Peak bytes per price level merged from segment histograms."""

    def estimate(self, trades: int, levels: int = 0) -> int:
        return trades * self.trade_bytes + levels * self.level_bytes

    def check(self, trades: int, levels: int = 0) -> None:
        estimate = self.estimate(trades, levels)
        if estimate > self.max_bytes:
            raise ReadTooLargeError(estimate, self, trades, levels)
