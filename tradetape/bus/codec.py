"""The trade message on the bus: the raw aggTrade JSON object, exactly as the exchange sent it.

Ingest encodes, persist decodes; both validate with the same `parse_trade`, so a message
that one side accepts the other side accepts too.
"""

from __future__ import annotations

from typing import Any

import orjson

from tradetape.binance.aggtrade import TradeFormatError, parse_trade
from tradetape.domain.trade import TradeRow


def encode_trade(obj: dict[str, Any]) -> bytes:
    """The payload published to `tape.trades.binance.<SYMBOL>` for one aggTrade object."""
    return orjson.dumps(obj)


def decode_trade(payload: bytes) -> TradeRow:
    """A trade message back into an exact row; `TradeFormatError` (with the reason) if it is not one."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise TradeFormatError(f"not JSON: {exc}") from None
    return parse_trade(obj)
