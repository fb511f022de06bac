"""The instruments a service works on: `TRADETAPE_SYMBOLS` as given, each market's `ALL` from its exchangeInfo.

The one place `ALL`, `um:ALL` and `cm:ALL` become lists, so ingest, persist and analytics
started with the same settings agree on them (each then takes its shard's share with
`Settings.shard_share`), at start (`resolve_symbols`) and then every `symbols_refresh_s`
while the service runs (`follow_listings`, which hands the service the instruments listed
since). A market's list comes from a `Listing`, `resolve(market)`: by default
`ExchangeListings`, which asks that market's exchangeInfo (spot's, USD-M's or COIN-M's:
TRADING perpetual and delivery contracts) and keeps COIN-M's contract sizes for volume
conversion. At start, while a market is unreachable or its answer unusable (no TRADING
symbol is unusable too: a service with nothing to do would look stopped), the question is
asked again with capped backoff, each failure one warning naming the setting, until it
answers or the caller's stop event is set. Names that are not instruments of the market
asked (`tradetape.domain.instruments`) are left out, counted in one warning: no subject,
key, path or page ever carries them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

from tradetape.binance.rest import GapFillError, RestClient
from tradetape.domain.instruments import Market, instrument_name, is_instrument, market_of
from tradetape.domain.symbols import SymbolError
from tradetape.ground.backoff import Backoff
from tradetape.settings import ALL_SYMBOLS, Settings, market_of_all

logger = logging.getLogger(__name__)

RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 60.0
SHOWN_DROPPED = 5
"""Refused names quoted in the warning (each cut to 40 characters)."""

Listing = Callable[[Market], Awaitable[list[str]]]
"""`resolve(market)`: the names of every TRADING instrument of `market` (`BTCUSDT`, `um:BTCUSDT`), from its
exchangeInfo; raises `GapFillError` while that cannot be had (asked again with backoff)."""


class ExchangeListings:
    """exchangeInfo of each market: `resolve(market)` names its TRADING instruments; contract sizes are kept."""

    def __init__(self, settings: Settings, clients: Mapping[Market, RestClient] | None = None) -> None:
        """`clients`: the caller's REST clients where it has them (ingest: one weight budget a market)."""
        self._settings = settings
        self._clients = dict(clients or {})
        self.contract_sizes: dict[str, int] = {}
        """COIN-M instrument name → USD value of one contract, from the latest answer of its market."""

    def client(self, market: Market) -> RestClient:
        if market not in self._clients:
            self._clients[market] = RestClient.of(self._settings, market)
        return self._clients[market]

    async def resolve(self, market: Market) -> list[str]:
        """The instrument names `market` lists as TRADING, sorted; `GapFillError` if its answer is unusable.

        A symbol that breaks the grammar is handed on as the exchange wrote it: it names no
        instrument of `market`, so `resolve_symbols` leaves it out and counts it.
        """
        names: list[str] = []
        for item in await self.client(market).listing():
            try:
                name = instrument_name(market, item.symbol)
            except SymbolError:
                names.append(item.symbol)
                continue
            names.append(name)
            if item.contract_size is not None:
                self.contract_sizes[name] = item.contract_size
        return names


async def resolve_symbols(
    settings: Settings,
    stop: asyncio.Event,
    *,
    rest: RestClient | None = None,
    backoff: Backoff | None = None,
    before_attempt: Callable[[], None] | None = None,
    listing: Listing | None = None,
) -> tuple[str, ...]:
    """`settings.symbols`, each market's `ALL` replaced by its TRADING instruments; () if `stop` was set first.

    `listing` answers for a market named by its `ALL` (default: `ExchangeListings`, with `rest`
    as spot's client when the caller has one — ingest: one weight budget for all its calls).
    `before_attempt` runs before each question; what it raises ends the wait (ingest: a NATS
    connection closed for good).
    """
    if not settings.symbols_from_exchange:
        return settings.symbols
    listing = listing or ExchangeListings(settings, {} if rest is None else {Market.SPOT: rest}).resolve
    resolved: dict[str, None] = {}
    for name in settings.symbols:
        market = market_of_all(name)
        if market is None:
            resolved[name] = None
            continue
        listed = await _listed(market, listing, stop, backoff or Backoff(RETRY_INITIAL_S, RETRY_MAX_S), before_attempt)
        if not listed:
            return ()
        resolved.update(dict.fromkeys(listed))
    return tuple(resolved)


async def follow_listings(
    settings: Settings,
    stop: asyncio.Event,
    known: Iterable[str],
    on_listed: Callable[[tuple[str, ...]], Awaitable[None]],
    *,
    rest: RestClient | None = None,
    listing: Listing | None = None,
) -> None:
    """With a market's `ALL`, ask its exchangeInfo every `symbols_refresh_s` until `stop`; `on_listed(new)`.

    `new` holds every TRADING instrument not in `known` nor seen before, in the exchange's order
    (the caller takes its shard's share). A failed question is one warning and waits for the
    next interval; an instrument the exchange stops listing stays where it is (its tape is
    still served).
    """
    if not settings.symbols_from_exchange or settings.symbols_refresh_s <= 0:
        return
    listing = listing or ExchangeListings(settings, {} if rest is None else {Market.SPOT: rest}).resolve
    seen = set(known)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.symbols_refresh_s)
        if stop.is_set():
            return
        for market in settings.markets_from_exchange:
            setting = _setting(market)
            try:
                listed = _grammatical(await listing(market), market, setting)
            except GapFillError as exc:
                logger.warning("exchangeInfo not usable, listings not refreshed", extra={"error": exc.reason})
                continue
            new = tuple(name for name in listed if name not in seen)
            if new:
                seen.update(new)
                shown = ",".join(new[:50])
                logger.info("symbols listed", extra={"setting": setting, "new": len(new), "symbols": shown})
                await on_listed(new)


def _setting(market: Market) -> str:
    return f"{Settings.env_name('symbols')}={instrument_name(market, ALL_SYMBOLS)}"


async def _listed(
    market: Market,
    listing: Listing,
    stop: asyncio.Event,
    backoff: Backoff,
    before_attempt: Callable[[], None] | None,
) -> tuple[str, ...]:
    """`market`'s TRADING instruments, asked until it answers some; () if `stop` was set first."""
    setting = _setting(market)
    while not stop.is_set():
        if before_attempt is not None:
            before_attempt()
        try:
            symbols = _grammatical(await listing(market), market, setting)
            if symbols:
                logger.info("symbols from exchangeInfo", extra={"setting": setting, "trading": len(symbols)})
                return symbols
            error = "exchangeInfo lists no TRADING symbol"
        except GapFillError as exc:
            error = exc.reason
        delay = backoff.next_delay()
        logger.warning(
            "exchangeInfo not usable, symbols unknown, retrying",
            extra={"setting": setting, "market": market.value, "error": error, "delay_s": round(delay, 1)},
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
    return ()


def _grammatical(names: list[str], market: Market, setting: str) -> tuple[str, ...]:
    """The names that are instruments of `market`; one warning counting (and quoting a few of) the others."""
    symbols: list[str] = []
    dropped: list[str] = []
    for name in names:
        (symbols if is_instrument(name) and market_of(name) is market else dropped).append(name)
    if dropped:
        logger.warning(
            "exchangeInfo names that are no symbol left out",
            extra={
                "setting": setting,
                "left_out": len(dropped),
                "examples": ",".join(repr(name[:40]) for name in dropped[:SHOWN_DROPPED]),
            },
        )
    return tuple(symbols)
