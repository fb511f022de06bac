"""Messages handed over and not yet in flight: a bounded buffer that drops (and reports) its oldest when full.

Reading the exchange never waits on NATS, so the buffer takes everything up to its cap; past
it the oldest trade goes and is reported (`on_drop`), for the gap ledger to fetch from REST
later. Unconfirmed messages come back to its front, in order, to be sent again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(slots=True)
class Outgoing:
    subject: str
    payload: bytes
    msg_id: str
    """A trade's `Nats-Msg-Id`; "" for a dead letter, whose `headers` are its own."""
    headers: dict[str, str] | None
    symbol: str
    agg_id: int
    """-1 for a dead letter."""


class Pending:
    def __init__(self, max_items: int, on_drop: Callable[[str, int], None]) -> None:
        self.items: deque[Outgoing] = deque()
        self.max_items = max_items
        self._on_drop = on_drop
        self.retried = 0
        self.dropped = 0
        self.deadletters_lost = 0

    def add(self, item: Outgoing) -> None:
        if len(self.items) >= self.max_items:
            self.drop(self.items.popleft())
        self.items.append(item)

    def drop(self, item: Outgoing) -> None:
        """Give `item` up: a trade is reported (`on_drop`), a dead letter only counted."""
        self.dropped += 1
        if item.agg_id < 0:
            self.deadletters_lost += 1
        else:
            self._on_drop(item.symbol, item.agg_id)

    def give_back(self, items: Sequence[Outgoing]) -> None:
        """Unconfirmed messages back to the front, in order; the oldest beyond the cap are dropped."""
        self.retried += len(items)
        self.items.extendleft(reversed(items))
        while len(self.items) > self.max_items:
            self.drop(self.items.popleft())
