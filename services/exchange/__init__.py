"""A Binance-compatible exchange simulator: aggTrade streams and REST of spot, USD-M and COIN-M on one loopback port.

It writes Binance's wire format itself, importing nothing from the other services, so it
checks ingest's parser instead of sharing its mistakes.
"""

from tradetape.services.exchange.config import ExchangeConfig
from tradetape.services.exchange.faults import FaultConfig
from tradetape.services.exchange.replay import BUNDLED_REPLAY
from tradetape.services.exchange.server import Exchange

__all__ = ["BUNDLED_REPLAY", "Exchange", "ExchangeConfig", "FaultConfig"]
