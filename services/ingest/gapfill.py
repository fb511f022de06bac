"""Ingest's REST client and weight budget: they live in `tradetape.binance.rest`, shared with `tradetape repair`."""

from tradetape.binance.rest import (
    AGG_TRADES_WEIGHT,
    DEFAULT_RETRY_AFTER_S,
    EXCHANGE_INFO_WEIGHT,
    PAGE_LIMIT,
    GapFillError,
    RestClient,
    RestTrade,
    WeightBudget,
    parse_page,
)

__all__ = [
    "AGG_TRADES_WEIGHT",
    "DEFAULT_RETRY_AFTER_S",
    "EXCHANGE_INFO_WEIGHT",
    "PAGE_LIMIT",
    "GapFillError",
    "RestClient",
    "RestTrade",
    "WeightBudget",
    "parse_page",
]
