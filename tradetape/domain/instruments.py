"""Instruments: a market and a symbol, named `um:BTCUSDT`; a name without a prefix is spot.

Binance runs three markets whose agg ids are each consecutive per symbol: spot, USD-M
futures (`um`) and COIN-M futures (`cm`), as data.binance.vision names them. The same
symbol on spot and on USD-M is a different instrument with its own ids, so everything
that keeps trades apart (subjects, message ids, ledger, shards, store keys, files) keys on
the instrument, never on the bare symbol.

Two spellings, both checked here and nowhere else:

- the **name**, what people and replies use: ``BTCUSDT`` (spot), ``um:BTCUSDT``,
  ``cm:BTCUSD_PERP``. Spot keeps its bare name, so every spot subject, key and store of
  before futures keeps working unchanged;
- the **token**, what machines spell into subjects, keys and file names, where ``:``
  separates key fields: ``BTCUSDT``, ``um.BTCUSDT``. In a NATS subject the market is a
  token of its own (`tape.query.bars.um.BTCUSDT`), so `tape.query.bars.*` is spot only
  and `tape.query.bars.>` is every market.

A symbol never holds a lower-case letter, ``:`` or ``.`` (`tradetape.domain.symbols`), so
neither spelling is ambiguous.
"""

from __future__ import annotations

from enum import StrEnum

from tradetape.domain.symbols import SymbolError, check_symbol, quoted_name, symbol_from_input


class Market(StrEnum):
    """A Binance market, named as data.binance.vision names it."""

    SPOT = "spot"
    UM = "um"
    """USD-M futures: quantities in the base asset (USDT or USDC margined)."""
    CM = "cm"
    """COIN-M futures: quantities are contracts of a fixed USD value (`contractSize`)."""


NAME_SEPARATOR = ":"
TOKEN_SEPARATOR = "."
_PREFIXED = (Market.UM, Market.CM)
MAX_INSTRUMENT_LENGTH = len("um:") + 32


def instrument_name(market: Market, symbol: str) -> str:
    """The name of `symbol` on `market`: the bare symbol on spot, `<market>:<symbol>` otherwise."""
    symbol = check_symbol(symbol)
    return symbol if market is Market.SPOT else f"{market.value}{NAME_SEPARATOR}{symbol}"


def split_instrument(name: object) -> tuple[Market, str]:
    """The market and symbol of an instrument name; `SymbolError` for anything else."""
    if isinstance(name, str) and NAME_SEPARATOR in name:
        prefix, _, symbol = name.partition(NAME_SEPARATOR)
        for market in _PREFIXED:
            if prefix == market.value:
                return market, check_symbol(symbol)
        raise SymbolError(
            f"instrument {quoted_name(name)} names no market: "
            "write um:SYMBOL (USD-M), cm:SYMBOL (COIN-M) or SYMBOL (spot)"
        )
    return Market.SPOT, check_symbol(name)


def check_instrument(name: object) -> str:
    """`name` if it is an instrument's name exactly as machines write it (`spot:` is not: spot is bare)."""
    market, symbol = split_instrument(name)
    return instrument_name(market, symbol)


def instrument_from_input(text: str) -> str:
    """An instrument a person typed: ``um:btcusdt``, ``UM:BTCUSDT`` and ``spot:BTCUSDT`` are accepted.

    The market prefix is case-folded (ASCII only) and the symbol goes through
    `symbol_from_input`; what comes back is the canonical name.
    """
    if isinstance(text, str) and text.isascii() and NAME_SEPARATOR in text:
        prefix, _, symbol = text.strip().partition(NAME_SEPARATOR)
        prefix = prefix.strip().lower()
        if prefix == Market.SPOT.value:
            return symbol_from_input(symbol)
        for market in _PREFIXED:
            if prefix == market.value:
                return instrument_name(market, symbol_from_input(symbol))
        return check_instrument(text)
    return symbol_from_input(text)


def market_of(name: str) -> Market:
    return split_instrument(name)[0]


def symbol_of_instrument(name: str) -> str:
    """The exchange's own symbol (what Binance's streams, REST and dumps call it)."""
    return split_instrument(name)[1]


def is_instrument(name: object) -> bool:
    """Whether `name` is an instrument's canonical name (for filtering what others wrote)."""
    try:
        return check_instrument(name) == name
    except SymbolError:
        return False


def instrument_token(name: str) -> str:
    """The spelling for subjects, keys and file names: `BTCUSDT`, `um.BTCUSDT`."""
    return name.replace(NAME_SEPARATOR, TOKEN_SEPARATOR) if NAME_SEPARATOR in check_instrument(name) else name


def instrument_of_token(token: str) -> str:
    """The name a token spells; `SymbolError` for a token that is not one."""
    if TOKEN_SEPARATOR in token:
        return check_instrument(token.replace(TOKEN_SEPARATOR, NAME_SEPARATOR, 1))
    return check_symbol(token)
