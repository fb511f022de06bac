"""The instruments a service works on: `TRADETAPE_SYMBOLS` as given, each market's `ALL` from its exchangeInfo.

The one place `ALL`, `um:ALL` and `cm:ALL` become lists, so ingest, persist and analytics
started with the same settings agree on them (each then takes its shard's share with
`Settings.shard_share`). A market's list comes from a `Listing`: `resolve(market)` ->
the names of its TRADING instruments (`um:BTCUSDT`); spot's is exchangeInfo of
`binance_rest_url`, the futures markets' are the futures exchangeInfo clients', passed
in by the caller (`listing`). Each market is asked once, at start: while it is unreachable or its answer unusable (no
TRADING symbol is unusable too: a service with nothing to do would look stopped), the
question is asked again with capped backoff, each failure one warning naming the setting,
until it answers or the caller's stop event is set. Names that are not instruments of the
market asked (`tradetape.domain.instruments`) are left out, counted in one warning: no
subject, key, path or page ever carries them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from tradetape.binance.rest import GapFillError, RestClient
from tradetape.domain.instruments import Market, instrument_name, is_instrument, market_of
from tradetape.ground.backoff import Backoff
from tradetape.settings import ALL_SYMBOLS, Settings, SymbolsUnresolvedError, market_of_all

logger = logging.getLogger(__name__)

RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 60.0
SHOWN_DROPPED = 5
"""Refused names quoted in the warning (each cut to 40 characters)."""

Listing = Callable[[Market], Awaitable[list[str]]]
"""`resolve(market)`: the names of every TRADING instrument of `market` (`BTCUSDT`, `um:BTCUSDT`), from its
exchangeInfo; raises `GapFillError` while that cannot be had (asked again with backoff)."""


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

    `listing` answers for a market named by its `ALL` (default: spot's exchangeInfo from
    `rest`, the caller's client when it has one (ingest: one weight budget for all its calls),
    else one for `settings.binance_rest_url`). `before_attempt` runs before each question;
    what it raises ends the wait (ingest: a NATS connection closed for good).
    """
    if not settings.symbols_from_exchange:
        return settings.symbols
    listing = listing or spot_listing(
        rest or RestClient(settings.binance_rest_url, weight_per_minute=settings.ingest_rest_weight_per_minute)
    )
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


def spot_listing(rest: RestClient) -> Listing:
    """Spot's `Listing`: `/api/v3/exchangeInfo` of `rest`; any other market has its own client."""

    async def resolve(market: Market) -> list[str]:
        if market is not Market.SPOT:
            every = instrument_name(market, ALL_SYMBOLS)
            raise SymbolsUnresolvedError(f"{every}: no exchangeInfo client of market {market.value} was given")
        return await rest.trading_symbols()

    return resolve


async def _listed(
    market: Market,
    listing: Listing,
    stop: asyncio.Event,
    backoff: Backoff,
    before_attempt: Callable[[], None] | None,
) -> tuple[str, ...]:
    """`market`'s TRADING instruments, asked until it answers some; () if `stop` was set first."""
    setting = f"{Settings.env_name('symbols')}={instrument_name(market, ALL_SYMBOLS)}"
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
