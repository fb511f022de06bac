"""Gap fill from Binance's REST `GET /api/v3/aggTrades`.

Agg ids are consecutive per symbol, so a missing id range is known exactly and is
fetched by `fromId`, 1,000 trades a call. The client honours 429/418 `Retry-After` and
paces itself under the IP weight limit (weight 4 a call, 6,000 a minute).
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import orjson

from tradetape.runtime.backoff import Backoff

logger = logging.getLogger(__name__)

PAGE_LIMIT = 1000
MIN_CALL_INTERVAL_S = 0.05
MAX_ATTEMPTS = 5


class GapFillError(RuntimeError):
    """The REST endpoint would not give the missing trades."""


class AggTradesClient:
    def __init__(self, rest_url: str, *, timeout: float = 10.0) -> None:
        self._base = rest_url.rstrip("/")
        self._timeout = timeout
        self._next_call = 0.0
        self.calls = 0

    async def page(self, symbol: str, from_id: int, limit: int = PAGE_LIMIT) -> list[dict[str, Any]]:
        """Up to `limit` trades from `from_id` inclusive, retrying throttles and transient errors."""
        query = urllib.parse.urlencode({"symbol": symbol, "fromId": from_id, "limit": limit})
        url = f"{self._base}/api/v3/aggTrades?{query}"
        backoff = Backoff(1.0, 30.0)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            await self._pace()
            try:
                body = await asyncio.to_thread(self._get, url)
            except urllib.error.HTTPError as exc:
                if exc.code in (418, 429):
                    wait = float(exc.headers.get("Retry-After") or 60)
                    logger.warning(
                        "rest throttled", extra={"symbol": symbol, "status": exc.code, "retry_after_s": wait}
                    )
                    self._next_call = time.monotonic() + wait
                    continue
                if exc.code < 500:
                    raise GapFillError(f"{url}: HTTP {exc.code} {exc.read()[:200]!r}") from exc
                error: Exception = exc
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                error = exc
            else:
                trades = orjson.loads(body)
                if not isinstance(trades, list):
                    raise GapFillError(f"{url}: expected a JSON array, got {type(trades).__name__}")
                return trades
            logger.warning("rest call failed", extra={"symbol": symbol, "attempt": attempt, "error": repr(error)})
            await asyncio.sleep(backoff.next_delay())
        raise GapFillError(f"{url}: no answer after {MAX_ATTEMPTS} attempts")

    async def trades_from(
        self, symbol: str, from_id: int, to_id: int | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of trades from `from_id` up to `to_id` inclusive (or up to the newest)."""
        next_id = from_id
        while to_id is None or next_id <= to_id:
            limit = PAGE_LIMIT if to_id is None else min(PAGE_LIMIT, to_id - next_id + 1)
            page = await self.page(symbol, next_id, limit)
            if to_id is not None:
                page = [t for t in page if isinstance(t, dict) and t.get("a", -1) <= to_id]
            if not page:
                return
            yield page
            last = page[-1].get("a")
            if not isinstance(last, int) or last < next_id:
                raise GapFillError(f"REST page for {symbol} from {next_id} ends at id {last!r}")
            next_id = last + 1
            if len(page) < limit:
                return

    async def _pace(self) -> None:
        now = time.monotonic()
        if self._next_call > now:
            await asyncio.sleep(self._next_call - now)
        self._next_call = max(now, self._next_call) + MIN_CALL_INTERVAL_S
        self.calls += 1

    def _get(self, url: str) -> bytes:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=self._timeout) as response:
            return response.read()  # type: ignore[no-any-return]
