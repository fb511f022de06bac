"""data.binance.vision's aggTrades dumps: where they lie, how they are named, what their rows and checksums hold.

A dump is ``data/spot/<daily|monthly>/aggTrades/<SYM>/<SYM>-aggTrades-<YYYY-MM-DD|YYYY-MM>.zip``
holding one CSV of ``aggTradeId, price, qty, firstTradeId, lastTradeId, timestamp,
isBuyerMaker[, isBestMatch]`` rows, with or without a header line, timestamps in µs
(spot since 2025) or ms (before). Beside it lies ``<name>.CHECKSUM``: one line
``<sha256>  <name>``. Layout only: reading a dump within bounds is
`tradetape.history.dumps`, fetching one `tradetape.history.fetch`.
"""

from __future__ import annotations

import re
from datetime import date

DAILY = "daily"
MONTHLY = "monthly"
PERIOD_KINDS = (DAILY, MONTHLY)
"""A dump holds a day or a calendar month (published once the month is over)."""
CHECKSUM_SUFFIX = ".CHECKSUM"
MICROSECONDS_ABOVE = 10**14
"""Dump timestamps above this are µs, below it ms (as the simulator's replay decides)."""
DUMP_FIELDS = ("agg_id", "price", "qty", "first_id", "last_id", "time", "buyer_maker", "best_match")
"""A dump row's columns, in order, by tradetape's names (the last one is not always there)."""
DUMP_HEADERS = (
    ("agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time", "is_buyer_maker"),
    (
        "agg_trade_id",
        "price",
        "quantity",
        "first_trade_id",
        "last_trade_id",
        "transact_time",
        "is_buyer_maker",
        "is_best_match",
    ),
)
"""The header lines data.binance.vision writes (futures dumps have one; spot dumps none)."""
_NAME_MARK = "-aggTrades"
_CHECKSUM_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *]?(\S+)")


def period_label(kind: str, first: date) -> str:
    """The date part of a dump's name: ``2026-01-01`` (daily) or ``2026-01`` (monthly)."""
    return first.isoformat() if kind == DAILY else first.strftime("%Y-%m")


def dump_name(symbol: str, label: str) -> str:
    return f"{symbol}{_NAME_MARK}-{label}.zip"


def dump_path(kind: str, symbol: str, label: str) -> str:
    """The dump's path on the host, below its root."""
    return f"data/spot/{kind}/aggTrades/{symbol}/{dump_name(symbol, label)}"


def is_dump_name(name: str) -> bool:
    """Whether a file is named as Binance names its dumps (``<SYM>-aggTrades…``): the name then tells its symbol."""
    return _NAME_MARK in name


def timestamp_unit(stamp: int) -> str:
    """``us`` or ``ms``: the unit of a dump's timestamps, from one of them."""
    return "us" if stamp > MICROSECONDS_ABOVE else "ms"


def checksum_line(text: str) -> tuple[str, str] | None:
    """A ``.CHECKSUM`` file's SHA-256 (lower case) and the file name it gives; None if it is not that one line."""
    match = _CHECKSUM_LINE.fullmatch(text.strip())
    return None if match is None else (match.group(1).lower(), match.group(2))
