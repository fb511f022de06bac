"""Binance REST: aggTrades pages (ingest's gap fill, `tradetape repair`) and `exchangeInfo`, one client a market.

A client speaks to one market (`tradetape.binance.markets`: `/api/v3`, `/fapi/v1` or
`/dapi/v1`) with a weight budget of its own, as Binance counts each market's weight apart;
it takes instrument names (`BTCUSDT`, `um:BTCUSDT`) and refuses one of another market.

Every answer is validated before anything in it is used: a body that is not JSON (a
proxy's HTML page), not a list, or holding one row `parse_trade` rejects or ids out of
order is a `GapFillError`, i.e. a failed attempt for the caller to retry later, never an
exception that ends the caller. One call is one HTTP request: retries belong to the gap
ledger's schedule. A client-side weight budget keeps well under the exchange's limit;
429 and 418 pause all calls for `Retry-After` (418, an IP ban, is logged as an error).
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from tradetape.binance.aggtrade import TradeFormatError, parse_trade
from tradetape.binance.markets import MarketApi, market_api
from tradetape.domain.instruments import Market, split_instrument
from tradetape.domain.trade import TradeRow
from tradetape.errors import ExchangeError
from tradetape.settings import Settings

logger = logging.getLogger(__name__)

PAGE_LIMIT = 1000
AGG_TRADES_WEIGHT = market_api(Market.SPOT).agg_trades_weight
EXCHANGE_INFO_WEIGHT = market_api(Market.SPOT).exchange_info_weight
DEFAULT_RETRY_AFTER_S = 60.0

RestTrade = tuple[dict[str, Any], TradeRow]


class GapFillError(ExchangeError, RuntimeError):
    """A REST answer that did not give usable trades; the attempt failed, the gap stays open."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


def parse_page(body: bytes, from_id: int, limit: int) -> list[RestTrade]:
    """A validated aggTrades page: rows with ids ascending from `from_id`, at most `limit`."""
    try:
        rows = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise GapFillError(f"answer is not JSON: {body[:80]!r}") from None
    if not isinstance(rows, list):
        raise GapFillError(f"answer is a JSON {type(rows).__name__}, not a list of aggTrades")
    if len(rows) > limit:
        raise GapFillError(f"answer has {len(rows)} rows, more than the limit {limit}")
    out: list[RestTrade] = []
    previous = from_id - 1
    for index, obj in enumerate(rows):
        try:
            row = parse_trade(obj)
        except TradeFormatError as exc:
            raise GapFillError(f"row {index}: {exc}") from None
        if row.agg_id <= previous:
            raise GapFillError(f"row {index}: agg id {row.agg_id} does not ascend from {previous}")
        previous = row.agg_id
        out.append((obj, row))
    return out


@dataclass(frozen=True, slots=True)
class Listed:
    """A symbol exchangeInfo lists as TRADING, as the exchange wrote it (not yet checked against the grammar)."""

    symbol: str
    contract_type: str | None = None
    """Futures: PERPETUAL, CURRENT_QUARTER, ... (None on spot)."""
    contract_size: int | None = None
    """COIN-M: what one contract is worth in USD (quantities are contracts); None elsewhere."""


def parse_listing(body: bytes, api: MarketApi | None = None) -> list[Listed]:
    """What an `exchangeInfo` answer of `api`'s market (default spot) lists as TRADING, sorted by symbol.

    Futures: perpetual and delivery contracts, i.e. those with a contract type (settled ones have
    none); COIN-M's status is `contractStatus` and its `contractSize` must be a positive integer.
    The names are not yet checked against the symbol grammar: `tradetape.binance.symbols` does that
    and counts what it drops.
    """
    api = api or market_api(Market.SPOT)
    futures = api.market is not Market.SPOT
    listed: list[Listed] = []
    try:
        for entry in orjson.loads(body)["symbols"]:
            if entry.get(api.status_field) != "TRADING":
                continue
            contract_type = entry.get("contractType") if futures else None
            if futures and not (isinstance(contract_type, str) and contract_type):
                continue
            size = entry["contractSize"] if api.contract_size else None
            if api.contract_size and (type(size) is not int or size <= 0):
                raise TypeError(f"contractSize of {str(entry['symbol'])[:40]!r} is {size!r}, not a positive integer")
            listed.append(Listed(str(entry["symbol"]), contract_type, size))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise GapFillError(f"exchangeInfo answer unusable: {exc!r}") from None
    return sorted(listed, key=lambda item: item.symbol)


def parse_trading_symbols(body: bytes) -> list[str]:
    """The names a spot `exchangeInfo` answer lists with status TRADING, sorted, as the exchange wrote them."""
    return [item.symbol for item in parse_listing(body)]


class WeightBudget:
    """A token bucket of request weight: `per_minute` refilled evenly, bursts up to a quarter of it."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.capacity = max(per_minute / 4, float(EXCHANGE_INFO_WEIGHT))
        self._clock = clock
        self._tokens = self.capacity
        self._at = clock()
        self.used = 0

    def wait_for(self, weight: int) -> float:
        """Seconds until `weight` can be spent (0 = now)."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.per_minute / 60)
        self._at = now
        return max(0.0, (weight - self._tokens) * 60 / self.per_minute)

    def spend(self, weight: int) -> None:
        self._tokens -= weight
        self.used += weight

    async def acquire(self, weight: int) -> None:
        while (delay := self.wait_for(weight)) > 0:
            await asyncio.sleep(delay)
        self.spend(weight)


class RestClient:
    """One market's REST: its paths, its weights, its own budget."""

    def __init__(
        self, rest_url: str, *, weight_per_minute: int, market: Market = Market.SPOT, timeout: float = 10.0
    ) -> None:
        self.api = market_api(market)
        self.base_url = rest_url.rstrip("/")
        self._timeout = timeout
        self.budget = WeightBudget(weight_per_minute)
        if weight_per_minute > self.api.weight_limit_per_minute:
            logger.warning(
                "rest weight budget above the exchange's limit",
                extra={"market": market.value, "budget": weight_per_minute, "limit": self.api.weight_limit_per_minute},
            )
        self.paused_until = 0.0
        """Monotonic time before which no call is made (429 / 418)."""
        self.calls = 0
        self.failures = 0

    @classmethod
    def of(cls, settings: Settings, market: Market) -> RestClient:
        """The client of `market` with its URL and weight budget from `settings`."""
        return cls(
            settings.binance_urls(market)[1], weight_per_minute=settings.rest_weight_per_minute(market), market=market
        )

    @property
    def market(self) -> Market:
        return self.api.market

    def _symbol(self, name: str) -> str:
        """The exchange's symbol of an instrument of this client's market; `ValueError` for another market's."""
        market, symbol = split_instrument(name)
        if market is not self.api.market:
            raise ValueError(f"{name} is not a {self.api.market.value} instrument: ask that market's client")
        return symbol

    async def agg_trades(self, name: str, from_id: int, limit: int = PAGE_LIMIT) -> list[RestTrade]:
        """Up to `limit` validated trades from `from_id` inclusive; `GapFillError` if the answer is unusable."""
        params = {"symbol": self._symbol(name), "fromId": from_id, "limit": limit}
        body = await self._get(self.api.agg_trades_path, params, self.api.agg_trades_weight)
        return parse_page(body, from_id, limit)

    async def newest_id(self, name: str) -> int | None:
        """The newest agg id the exchange has for instrument `name` (None if it has none)."""
        params = {"symbol": self._symbol(name), "limit": 1}
        page = parse_page(await self._get(self.api.agg_trades_path, params, self.api.agg_trades_weight), 0, 1)
        return page[-1][1].agg_id if page else None

    async def listing(self) -> list[Listed]:
        """Every symbol `exchangeInfo` lists as TRADING (futures: perpetual and delivery contracts)."""
        body = await self._get(self.api.exchange_info_path, {}, self.api.exchange_info_weight)
        return parse_listing(body, self.api)

    async def _get(self, path: str, params: dict[str, Any], weight: int) -> bytes:
        wait = self.paused_until - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        await self.budget.acquire(weight)
        self.calls += 1
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(params)}" if params else f"{self.base_url}{path}"
        try:
            return await asyncio.to_thread(self._fetch, url)
        except GapFillError:
            self.failures += 1
            raise

    def _fetch(self, url: str) -> bytes:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return response.read()  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
            raise GapFillError(f"REST unreachable: {exc!r}") from None

    def _http_error(self, exc: urllib.error.HTTPError) -> GapFillError:
        try:
            text = exc.read()[:200].decode(errors="replace")
        except OSError:
            text = ""
        if exc.code in (418, 429):
            try:
                retry_after = float(exc.headers.get("Retry-After") or DEFAULT_RETRY_AFTER_S)
            except ValueError:
                retry_after = DEFAULT_RETRY_AFTER_S
            self.paused_until = max(self.paused_until, time.monotonic() + retry_after)
            if exc.code == 418:
                logger.error("rest banned by the exchange (418), backing off", extra={"retry_after_s": retry_after})
            else:
                logger.warning("rest throttled (429), backing off", extra={"retry_after_s": retry_after})
            return GapFillError(
                f"HTTP {exc.code}, retry after {retry_after:g} s", status=exc.code, retry_after=retry_after
            )
        return GapFillError(f"HTTP {exc.code}: {text}", status=exc.code)
