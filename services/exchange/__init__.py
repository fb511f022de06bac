"""A Binance-compatible exchange simulator: aggTrade streams and REST on one loopback port.

It writes Binance's wire format itself, importing nothing from the other services, so it
checks ingest's parser instead of sharing its mistakes.
"""

from services.exchange.faults import FaultConfig
from services.exchange.replay import BUNDLED_REPLAY
from services.exchange.server import Exchange, ExchangeConfig

__all__ = ["BUNDLED_REPLAY", "Exchange", "ExchangeConfig", "FaultConfig"]
