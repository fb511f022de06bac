"""The symbols a service works on: `TRADETAPE_SYMBOLS` as given, or for `ALL` every TRADING symbol of exchangeInfo.

The one place `ALL` becomes a list, so ingest, persist and analytics started with the same
settings agree on it (each then takes its shard's share with `Settings.shard_share`). The
exchange is asked at start (`resolve_symbols`) and then every `symbols_refresh_s` while the
service runs (`follow_listings`), which hands the service the symbols listed since. At start,
while it is unreachable or its answer unusable (no
TRADING symbol is unusable too: a service with nothing to do would look stopped), the
question is asked again with capped backoff, each failure one warning naming the setting,
until it answers or the caller's stop event is set. Names that break the symbol grammar
(`tradetape.domain.symbols`) are left out, counted in one warning: no subject, key, path
or page ever carries them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from tradetape.binance.rest import GapFillError, RestClient
from tradetape.domain.symbols import is_symbol
from tradetape.ground.backoff import Backoff
from tradetape.settings import ALL_SYMBOLS, Settings

logger = logging.getLogger(__name__)

RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 60.0
SHOWN_DROPPED = 5
"""Refused names quoted in the warning (each cut to 40 characters)."""


async def resolve_symbols(
    settings: Settings,
    stop: asyncio.Event,
    *,
    rest: RestClient | None = None,
    backoff: Backoff | None = None,
    before_attempt: Callable[[], None] | None = None,
) -> tuple[str, ...]:
    """`settings.symbols`, or with `ALL` the exchange's TRADING symbols; () if `stop` was set first.

    `rest` is the caller's client when it has one (ingest: one weight budget for all its
    calls), else one for `settings.binance_rest_url`. `before_attempt` runs before each
    question; what it raises ends the wait (ingest: a NATS connection closed for good).
    """
    if not settings.symbols_from_exchange:
        return settings.symbols
    rest = rest or RestClient(settings.binance_rest_url, weight_per_minute=settings.ingest_rest_weight_per_minute)
    backoff = backoff or Backoff(RETRY_INITIAL_S, RETRY_MAX_S)
    setting = f"{Settings.env_name('symbols')}={ALL_SYMBOLS}"
    while not stop.is_set():
        if before_attempt is not None:
            before_attempt()
        try:
            symbols = await _trading(rest, setting)
            logger.info("symbols from exchangeInfo", extra={"setting": setting, "trading": len(symbols)})
            return symbols
        except GapFillError as exc:
            error = exc.reason
        delay = backoff.next_delay()
        logger.warning(
            "exchangeInfo not usable, symbols unknown, retrying",
            extra={"setting": setting, "url": settings.binance_rest_url, "error": error, "delay_s": round(delay, 1)},
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
    return ()


async def follow_listings(
    settings: Settings,
    stop: asyncio.Event,
    known: Iterable[str],
    on_listed: Callable[[tuple[str, ...]], Awaitable[None]],
    *,
    rest: RestClient | None = None,
) -> None:
    """With `ALL`, ask exchangeInfo every `symbols_refresh_s` until `stop`; `on_listed(new)` for symbols not in `known`.

    `new` holds every TRADING symbol not seen before, in the exchange's order (the caller takes
    its shard's share). A failed question is one warning and waits for the next interval; a
    symbol the exchange stops listing stays where it is (its tape is still served).
    """
    if not settings.symbols_from_exchange or settings.symbols_refresh_s <= 0:
        return
    rest = rest or RestClient(settings.binance_rest_url, weight_per_minute=settings.ingest_rest_weight_per_minute)
    setting = f"{Settings.env_name('symbols')}={ALL_SYMBOLS}"
    seen = set(known)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.symbols_refresh_s)
        if stop.is_set():
            return
        try:
            listed = await _trading(rest, setting)
        except GapFillError as exc:
            logger.warning("exchangeInfo not usable, listings not refreshed", extra={"error": exc.reason})
            continue
        new = tuple(symbol for symbol in listed if symbol not in seen)
        if new:
            seen.update(new)
            logger.info("symbols listed", extra={"setting": setting, "new": len(new), "symbols": ",".join(new[:50])})
            await on_listed(new)


async def _trading(rest: RestClient, setting: str) -> tuple[str, ...]:
    """The TRADING symbols exchangeInfo lists; `GapFillError` when it fails or lists none."""
    symbols = _grammatical(await rest.trading_symbols(), setting)
    if not symbols:
        raise GapFillError("exchangeInfo lists no TRADING symbol")
    return symbols


def _grammatical(names: list[str], setting: str) -> tuple[str, ...]:
    """The names that are symbols; one warning counting (and quoting a few of) the others."""
    symbols: list[str] = []
    dropped: list[str] = []
    for name in names:
        (symbols if is_symbol(name) else dropped).append(name)
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
