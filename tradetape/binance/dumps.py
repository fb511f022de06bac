"""data.binance.vision's aggTrades dumps: where they lie, how they are named, what their rows and checksums hold.

A dump is ``<root>/<daily|monthly>/aggTrades/<SYM>/<SYM>-aggTrades-<YYYY-MM-DD|YYYY-MM>.zip``,
the root per market (`tradetape.binance.markets`): ``data/spot``, ``data/futures/um``,
``data/futures/cm``. It holds one CSV of ``aggTradeId, price, qty, firstTradeId,
lastTradeId, timestamp, isBuyerMaker[, isBestMatch]`` rows: spot's without a header, with
`isBestMatch`, timestamps in µs (since 2025) or ms (before); futures' with a header row
(``agg_trade_id,price,quantity,...,is_buyer_maker``), seven columns, ms. Beside it lies
``<name>.CHECKSUM``: one line ``<sha256>  <name>``. A dump of another market than the
instrument's is refused (`check_dump_market`): by its path where that names a market, and
by its content as far as that tells (an `isBestMatch` column or µs times say spot, seven
columns and ms futures; nothing in the rows tells USD-M from COIN-M). Layout only: reading a
dump within bounds is `tradetape.history.dumps`, fetching one `tradetape.history.fetch`.
"""

from __future__ import annotations

import re
from datetime import date

from tradetape.binance.markets import MARKET_APIS, market_api
from tradetape.domain.instruments import Market
from tradetape.errors import InputError

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
DUMP_NAME_MARK = "-aggTrades"
"""What a dump's name holds after its symbol."""
_CHECKSUM_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *]?(\S+)")


def period_label(kind: str, first: date) -> str:
    """The date part of a dump's name: ``2026-01-01`` (daily) or ``2026-01`` (monthly)."""
    return first.isoformat() if kind == DAILY else first.strftime("%Y-%m")


def dump_name(symbol: str, label: str) -> str:
    return f"{symbol}{DUMP_NAME_MARK}-{label}.zip"


def dump_path(kind: str, symbol: str, label: str, market: Market = Market.SPOT) -> str:
    """The dump's path on the host, below its root: `symbol` is the exchange's (``BTCUSDT``), `market` says where."""
    return f"{market_api(market).dump_root}/{kind}/aggTrades/{symbol}/{dump_name(symbol, label)}"


class DumpMarketError(InputError):
    """A dump of another market than the instrument's (by its path or its content)."""


def path_market(path: str) -> Market | None:
    """The market a dump's path names (``.../data/futures/um/daily/...``); None if it names none.

    The root nearest the file decides, so a mirror kept in a directory that happens to hold
    another root's name (``/srv/data/spot/mirror/data/futures/um/...``) is still told right.
    """
    path = path.replace("\\", "/")
    found = {path.rfind(f"{api.dump_root}/"): market for market, api in MARKET_APIS.items()}
    nearest = max(found)
    return found[nearest] if nearest >= 0 else None


def content_markets(*, columns: int, unit: str) -> frozenset[Market]:
    """The markets whose dumps have rows of `columns` fields and times in `unit` (``us``/``ms``).

    Spot's rows end in `isBestMatch` (8 fields) and its times are µs since 2025; futures' rows
    have 7 fields and ms times. Nothing in a row tells USD-M from COIN-M.
    """
    if columns > len(DUMP_HEADERS[0]) or unit == "us":
        return frozenset((Market.SPOT,))
    return frozenset((Market.UM, Market.CM))


def check_dump_market(market: Market, source: str, *, columns: int | None = None, unit: str | None = None) -> None:
    """`DumpMarketError` if `source` (a path or a file name) or its content (when given) is another market's dump."""
    named = path_market(source)
    if named is not None and named is not market:
        raise DumpMarketError(
            f"{source}: a {named.value} dump (by its path), not one of {market.value}; "
            f"fetch or import it for a {named.value} instrument"
        )
    if columns is None or unit is None:
        return
    looks = content_markets(columns=columns, unit=unit)
    if market not in looks:
        kinds = " or ".join(sorted(m.value for m in looks))
        raise DumpMarketError(
            f"{source}: rows of {columns} fields with times in {unit} make a {kinds} dump, not one of {market.value}"
        )


def is_dump_name(name: str) -> bool:
    """Whether a file is named as Binance names its dumps (``<SYM>-aggTrades…``): the name then tells its symbol."""
    return DUMP_NAME_MARK in name


def timestamp_unit(stamp: int) -> str:
    """``us`` or ``ms``: the unit of a dump's timestamps, from one of them."""
    return "us" if stamp > MICROSECONDS_ABOVE else "ms"


def checksum_line(text: str) -> tuple[str, str] | None:
    """A ``.CHECKSUM`` file's SHA-256 (lower case) and the file name it gives; None if it is not that one line."""
    match = _CHECKSUM_LINE.fullmatch(text.strip())
    return None if match is None else (match.group(1).lower(), match.group(2))
