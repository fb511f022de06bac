"""The aggregate trade: validation of Binance's aggTrade objects into exact integer rows.

This is the hot path of ingest and persist, so it is a plain function over a decoded
JSON object, not a pydantic model; it raises `TradeFormatError` with a reason that is
specific enough to put in a dead-letter header.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from tradetape.domain.decimals import DecimalFormatError, parse_units


class TradeFormatError(ValueError):
    """An aggTrade object that cannot be stored as it is."""


class TradeRow(NamedTuple):
    """One aggTrade with price and quantity in units of 1e-8."""

    agg_id: int
    price: int
    qty: int
    first_id: int
    last_id: int
    time: int
    buyer_maker: bool


_INT_FIELDS = (("a", "agg id"), ("f", "first trade id"), ("l", "last trade id"), ("T", "trade time"))


def parse_trade(obj: Any) -> TradeRow:
    """Validate one aggTrade object (WebSocket `data` or a REST row) into a `TradeRow`."""
    if not isinstance(obj, dict):
        raise TradeFormatError(f"trade is a {type(obj).__name__}, not an object")
    for field, name in _INT_FIELDS:
        value = obj.get(field)
        if type(value) is not int or value < 0:
            raise TradeFormatError(f"field {field!r} ({name}) must be a non-negative integer, got {value!r}")
    buyer_maker = obj.get("m")
    if type(buyer_maker) is not bool:
        raise TradeFormatError(f"field 'm' (buyer is maker) must be a boolean, got {buyer_maker!r}")
    try:
        price = parse_units(_decimal_field(obj, "p"))
        qty = parse_units(_decimal_field(obj, "q"))
    except DecimalFormatError as exc:
        raise TradeFormatError(str(exc)) from exc
    if price <= 0:
        raise TradeFormatError(f"price must be positive, got {obj['p']!r}")
    if obj["l"] < obj["f"]:
        raise TradeFormatError(f"last trade id {obj['l']} is below first trade id {obj['f']}")
    return TradeRow(obj["a"], price, qty, obj["f"], obj["l"], obj["T"], buyer_maker)


def _decimal_field(obj: dict[str, Any], field: str) -> str:
    value = obj.get(field)
    if not isinstance(value, str):
        raise TradeFormatError(f"field {field!r} must be a decimal string, got {value!r}")
    return value
