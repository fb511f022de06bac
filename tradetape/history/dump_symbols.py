"""The instrument a trade file holds, from its label, its name, its path and the user's word."""

from __future__ import annotations

import re

from tradetape.binance.dumps import DUMP_NAME_MARK, is_dump_name
from tradetape.domain.instruments import Market, instrument_from_input, instrument_name, symbol_of_instrument
from tradetape.domain.symbols import SymbolError, check_symbol
from tradetape.history.file_limits import DumpError
from tradetape.history.labels import ExportLabel

_SYMBOL = re.compile(r"^([A-Z0-9]{2,20})(?:-|_|\.)")


def symbol_of_name(name: str) -> str | None:
    """``BTCUSDT-aggTrades-2026-01-01.zip`` or ``BTCUSDT-week.parquet`` → ``BTCUSDT`` (None: the name does not tell).

    A dump's name is the exchange's symbol up to ``-aggTrades``, underscores included (``BTCUSD_PERP``).
    """
    if is_dump_name(name):
        try:
            return check_symbol(name.partition(DUMP_NAME_MARK)[0])
        except SymbolError:
            return None
    match = _SYMBOL.match(name)
    return match.group(1) if match else None


def dump_symbol(name: str, given: str | None, label: ExportLabel | None = None, market: Market | None = None) -> str:
    """The instrument a file holds: its label's, else its name's, else `given`; `given` must agree with either.

    `given` may name a futures instrument (`um:BTCUSDT`); a dump's name tells only the symbol, its
    market is the one its path names (`market`, from ``.../data/futures/um/...``), else spot.
    """
    if given is not None:
        try:
            given = instrument_from_input(given)
        except SymbolError as exc:
            raise DumpError(name, str(exc)) from None
    if label is not None:
        if given is not None and given != label.instrument:
            raise DumpError(name, f"the file holds {label.instrument} trades (its export label), not {given}")
        return label.instrument
    named = symbol_of_name(name)
    if given is not None:
        if named is not None and is_dump_name(name) and named != symbol_of_instrument(given):
            raise DumpError(name, f"the file holds {named} trades, not {given}")
        return given
    if named is None:
        raise DumpError(name, "cannot tell the symbol from the file name; give it (--symbol)")
    try:
        return instrument_name(market or Market.SPOT, named)
    except SymbolError as exc:
        raise DumpError(name, str(exc)) from None
