"""The symbol grammar: Binance's names, checked once before a symbol becomes a subject, a key or a path.

A symbol is 1 to 32 characters: upper-case ASCII letters and digits, with single
underscores between them for futures contracts (``BTCUSDT``, ``1000SHIBUSDT``,
``BTCUSD_PERP``, ``BTCUSDT_250328``). No underscore leads, trails or doubles, so a name is
never only underscores. Every character is a plain NATS subject token character and a
plain file-name character, and 32 of them keep every subject far below nats-server's
4 KiB control line, which closes the connection of a client that exceeds it.

`check_symbol` is the grammar, for names a machine wrote (exchangeInfo, subjects,
``shard.json``): exact, no case folding. `symbol_from_input` is for what a person typed
(CLI, settings, MCP, the Python client): ASCII is upper-cased first, so ``btcusdt`` works
as it always has; anything else is refused before it is upper-cased, since Unicode
upper-casing can turn a foreign character into ASCII letters.
"""

from __future__ import annotations

import re

from tradetape.errors import RequestError

MAX_SYMBOL_LENGTH = 32
_GRAMMAR = re.compile(r"[A-Z0-9]+(?:_[A-Z0-9]+)*")
_SHOWN = 40
"""Characters of a refused name quoted in the error, so a megabyte of garbage makes a one-line message."""


class SymbolError(RequestError):
    """A name that is not a symbol; its message quotes at most the first 40 characters."""


def check_symbol(symbol: object) -> str:
    """`symbol` if it follows the grammar; `SymbolError` otherwise."""
    if isinstance(symbol, str) and len(symbol) <= MAX_SYMBOL_LENGTH and _GRAMMAR.fullmatch(symbol):
        return symbol
    raise SymbolError(
        f"symbol {quoted_name(symbol)} is not a Binance symbol: 1 to {MAX_SYMBOL_LENGTH} upper-case letters and "
        "digits, with single underscores between them (e.g. BTCUSDT, BTCUSD_PERP)"
    )


def symbol_from_input(text: str) -> str:
    """A symbol a person typed: surrounding blanks dropped, ASCII upper-cased, then `check_symbol`."""
    if isinstance(text, str) and text.isascii():
        text = text.strip().upper()
    return check_symbol(text)


def is_symbol(name: object) -> bool:
    """Whether `name` follows the grammar (for filtering what others wrote)."""
    try:
        check_symbol(name)
    except SymbolError:
        return False
    return True


def quoted_name(name: object) -> str:
    """`name` quoted for an error message: at most 40 characters of it, and its length when cut."""
    if not isinstance(name, str):
        return f"of type {type(name).__name__}"
    if len(name) <= _SHOWN:
        return repr(name)
    return f"{name[:_SHOWN]!r}… ({len(name)} characters)"
