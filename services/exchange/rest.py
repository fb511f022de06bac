"""The REST side: ``/api/v3/aggTrades``, ``/api/v3/exchangeInfo`` and their Binance errors.

Handlers are pure functions of the query string and the histories, returning a status
and a JSON body, so the HTTP plumbing in the server stays a few lines. Parameter checks
follow Binance's error codes (``-1100`` illegal characters, ``-1101`` duplicates,
``-1102`` missing, ``-1104`` unread, ``-1105`` empty, ``-1121`` invalid symbol), so a
client's error handling is exercised against the answers the real exchange gives.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from tradetape.errors import ExchangeError
from tradetape.services.exchange.faults import HTML_BODY, FaultConfig
from tradetape.services.exchange.history import TradeHistory, encode_rest_rows, now_ms

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
RECENT_REQUESTS = 10_000
LOT_STEP = "0.00001000"

_SYMBOL_RE = re.compile(r"^[A-Z0-9\-_.]{1,20}$")
_LONG_RE = re.compile(r"^[0-9]{1,20}$")
_RATE_LIMIT = {
    "rateLimitType": "REQUEST_WEIGHT",
    "interval": "MINUTE",
    "intervalNum": 1,
    "limit": 6000,
}
_QUOTES = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL")


@dataclass(frozen=True, slots=True)
class RestResponse:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json;charset=UTF-8"


@dataclass
class RestFaults:
    """The REST faults in force and how many calls they have failed so far."""

    config: FaultConfig
    failed: int = 0

    def failure(self) -> RestResponse | None:
        """The failed answer the next aggTrades call gets, or None to answer it."""
        config = self.config
        if not config.rest_error or (config.rest_error_calls and self.failed >= config.rest_error_calls):
            return None
        self.failed += 1
        retry = (("Retry-After", str(config.retry_after_s)),)
        if config.rest_error == "503":
            return RestResponse(HTTPStatus.SERVICE_UNAVAILABLE, b'{"code":-1001,"msg":"Service unavailable."}')
        if config.rest_error == "429":
            return RestResponse(HTTPStatus.TOO_MANY_REQUESTS, b'{"code":-1003,"msg":"Too many requests."}', retry)
        if config.rest_error == "418":
            return RestResponse(418, b'{"code":-1003,"msg":"Way too many requests; IP banned."}', retry)
        return RestResponse(HTTPStatus.OK, HTML_BODY, content_type="text/html")

    def released_before(self) -> float | None:
        lag = self.config.rest_lag_s
        return time.monotonic() - lag if lag else None


@dataclass
class RestLog:
    """The REST requests received, so a test can check a client's weight and pacing as the exchange sees them."""

    counts: Counter[str] = field(default_factory=Counter)
    """Requests per path (`/api/v3/aggTrades`)."""
    recent: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=RECENT_REQUESTS))
    """The newest requests as (monotonic time, path with query), oldest first."""

    def note(self, path: str) -> None:
        self.counts[urlsplit(path).path] += 1
        self.recent.append((time.monotonic(), path))


class RestError(ExchangeError):
    """An error the exchange reports as ``{"code": ..., "msg": ...}``."""

    def __init__(self, code: int, msg: str, status: int = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status

    def response(self) -> RestResponse:
        return RestResponse(self.status, orjson.dumps({"code": self.code, "msg": self.msg}))


class _Params:
    """Query parameters read the Binance way: every sent parameter must be read."""

    def __init__(self, query: str) -> None:
        parsed = parse_qs(query, keep_blank_values=True)
        if any(len(values) > 1 for values in parsed.values()):
            raise RestError(-1101, "Duplicate values for a parameter detected.")
        self._values = {name: values[0] for name, values in parsed.items()}
        self._read: set[str] = set()

    def text(self, name: str, *, required: bool = False) -> str | None:
        self._read.add(name)
        value = self._values.get(name)
        if value is None:
            if required:
                raise RestError(
                    -1102,
                    f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
                )
            return None
        if value == "":
            raise RestError(-1105, f"Parameter '{name}' was empty.")
        return value

    def long(self, name: str) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        if not _LONG_RE.match(value):
            raise RestError(
                -1100,
                f"Illegal characters found in parameter '{name}'; legal range is '{_LONG_RE.pattern}'.",
            )
        return int(value)

    def symbol(self, name: str, histories: Mapping[str, TradeHistory]) -> str | None:
        value = self.text(name, required=name == "symbol")
        if value is None:
            return None
        return _known_symbol(value, histories)

    def finish(self) -> None:
        unread = set(self._values) - self._read
        if unread:
            raise RestError(
                -1104,
                f"Not all sent parameters were read; read '{len(self._values) - len(unread)}' "
                f"parameter(s) but was sent '{len(self._values)}'.",
            )


def _known_symbol(value: str, histories: Mapping[str, TradeHistory]) -> str:
    if not _SYMBOL_RE.match(value):
        raise RestError(
            -1100,
            f"Illegal characters found in parameter 'symbol'; legal range is '{_SYMBOL_RE.pattern}'.",
        )
    if value not in histories:
        raise RestError(-1121, "Invalid symbol.")
    return value


def agg_trades(query: str, histories: Mapping[str, TradeHistory], faults: RestFaults | None = None) -> RestResponse:
    """``GET /api/v3/aggTrades``: by ``fromId``, by time, or the most recent ``limit``.

    ``fromId`` combined with a time bound returns trades matching both. Only released
    trades exist here, so the answer never runs ahead of the stream.
    """
    params = _Params(query)
    symbol = params.symbol("symbol", histories)
    assert symbol is not None
    from_id = params.long("fromId")
    start_ms = params.long("startTime")
    end_ms = params.long("endTime")
    limit = params.long("limit")
    params.finish()
    if limit is None:
        limit = DEFAULT_LIMIT
    elif not 1 <= limit <= MAX_LIMIT:
        raise RestError(
            -1100,
            f"Illegal characters found in parameter 'limit'; legal range is '1-{MAX_LIMIT}'.",
        )
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise RestError(-1128, "Combination of optional parameters invalid.")
    history = histories[symbol]
    if faults is not None:
        failed = faults.failure()
        if failed is not None:
            return failed
    released_before = None if faults is None else faults.released_before()
    if from_id is not None:
        trades = history.from_id(from_id, limit, start_ms, end_ms, released_before)
    elif start_ms is not None or end_ms is not None:
        trades = history.between(start_ms, end_ms, limit)
    else:
        trades = history.latest(limit)
    return RestResponse(HTTPStatus.OK, encode_rest_rows(trades))


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTCUSDT`` → (``BTC``, ``USDT``), by the longest known quote asset suffix."""
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol[:-3], symbol[-3:]


def _symbol_info(symbol: str, tick_size: str) -> dict[str, Any]:
    base, quote = split_symbol(symbol)
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": tick_size,
                "maxPrice": "1000000.00000000",
                "tickSize": tick_size,
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": LOT_STEP,
                "maxQty": "9000.00000000",
                "stepSize": LOT_STEP,
            },
        ],
    }


def exchange_info(query: str, histories: Mapping[str, TradeHistory], tick_sizes: Mapping[str, str]) -> RestResponse:
    """``GET /api/v3/exchangeInfo``, optionally narrowed by ``symbol`` or ``symbols``."""
    params = _Params(query)
    single = params.text("symbol")
    many = params.text("symbols")
    params.finish()
    if single is not None and many is not None:
        raise RestError(-1128, "Combination of optional parameters invalid.")
    if single is not None:
        wanted = [_known_symbol(single, histories)]
    elif many is not None:
        wanted = _symbol_list(many, histories)
    else:
        wanted = sorted(histories)
    body = {
        "timezone": "UTC",
        "serverTime": now_ms(),
        "rateLimits": [_RATE_LIMIT],
        "exchangeFilters": [],
        "symbols": [_symbol_info(s, tick_sizes[s]) for s in wanted],
    }
    return RestResponse(HTTPStatus.OK, orjson.dumps(body))


def _symbol_list(text: str, histories: Mapping[str, TradeHistory]) -> list[str]:
    try:
        names = orjson.loads(text)
    except orjson.JSONDecodeError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RestError(-1100, "Illegal characters found in parameter 'symbols'.")
    return [_known_symbol(n, histories) for n in names]


def handle(
    path: str,
    histories: Mapping[str, TradeHistory],
    tick_sizes: Mapping[str, str],
    faults: RestFaults | None = None,
) -> RestResponse:
    """Route one REST GET; every failure becomes a Binance error body."""
    parts = urlsplit(path)
    try:
        if parts.path == "/api/v3/aggTrades":
            return agg_trades(parts.query, histories, faults)
        if parts.path == "/api/v3/exchangeInfo":
            return exchange_info(parts.query, histories, tick_sizes)
        if parts.path == "/api/v3/ping":
            return RestResponse(HTTPStatus.OK, b"{}")
        if parts.path == "/api/v3/time":
            return RestResponse(HTTPStatus.OK, orjson.dumps({"serverTime": now_ms()}))
    except RestError as exc:
        return exc.response()
    return RestError(-1000, f"Unknown path {parts.path}.", HTTPStatus.NOT_FOUND).response()
