"""Fault injection for one WebSocket connection: lost trades, garbage frames, disconnects.

Faults act only on what a connection sends, never on the history, so the REST endpoint
still has every trade: a dropped trade is exactly the id gap a backfill must repair.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

import orjson

from services.exchange.history import AggTrade, encode_event

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """What to break on each connection; every counter is per connection and 0 means off."""

    drop_every: int = 0
    """Every Nth trade is not sent (it stays in the history, so the client sees a gap)."""
    malformed_every: int = 0
    """After every Nth sent trade, send one malformed frame (kinds rotate)."""
    disconnect_after: int = 0
    """Close the connection after N trade frames."""

    def __post_init__(self) -> None:
        for name in ("drop_every", "malformed_every", "disconnect_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")

    @property
    def active(self) -> bool:
        return bool(self.drop_every or self.malformed_every or self.disconnect_after)


class MalformedKind(enum.Enum):
    """The defects a parser must survive, sent in rotation."""

    INVALID_JSON = "invalid_json"
    MISSING_PRICE = "missing_price"
    NON_NUMERIC_PRICE = "non_numeric_price"


_ROTATION = tuple(MalformedKind)


def malformed_payload(kind: MalformedKind, trade: AggTrade, symbol: str, event_ms: int, time_scale: int = 1) -> bytes:
    """A broken copy of the trade just sent: if a parser accepts it, it shows as a duplicate.

    Invalid JSON is the event cut in half, so it stays invalid inside a combined wrapper.
    """
    valid = encode_event(trade, symbol, event_ms, time_scale)
    if kind is MalformedKind.INVALID_JSON:
        return valid[: len(valid) // 2]
    event = orjson.loads(valid)
    if kind is MalformedKind.MISSING_PRICE:
        del event["p"]
    else:
        event["p"] = "not-a-number"
    return orjson.dumps(event)


@dataclass
class FaultState:
    """The per-connection counters that decide, trade by trade, which fault fires."""

    config: FaultConfig
    considered: int = 0
    sent: int = 0
    dropped: int = 0
    malformed: int = 0
    _rotation: int = field(default=0, repr=False)

    def take(self) -> bool:
        """Count one trade due to be sent; False means drop it."""
        self.considered += 1
        every = self.config.drop_every
        if every and self.considered % every == 0:
            self.dropped += 1
            return False
        return True

    def sent_one(self) -> MalformedKind | None:
        """Count one sent trade frame; returns the malformed frame to send after it, if any."""
        self.sent += 1
        every = self.config.malformed_every
        if not every or self.sent % every:
            return None
        kind = _ROTATION[self._rotation % len(_ROTATION)]
        self._rotation += 1
        self.malformed += 1
        return kind

    @property
    def disconnect_due(self) -> bool:
        limit = self.config.disconnect_after
        return bool(limit) and self.sent >= limit
