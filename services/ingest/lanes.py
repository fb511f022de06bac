"""One market's share of ingest: its connections, its REST client and weight budget, its gap filler and tail probes.

Binance counts each market's limits apart (spot's REST weight and connections are not
USD-M's), so each market ingest works on gets a lane of its own: feeds to the market's
WebSocket URL, paced to its incoming-message limit; a REST client for its aggTrades
family with its own budget (`Settings.rest_weight_per_minute`); a gap filler whose tail
probes spend that budget's share at the market's weight a call. Frames name the
exchange's symbol (``BTCUSDT`` on spot and on USD-M alike), so a lane finds the tape by
that symbol, and everything past the frame (publishing, the ledger, the filler) uses the
instrument's name (``um:BTCUSDT``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tradetape.binance.rest import RestClient
from tradetape.domain.instruments import Market
from tradetape.services.ingest.feed import Feed
from tradetape.services.ingest.filler import GapFiller
from tradetape.services.ingest.tape import SymbolTape


@dataclass(eq=False)
class MarketLane:
    market: Market
    rest: RestClient
    filler: GapFiller
    tapes: dict[str, SymbolTape]
    """The market's tapes by the exchange's symbol (what frames carry in `s`)."""
    filler_tapes: dict[str, SymbolTape]
    """The same tapes by instrument name: the filler's view, grown in place when an instrument is listed."""
    feeds: list[Feed] = field(default_factory=list)


def subscribe_interval_s(incoming_per_s: int) -> float:
    """Seconds between SUBSCRIBE requests: one message a second left for pongs (spot: 0.25 s, futures: 0.11 s)."""
    return 1.0 / (incoming_per_s - 1)
