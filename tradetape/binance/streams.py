"""Binance's WebSocket streams: a symbol's aggTrade stream name, combined-stream URLs, SUBSCRIBE requests.

Many symbols do not fit one URL: `connection_plan` puts as many streams in the URL as fit
and the rest into SUBSCRIBE requests of at most `STREAMS_PER_SUBSCRIBE` streams each.
"""

from __future__ import annotations

from functools import cache

import orjson

MAX_URL_CHARS = 4000
"""Streams beyond what fits in a URL this long are sent as SUBSCRIBE requests."""
STREAMS_PER_SUBSCRIBE = 200


@cache
def stream_name(symbol: str) -> str:
    """Cached: `tradetape.binance.frames.parse_frame` checks it on every frame, for the subscribed symbols only."""
    return f"{symbol.lower()}@aggTrade"


def combined_stream_url(ws_url: str, symbols: tuple[str, ...]) -> str:
    return f"{ws_url.rstrip('/')}/stream?streams={'/'.join(stream_name(s) for s in symbols)}"


def connection_plan(
    ws_url: str,
    symbols: tuple[str, ...],
    max_url_chars: int = MAX_URL_CHARS,
    per_subscribe: int = STREAMS_PER_SUBSCRIBE,
) -> tuple[str, list[list[str]]]:
    """The URL to open (as many streams as fit) and the SUBSCRIBE batches for the rest."""
    base = f"{ws_url.rstrip('/')}/stream?streams="
    in_url: list[str] = []
    length = len(base)
    rest: list[str] = []
    for symbol in symbols:
        name = stream_name(symbol)
        if not rest and (not in_url or length + len(name) + 1 <= max_url_chars):
            in_url.append(name)
            length += len(name) + 1
        else:
            rest.append(name)
    batches = [rest[i : i + per_subscribe] for i in range(0, len(rest), per_subscribe)]
    return base + "/".join(in_url), batches


def subscribe_request(streams: list[str], request_id: int) -> str:
    return orjson.dumps({"method": "SUBSCRIBE", "params": streams, "id": request_id}).decode()
