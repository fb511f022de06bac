"""Binance's WebSocket frames: a raw stream's event or a combined stream's ``{"stream", "data"}`` envelope.

A frame becomes an `AggTradeFrame` (symbol, the raw `data` object, its validated row),
a `ControlFrame` (an event such as `serverShutdown`), a `ReplyFrame` (the answer to a
SUBSCRIBE), or a `FrameError` whose `kind` is counted and whose reason goes into the
dead-letter header. Trade fields are checked by the one shared `parse_trade`
(`tradetape.binance.aggtrade`), a stream's name against `tradetape.binance.streams`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tradetape.binance.aggtrade import TradeFormatError, parse_trade
from tradetape.binance.streams import stream_name
from tradetape.domain.trade import NO_NORMAL_QTY, TradeRow
from tradetape.errors import InputError


class FrameError(InputError):
    """A frame that is not a valid aggTrade event of a subscribed symbol."""

    def __init__(self, reason: str, symbol: str | None = None, kind: str = "invalid_trade") -> None:
        super().__init__(reason)
        self.reason = reason
        self.symbol = symbol
        self.kind = kind


@dataclass(frozen=True, slots=True)
class AggTradeFrame:
    symbol: str
    data: dict[str, Any]
    row: TradeRow

    @property
    def normal_qty(self) -> int | None:
        """USD-M's `nq` (the quantity without RPI orders), exact; None on spot and COIN-M."""
        return None if self.row.normal_qty == NO_NORMAL_QTY else self.row.normal_qty


@dataclass(frozen=True, slots=True)
class ControlFrame:
    """A non-trade event such as `serverShutdown`."""

    event: str


@dataclass(frozen=True, slots=True)
class ReplyFrame:
    """The answer to a SUBSCRIBE / UNSUBSCRIBE request: `error` is None on success."""

    request_id: int
    error: str | None


def parse_frame(
    text: str | bytes, symbols: frozenset[str] | dict[str, Any], max_bytes: int | None = None
) -> AggTradeFrame | ControlFrame | ReplyFrame:
    """Validate one frame; raise `FrameError` with a specific reason and kind."""
    if max_bytes is not None and len(text) > max_bytes:
        raise FrameError(f"frame of {len(text)} bytes is over the {max_bytes} byte cap", kind="oversized")
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"invalid JSON: {exc}", kind="invalid_json") from exc
    if not isinstance(frame, dict):
        raise FrameError(f"frame is a {type(frame).__name__}, not an object", kind="invalid_json")
    data = frame.get("data", frame) if "stream" in frame else frame
    if not isinstance(data, dict):
        raise FrameError("frame 'data' is not an object", kind="invalid_json")
    event = data.get("e")
    if event != "aggTrade":
        if isinstance(event, str) and event:
            return ControlFrame(event)
        if "id" in frame and ("result" in frame or "error" in frame):
            return _reply(frame)
        raise FrameError(f"missing or invalid event type {event!r}", kind="invalid_event")
    symbol = data.get("s")
    if not isinstance(symbol, str) or symbol not in symbols:
        raise FrameError(f"symbol {symbol!r} is not subscribed", kind="not_subscribed")
    stream = frame.get("stream")
    if stream is not None and stream != stream_name(symbol):
        raise FrameError(f"stream {stream!r} does not match symbol {symbol}", symbol, kind="not_subscribed")
    try:
        row = parse_trade(data)
    except TradeFormatError as exc:
        raise FrameError(str(exc), symbol) from exc
    return AggTradeFrame(symbol, data, row)


def _reply(frame: dict[str, Any]) -> ReplyFrame:
    request_id = frame.get("id")
    if type(request_id) is not int:
        raise FrameError(f"reply id {request_id!r} is not an integer", kind="invalid_event")
    error = frame.get("error")
    return ReplyFrame(request_id, None if error is None else str(error)[:200])
