"""The REST side: each market's aggTrades and exchangeInfo (``/api/v3``, ``/fapi/v1``, ``/dapi/v1``), Binance's errors.

Handlers are pure functions of the query string and the histories, returning a status
and a JSON body, so the HTTP plumbing in the server stays a few lines. Parameter checks
follow Binance's error codes (``-1100`` illegal characters, ``-1101`` duplicates,
``-1102`` missing, ``-1104`` unread, ``-1105`` empty, ``-1121`` invalid symbol), so a
client's error handling is exercised against the answers the real exchange gives.
Request weight is counted per market over a sliding minute (`RestLog`), as Binance counts
it per host: beyond the market's limit a call is answered 429 with ``Retry-After``.
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

from tradetape.domain.instruments import Market
from tradetape.errors import ExchangeError
from tradetape.services.exchange.faults import HTML_BODY, FaultConfig
from tradetape.services.exchange.history import TradeHistory, encode_rest_rows, now_ms
from tradetape.services.exchange.markets import MarketWire, contract_size, contract_type

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
RECENT_REQUESTS = 10_000
LOT_STEP = "0.00001000"

_SYMBOL_RE = re.compile(r"^[A-Z0-9\-_.]{1,20}$")
_LONG_RE = re.compile(r"^[0-9]{1,20}$")
WEIGHT_WINDOW_S = 60.0
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
    """The REST requests received and the weight they cost per market, so a test can check a client's weight and
    pacing as the exchange sees them; over a market's limit a minute, calls are refused (429)."""

    counts: Counter[str] = field(default_factory=Counter)
    """Requests per path (`/api/v3/aggTrades`)."""
    recent: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=RECENT_REQUESTS))
    """The newest requests as (monotonic time, path with query), oldest first."""
    weights: Counter[Market] = field(default_factory=Counter)
    """Request weight spent per market since the start."""
    refused: Counter[Market] = field(default_factory=Counter)
    """Calls answered 429 per market: over its weight limit."""
    _window: dict[Market, deque[tuple[float, int]]] = field(default_factory=dict)

    def note(self, path: str, wire: MarketWire | None = None) -> RestResponse | None:
        """Count a request; the 429 it gets if its market's weight in the last minute would pass the limit."""
        route = urlsplit(path).path
        self.counts[route] += 1
        now = time.monotonic()
        self.recent.append((now, path))
        if wire is None:
            return None
        weight = request_weight(route, wire)
        window = self._window.setdefault(wire.market, deque())
        while window and window[0][0] <= now - WEIGHT_WINDOW_S:
            window.popleft()
        if sum(w for _, w in window) + weight > wire.weight_limit:
            self.refused[wire.market] += 1
            retry = max(1, int(window[0][0] + WEIGHT_WINDOW_S - now) + 1)
            body = orjson.dumps({"code": -1003, "msg": f"Too many requests; current limit is {wire.weight_limit}."})
            return RestResponse(HTTPStatus.TOO_MANY_REQUESTS, body, (("Retry-After", str(retry)),))
        window.append((now, weight))
        self.weights[wire.market] += weight
        return None

    def weight_within(self, market: Market, seconds: float) -> int:
        """The weight `market` spent in the last `seconds` (at most a minute back)."""
        since = time.monotonic() - seconds
        return sum(w for at, w in self._window.get(market, ()) if at > since)


def request_weight(route: str, wire: MarketWire) -> int:
    """What a call to `route` costs in `wire`'s market (aggTrades 4 on spot, 20 on futures)."""
    name = route.removeprefix(wire.rest_prefix)
    return {"aggTrades": wire.agg_trades_weight, "exchangeInfo": wire.exchange_info_weight}.get(name, 1)


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


def agg_trades(
    query: str, histories: Mapping[str, TradeHistory], faults: RestFaults | None = None, *, best_match: bool = True
) -> RestResponse:
    """``GET /api/v3/aggTrades`` (``/fapi/v1``, ``/dapi/v1``): by ``fromId``, by time, or the most recent ``limit``.

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
    return RestResponse(HTTPStatus.OK, encode_rest_rows(trades, best_match=best_match))


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTCUSDT`` → (``BTC``, ``USDT``), by the longest known quote asset suffix."""
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol[:-3], symbol[-3:]


def _filters(tick_size: str, step: str) -> list[dict[str, str]]:
    return [
        {"filterType": "PRICE_FILTER", "minPrice": tick_size, "maxPrice": "1000000.00000000", "tickSize": tick_size},
        {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000.00000000", "stepSize": step},
    ]


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
        "filters": _filters(tick_size, LOT_STEP),
    }


def _contract_info(symbol: str, tick_size: str, wire: MarketWire) -> dict[str, Any]:
    """A futures contract as ``/fapi/v1/exchangeInfo`` and ``/dapi/v1/exchangeInfo`` list it."""
    pair = symbol.partition("_")[0]
    base, quote = split_symbol(pair)
    kind = contract_type(symbol)
    info: dict[str, Any] = {
        "symbol": symbol,
        "pair": pair,
        "contractType": kind,
        "deliveryDate": 4133404800000 if kind == "PERPETUAL" else 1798185600000,
        "onboardDate": 1569398400000,
        "baseAsset": base,
        "quoteAsset": quote,
        "marginAsset": base if wire.contracts else quote,
        "pricePrecision": 2,
        "quantityPrecision": 0 if wire.contracts else 3,
        "underlyingType": "COIN",
        "filters": _filters(tick_size, "1" if wire.contracts else "0.001"),
    }
    if wire.contracts:
        info["contractStatus"] = "TRADING"
        info["contractSize"] = contract_size(symbol)
    else:
        info["status"] = "TRADING"
    return info


def exchange_info(
    query: str, histories: Mapping[str, TradeHistory], tick_sizes: Mapping[str, str], wire: MarketWire
) -> RestResponse:
    """``GET /api/v3/exchangeInfo`` (narrowed by ``symbol`` or ``symbols``), or a futures market's (whole)."""
    params = _Params(query)
    single = None if wire.futures else params.text("symbol")
    many = None if wire.futures else params.text("symbols")
    params.finish()
    if single is not None and many is not None:
        raise RestError(-1128, "Combination of optional parameters invalid.")
    if single is not None:
        wanted = [_known_symbol(single, histories)]
    elif many is not None:
        wanted = _symbol_list(many, histories)
    else:
        wanted = sorted(histories)
    rate_limit = {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": wire.weight_limit}
    body = {
        "timezone": "UTC",
        "serverTime": now_ms(),
        "rateLimits": [rate_limit],
        "exchangeFilters": [],
        "symbols": [
            _contract_info(s, tick_sizes[s], wire) if wire.futures else _symbol_info(s, tick_sizes[s]) for s in wanted
        ],
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
    wire: MarketWire,
    histories: Mapping[str, TradeHistory],
    tick_sizes: Mapping[str, str],
    faults: RestFaults | None = None,
) -> RestResponse:
    """Route one REST GET of `wire`'s market (`histories` and `tick_sizes` by its symbols); failures are Binance's."""
    parts = urlsplit(path)
    name = parts.path.removeprefix(wire.rest_prefix)
    try:
        if name == "aggTrades":
            return agg_trades(parts.query, histories, faults, best_match=wire.best_match)
        if name == "exchangeInfo":
            return exchange_info(parts.query, histories, tick_sizes, wire)
        if name == "ping":
            return RestResponse(HTTPStatus.OK, b"{}")
        if name == "time":
            return RestResponse(HTTPStatus.OK, orjson.dumps({"serverTime": now_ms()}))
    except RestError as exc:
        return exc.response()
    return RestError(-1000, f"Unknown path {parts.path}.", HTTPStatus.NOT_FOUND).response()
