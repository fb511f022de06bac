"""Each Binance market's wire facts: REST paths and weights, WebSocket limits, exchangeInfo fields, dump layout.

Spot, USD-M (`um`) and COIN-M (`cm`) speak one aggTrade protocol with different numbers:
the REST family (`/api/v3`, `/fapi/v1`, `/dapi/v1`), what an aggTrades call weighs (4 on
spot, 20 on futures) against which limit a minute (6,000; 2,400 per futures market), how
many messages a client may send a connection a second (5; 10), the field exchangeInfo
calls a contract's status (`contractStatus` on COIN-M), whether it gives a `contractSize`
(COIN-M) and how data.binance.vision lays out the dumps (spot: no header, µs since 2025;
futures: a header row, ms). Facts from the Binance spot and derivatives API documentation;
the URLs are settings (`Settings.binance_urls`). Both sides ping: the server every 20 s
(spot) or 3 minutes (futures), answered by websockets itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tradetape.domain.instruments import Market


@dataclass(frozen=True, slots=True)
class MarketApi:
    market: Market
    api_path: str
    """The REST family: ``/api/v3``, ``/fapi/v1``, ``/dapi/v1``."""
    agg_trades_weight: int
    exchange_info_weight: int
    weight_limit_per_minute: int
    """The exchange's request-weight limit a minute per IP, for this market alone."""
    incoming_per_s: int
    """Messages a client may send one WebSocket connection a second (pings, pongs and requests count)."""
    status_field: str
    """exchangeInfo's name for a symbol's status (`TRADING`, ...)."""
    contract_size: bool
    """exchangeInfo gives a `contractSize` (COIN-M: a contract's value in USD)."""
    dump_root: str
    """The dumps' directory below data.binance.vision's root: ``data/spot``, ``data/futures/um``."""
    dump_header: bool
    """Dump CSVs start with a header row (futures) or do not (spot)."""

    @property
    def agg_trades_path(self) -> str:
        return f"{self.api_path}/aggTrades"

    @property
    def exchange_info_path(self) -> str:
        return f"{self.api_path}/exchangeInfo"


_USD_M = MarketApi(
    Market.UM,
    "/fapi/v1",
    agg_trades_weight=20,
    exchange_info_weight=1,
    weight_limit_per_minute=2400,
    incoming_per_s=10,
    status_field="status",
    contract_size=False,
    dump_root="data/futures/um",
    dump_header=True,
)

MARKET_APIS: dict[Market, MarketApi] = {
    Market.SPOT: MarketApi(
        Market.SPOT,
        "/api/v3",
        agg_trades_weight=4,
        exchange_info_weight=20,
        weight_limit_per_minute=6000,
        incoming_per_s=5,
        status_field="status",
        contract_size=False,
        dump_root="data/spot",
        dump_header=False,
    ),
    Market.UM: _USD_M,
    # the futures facts once: COIN-M is USD-M's but for its family, status field, contract size and dumps
    Market.CM: replace(
        _USD_M,
        market=Market.CM,
        api_path="/dapi/v1",
        status_field="contractStatus",
        contract_size=True,
        dump_root="data/futures/cm",
    ),
}


def market_api(market: Market) -> MarketApi:
    return MARKET_APIS[market]
