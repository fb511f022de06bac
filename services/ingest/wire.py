"""Binance's WebSocket wire format: combined-stream URLs and frame validation.

A frame becomes either an `AggTradeFrame` (symbol, the raw `data` object and its
validated row) or a `FrameError` whose reason goes into the dead-letter header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tradetape.domain.trade import TradeFormatError, TradeRow, parse_trade


class FrameError(ValueError):
    """A frame that is not a valid aggTrade event of a subscribed symbol."""

    def __init__(self, reason: str, symbol: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.symbol = symbol


@dataclass(frozen=True, slots=True)
class AggTradeFrame:
    symbol: str
    data: dict[str, Any]
    row: TradeRow


@dataclass(frozen=True, slots=True)
class ControlFrame:
    """A non-trade event such as `serverShutdown`."""

    event: str


def combined_stream_url(ws_url: str, symbols: tuple[str, ...]) -> str:
    streams = "/".join(f"{symbol.lower()}@aggTrade" for symbol in symbols)
    return f"{ws_url.rstrip('/')}/stream?streams={streams}"


def parse_frame(text: str | bytes, symbols: frozenset[str]) -> AggTradeFrame | ControlFrame:
    """Validate one combined-stream frame; raise `FrameError` with a specific reason."""
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"invalid JSON: {exc}") from exc
    if not isinstance(frame, dict):
        raise FrameError(f"frame is a {type(frame).__name__}, not an object")
    data = frame.get("data", frame) if "stream" in frame else frame
    if not isinstance(data, dict):
        raise FrameError("frame 'data' is not an object")
    event = data.get("e")
    if event != "aggTrade":
        if isinstance(event, str) and event:
            return ControlFrame(event)
        raise FrameError(f"missing or invalid event type {event!r}")
    symbol = data.get("s")
    if not isinstance(symbol, str) or symbol not in symbols:
        raise FrameError(f"symbol {symbol!r} is not subscribed")
    stream = frame.get("stream")
    if stream is not None and stream != f"{symbol.lower()}@aggTrade":
        raise FrameError(f"stream {stream!r} does not match symbol {symbol}", symbol)
    try:
        row = parse_trade(data)
    except TradeFormatError as exc:
        raise FrameError(str(exc), symbol) from exc
    return AggTradeFrame(symbol, data, row)
