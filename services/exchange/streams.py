"""WebSocket URL and stream-name rules: which streams a connection asks for, and how.

Kept apart from the connection so that what Binance accepts (``/ws/<stream>``,
``/stream?streams=a/b``, ``timeUnit``) is decided once, before the handshake is accepted.
Paths here are below the market's prefix (`markets.ws_route`); symbols are the market's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from tradetape.errors import ExchangeError

logger = logging.getLogger(__name__)

STREAM_TYPE = "aggTrade"
MAX_STREAMS = 1024
"""Binance's limit per connection."""

_STREAM_RE = re.compile(r"^([a-z0-9_]{1,32})@([A-Za-z0-9_]+)$")


class StreamError(ExchangeError, ValueError):
    """A request for streams this exchange does not serve; carries a Binance error code."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a WebSocket URL asks for: the framing, the initial streams, the time unit."""

    combined: bool
    streams: tuple[str, ...]
    time_scale: int = 1
    """1 for ms timestamps, 1000 for ``timeUnit=MICROSECOND``."""


def stream_symbol(stream: str, symbols: Collection[str]) -> str:
    """The upper-case symbol of ``<symbol>@aggTrade``; rejects other streams and symbols."""
    match = _STREAM_RE.match(stream)
    if match is None:
        raise StreamError(-1100, f"Invalid stream name {stream!r}.")
    name, kind = match.groups()
    if kind != STREAM_TYPE:
        raise StreamError(-1100, f"Unsupported stream type {kind!r}; only aggTrade is served.")
    symbol = name.upper()
    if symbol not in symbols:
        raise StreamError(-1121, "Invalid symbol.")
    return symbol


def is_stream_path(path: str) -> bool:
    """Whether a request path belongs to the WebSocket side of the server."""
    route = urlsplit(path).path
    return route in ("/ws", "/stream") or route.startswith("/ws/")


def parse_subscription(path: str, symbols: Collection[str], max_streams: int = MAX_STREAMS) -> Subscription:
    """Parse ``/ws/<s1>/<s2>`` (raw events) or ``/stream?streams=<s1>/<s2>`` (wrapped).

    A path without streams is valid: the client may SUBSCRIBE after connecting.
    """
    parts = urlsplit(path)
    query = parse_qs(parts.query, keep_blank_values=True)
    if parts.path == "/stream":
        combined = True
        raw = query.get("streams", [""])[-1]
    elif parts.path == "/ws" or parts.path.startswith("/ws/"):
        combined = False
        raw = parts.path[len("/ws/") :]
    else:
        raise StreamError(-1100, f"Unknown path {parts.path!r}.")
    streams = tuple(s for s in raw.split("/") if s)
    if len(streams) > max_streams:
        raise StreamError(-1100, f"At most {max_streams} streams per connection.")
    for stream in streams:
        stream_symbol(stream, symbols)
    unit = query.get("timeUnit", ["MILLISECOND"])[-1].upper()
    if unit not in ("MILLISECOND", "MICROSECOND"):
        raise StreamError(-1100, f"Invalid timeUnit {unit!r}.")
    return Subscription(
        combined=combined,
        streams=tuple(dict.fromkeys(streams)),
        time_scale=1000 if unit == "MICROSECOND" else 1,
    )
