"""The tail probe's schedule: which quiet symbol to ask REST about next, and when.

Agg ids are consecutive per symbol, so a lost trade shows as a gap only when a later id
arrives: the last trades of a burst, lost on the WebSocket, stay unknown for as long as
the symbol is quiet (hours, for most of the ~2,000 symbols of `ALL`). So a symbol that
showed no new id for `after_s` gets one REST call for the ids after its newest; trades it
finds go the gap-fill way. Probes take turns, the symbol quiet longest first, one every
`interval_s`: `PROBE_WEIGHT_SHARE` of the REST weight budget, the rest left to gap fills,
which also run first. A trade lost at time t is therefore found by
`t + after_s + n × interval_s` for n symbols (`found_within_s`), while gap fills leave the
probes their share. Pure: no I/O, times passed in.
"""

from __future__ import annotations

from collections.abc import Mapping

from tradetape.binance.rest import AGG_TRADES_WEIGHT

PROBE_WEIGHT_SHARE = 0.5
"""The part of `ingest_rest_weight_per_minute` probes may spend."""


def probe_interval_s(
    weight_per_minute: int, share: float = PROBE_WEIGHT_SHARE, call_weight: int = AGG_TRADES_WEIGHT
) -> float:
    """Seconds between two probes so that they spend `share` of the budget (one aggTrades call of `call_weight` each).

    The call's weight is the market's: 4 on spot, 20 on futures (`tradetape.binance.markets`).
    """
    return call_weight * 60.0 / (weight_per_minute * share)


def found_within_s(symbols: int, after_s: float, interval_s: float) -> float:
    """How long a lost last trade of one of `symbols` symbols stays unknown at most, all of them quiet.

    The symbol is due `after_s` after its newest id or its last probe, both no later than
    the loss; at most `symbols - 1` others were due before it, each probed once.
    """
    return after_s + symbols * interval_s


def next_probe(
    quiet_since: Mapping[str, float], now: float, *, after_s: float, last_probe: float, interval_s: float
) -> str | None:
    """The symbol to probe now: the one quiet longest, if quiet for `after_s` and a probe is due; else None."""
    if not quiet_since or now < last_probe + interval_s:
        return None
    symbol = min(quiet_since, key=quiet_since.__getitem__)
    return symbol if now - quiet_since[symbol] >= after_s else None


def probe_due_at(quiet_since: Mapping[str, float], *, after_s: float, last_probe: float, interval_s: float) -> float:
    """When `next_probe` next names a symbol, if nothing is heard before (inf without symbols)."""
    if not quiet_since:
        return float("inf")
    return max(min(quiet_since.values()) + after_s, last_probe + interval_s)


class TailSchedule:
    """Per symbol the newest id seen and since when; the probes' pacing."""

    def __init__(self, after_s: float, interval_s: float) -> None:
        self.after_s = after_s
        self.interval_s = interval_s
        self._heads: dict[str, int] = {}
        self.quiet_since: dict[str, float] = {}
        """Monotonic time of a symbol's newest id, or of its last probe if later."""
        self.last_probe = float("-inf")

    def observe(self, symbol: str, head: int, now: float) -> None:
        """Note the symbol's newest id; a new one restarts its quiet time."""
        if self._heads.get(symbol) != head:
            self._heads[symbol] = head
            self.quiet_since[symbol] = now

    def next(self, now: float) -> str | None:
        return next_probe(
            self.quiet_since, now, after_s=self.after_s, last_probe=self.last_probe, interval_s=self.interval_s
        )

    def due_at(self) -> float:
        return probe_due_at(
            self.quiet_since, after_s=self.after_s, last_probe=self.last_probe, interval_s=self.interval_s
        )

    def probed(self, symbol: str, head: int, now: float) -> None:
        """A probe of `symbol` was made at `now`: its next is `after_s` later, the next of any `interval_s` later."""
        self._heads[symbol] = head
        self.quiet_since[symbol] = now
        self.last_probe = now

    def quiet(self, now: float) -> int:
        """Symbols without a new id for `after_s` or more."""
        return sum(1 for since in self.quiet_since.values() if now - since >= self.after_s)

    def found_within_s(self, symbols: int) -> float:
        return found_within_s(symbols, self.after_s, self.interval_s)
