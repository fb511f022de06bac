"""The instruments a service works on: `TRADETAPE_SYMBOLS` as given, or for `ALL` every TRADING one of exchangeInfo.

The one place `ALL` becomes a list, so ingest, persist and analytics started with the same
settings agree on it (each then takes its shard's share with `Settings.shard_share`), at
start and then every `symbols_refresh_s` while the service runs (`follow_listings`, which
hands the service the instruments listed since).
`ExchangeListings.resolve(market)` asks one market's exchangeInfo once (spot's, USD-M's or
COIN-M's: TRADING perpetual and delivery contracts) and answers instrument names
(`BTCUSDT`, `um:BTCUSDT`, `cm:BTCUSD_PERP`), keeping COIN-M's contract sizes for volume
conversion; `resolve_market` asks until it answers. While an exchange is unreachable or
its answer unusable (no TRADING symbol is unusable too: a service with nothing to do would
look stopped), the question is asked again with capped backoff, each failure one warning
naming the setting, until it answers or the caller's stop event is set. Names that break
the symbol grammar (`tradetape.domain.symbols`) are left out, counted in one warning: no
subject, key, path or page ever carries them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

from tradetape.binance.rest import GapFillError, Listed, RestClient
from tradetape.domain.instruments import Market, instrument_name
from tradetape.domain.symbols import is_symbol
from tradetape.ground.backoff import Backoff
from tradetape.settings import ALL_SYMBOLS, Settings

logger = logging.getLogger(__name__)

RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 60.0
SHOWN_DROPPED = 5
"""Refused names quoted in the warning (each cut to 40 characters)."""


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

        Names that break the symbol grammar are left out (one warning counting them).
        """
        listed = _grammatical(await self.client(market).listing(), market)
        names = [instrument_name(market, item.symbol) for item in listed]
        for name, item in zip(names, listed, strict=True):
            if item.contract_size is not None:
                self.contract_sizes[name] = item.contract_size
        return names


async def resolve_market(
    listings: ExchangeListings,
    market: Market,
    stop: asyncio.Event,
    *,
    setting: str,
    backoff: Backoff | None = None,
    before_attempt: Callable[[], None] | None = None,
) -> tuple[str, ...]:
    """`listings.resolve(market)`, asked until it names at least one instrument; () if `stop` was set first.

    `setting` names what asked (for the warnings); `before_attempt` runs before each question,
    and what it raises ends the wait (ingest: a NATS connection closed for good).
    """
    backoff = backoff or Backoff(RETRY_INITIAL_S, RETRY_MAX_S)
    while not stop.is_set():
        if before_attempt is not None:
            before_attempt()
        try:
            names = await listings.resolve(market)
            if names:
                logger.info(
                    "instruments from exchangeInfo", extra={"setting": setting, "market": market, "trading": len(names)}
                )
                return tuple(names)
            error = "exchangeInfo lists no TRADING symbol"
        except GapFillError as exc:
            error = exc.reason
        delay = backoff.next_delay()
        logger.warning(
            "exchangeInfo not usable, symbols unknown, retrying",
            extra={
                "setting": setting,
                "url": listings.client(market).base_url,
                "error": error,
                "delay_s": round(delay, 1),
            },
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
    return ()


async def resolve_symbols(
    settings: Settings,
    stop: asyncio.Event,
    *,
    rest: RestClient | None = None,
    backoff: Backoff | None = None,
    before_attempt: Callable[[], None] | None = None,
) -> tuple[str, ...]:
    """`settings.symbols`, or with `ALL` spot's TRADING symbols; () if `stop` was set first.

    `rest` is the caller's spot client when it has one, else one from `settings`.
    """
    if not settings.symbols_from_exchange:
        return settings.symbols
    listings = ExchangeListings(settings, {} if rest is None else {Market.SPOT: rest})
    setting = f"{Settings.env_name('symbols')}={ALL_SYMBOLS}"
    return await resolve_market(
        listings, Market.SPOT, stop, setting=setting, backoff=backoff, before_attempt=before_attempt
    )


async def follow_listings(
    settings: Settings,
    stop: asyncio.Event,
    known: Iterable[str],
    on_listed: Callable[[tuple[str, ...]], Awaitable[None]],
    *,
    rest: RestClient | None = None,
) -> None:
    """With `ALL`, ask exchangeInfo every `symbols_refresh_s` until `stop`; `on_listed(new)` for names not in `known`.

    `new` holds every TRADING instrument not seen before, in the exchange's order (the caller
    takes its shard's share). A failed question is one warning and waits for the next interval;
    an instrument the exchange stops listing stays where it is (its tape is still served).
    """
    if not settings.symbols_from_exchange or settings.symbols_refresh_s <= 0:
        return
    listings = ExchangeListings(settings, {} if rest is None else {Market.SPOT: rest})
    setting = f"{Settings.env_name('symbols')}={ALL_SYMBOLS}"
    seen = set(known)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.symbols_refresh_s)
        if stop.is_set():
            return
        try:
            listed = await listings.resolve(Market.SPOT)
        except GapFillError as exc:
            logger.warning("exchangeInfo not usable, listings not refreshed", extra={"error": exc.reason})
            continue
        new = tuple(name for name in listed if name not in seen)
        if new:
            seen.update(new)
            logger.info("symbols listed", extra={"setting": setting, "new": len(new), "symbols": ",".join(new[:50])})
            await on_listed(new)


def _grammatical(listed: list[Listed], market: Market) -> list[Listed]:
    """The entries whose names are symbols; one warning counting (and quoting a few of) the others."""
    kept: list[Listed] = []
    dropped: list[str] = []
    for item in listed:
        if is_symbol(item.symbol):
            kept.append(item)
        else:
            dropped.append(item.symbol)
    if dropped:
        logger.warning(
            "exchangeInfo names that are no symbol left out",
            extra={
                "market": market,
                "left_out": len(dropped),
                "examples": ",".join(repr(name[:40]) for name in dropped[:SHOWN_DROPPED]),
            },
        )
    return kept
