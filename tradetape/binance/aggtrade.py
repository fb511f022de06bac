"""Binance's aggregate trade: strict validation of its aggTrade objects (and columns of them) into exact rows.

Every edge (ingest's WebSocket frames and REST rows, persist's bus messages, imports)
validates with these rules, so what one accepts the others accept too. `parse_trade` is
the hot path of ingest and persist, so it is a plain function over a decoded JSON object,
not a pydantic model; it raises `TradeFormatError` with a reason specific enough to put
in a dead-letter header. `first_invalid` is the same rules over whole columns: imports (a
day of a busy symbol is millions of rows) cannot afford `parse_trade` per row, so they
run as numpy expressions on the limits defined here, and both paths accept exactly the
same trades.

Voids. Binance marked invalidated duplicate aggTrades with `p` 0, `q` 0, `f` -1, `l` -1
(spot API changelog, 2022-04-12) and serves them so from REST and in its dumps. The id is
real and belongs to the sequence; the row carries no trade. Exactly that pattern is
accepted, as the tape's void row (`tradetape.domain.trade.is_void`); the store keeps voids
apart from the trades. Zero is judged as a value: "0", "0.0" and "0.00000000" are the same
decimal (REST writes the last), while any other zero or negative field stays refused.

Futures. COIN-M and USD-M objects carry no `M`, which is never read anyway. USD-M's carry
`nq` (since 2025-12-31): the quantity without RPI (retail price improvement) orders. When
present it must be a decimal string from 0 to `q` (0 on a void), checked by `parse_trade`
like every other field, so an object with a bad `nq` is refused at every edge; the row
keeps `q` and, as `normal_qty`, the exact `nq` (`NO_NORMAL_QTY` without one: spot, COIN-M,
USD-M before 2025-12-31). The raw object, `nq` included, is what goes on the bus.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from tradetape.domain.column_checks import first_of
from tradetape.domain.columns import BoolArray, TradeColumns
from tradetape.domain.decimals import DecimalFormatError, parse_units
from tradetape.domain.trade import NO_NORMAL_QTY, VOID_TRADE_ID, TradeRow, is_void
from tradetape.errors import InputError

MAX_ID = 2**53 - 1
"""Agg and trade ids stay below 2^53 (exact in a JSON double; far above any exchange's count)."""
MIN_TIME_MS = 1_483_228_800_000
"""2017-01-01T00:00:00Z, before Binance's first trade: an earlier `T` is not epoch ms."""
MAX_AHEAD_MS = 60_000
"""A trade time more than a minute ahead of the local clock is not believed."""


class TradeFormatError(InputError):
    """An aggTrade object that cannot be stored as it is."""


_ID_FIELDS = (("a", "agg id"), ("f", "first trade id"), ("l", "last trade id"))


def parse_trade(obj: Any, *, now_ms: int | None = None) -> TradeRow:
    """Validate one aggTrade object (WebSocket `data` or a REST row) into a `TradeRow`.

    `now_ms` (default: the local clock) bounds how far ahead a trade time may lie.
    """
    if not isinstance(obj, dict):
        raise TradeFormatError(f"trade is a {type(obj).__name__}, not an object")
    for field, name in _ID_FIELDS:
        value = obj.get(field)
        if type(value) is not int or not (0 <= value <= MAX_ID or (field != "a" and value == VOID_TRADE_ID)):
            raise TradeFormatError(f"field {field!r} ({name}) must be an integer from 0 to 2^53-1, got {value!r}")
    trade_time = obj.get("T")
    if type(trade_time) is not int:
        raise TradeFormatError(f"field 'T' (trade time) must be an integer of epoch ms, got {trade_time!r}")
    latest = (time.time_ns() // 1_000_000 if now_ms is None else now_ms) + MAX_AHEAD_MS
    if not MIN_TIME_MS <= trade_time <= latest:
        raise TradeFormatError(
            f"field 'T' (trade time) {trade_time} is not epoch ms between 2017 and a minute from now"
        )
    buyer_maker = obj.get("m")
    if type(buyer_maker) is not bool:
        raise TradeFormatError(f"field 'm' (buyer is maker) must be a boolean, got {buyer_maker!r}")
    try:
        price = parse_units(_decimal_field(obj, "p"))
        qty = parse_units(_decimal_field(obj, "q"))
    except DecimalFormatError as exc:
        raise TradeFormatError(str(exc)) from exc
    normal = _normal_qty(obj, qty) if "nq" in obj else NO_NORMAL_QTY
    # A trade's value is judged here alone (and in `first_invalid` over columns).
    first_id, last_id = obj["f"], obj["l"]
    if price <= 0 or qty <= 0 or first_id < 0 or last_id < 0:  # one test on the hot path
        if is_void(price, qty, first_id, last_id):
            return TradeRow(obj["a"], 0, 0, VOID_TRADE_ID, VOID_TRADE_ID, trade_time, buyer_maker, normal)
        _refuse_value(obj, price, qty)
    if last_id < first_id:
        raise TradeFormatError(f"last trade id {last_id} is below first trade id {first_id}")
    return TradeRow(obj["a"], price, qty, first_id, last_id, trade_time, buyer_maker, normal)


DECIMALS_REMEMBERED = 65_536
"""Decimal strings `parse_trades` keeps the units of between calls (emptied past this; a few MB at most)."""


def parse_trades(
    objs: Sequence[Any], *, now_ms: int | None = None, known_units: dict[str, int] | None = None
) -> list[TradeRow | TradeFormatError]:
    """`parse_trade` over a batch in one call: the same rows, and each refusal as the same `TradeFormatError` (returned,
    not raised).

    A trade of the common shape (plain ids in range and in order, a time in range, positive decimals) is
    built inline, its decimals' units looked up in `known_units` (a trade's price is mostly one seen a moment
    ago); anything else goes through `parse_trade` itself, so its rows and reasons are parse_trade's by
    construction. `known_units` holds valid decimals only, is the caller's (one thread), and is emptied once
    past `DECIMALS_REMEMBERED`.
    """
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    latest = now + MAX_AHEAD_MS
    units = {} if known_units is None else known_units
    if len(units) > DECIMALS_REMEMBERED:
        units.clear()
    rows: list[TradeRow | TradeFormatError] = []
    for obj in objs:
        row = _common_trade(obj, latest, units) if type(obj) is dict else None
        if row is not None:
            rows.append(row)
            continue
        try:
            rows.append(parse_trade(obj, now_ms=now))
        except TradeFormatError as exc:
            rows.append(exc)
    return rows


def _common_trade(obj: dict[str, Any], latest: int, units: dict[str, int]) -> TradeRow | None:
    """The row of a trade every check of `parse_trade` passes on the first look; None for any other (or a void)."""
    agg_id, first_id, last_id = obj.get("a"), obj.get("f"), obj.get("l")
    trade_time, buyer_maker = obj.get("T"), obj.get("m")
    if not (
        type(agg_id) is int
        and type(first_id) is int
        and type(last_id) is int
        and type(trade_time) is int
        and type(buyer_maker) is bool
        and 0 <= agg_id <= MAX_ID
        and 0 <= first_id <= last_id <= MAX_ID
        and MIN_TIME_MS <= trade_time <= latest
    ):
        return None
    price, qty = _known_units(obj.get("p"), units), _known_units(obj.get("q"), units)
    if not price or not qty:  # None (not a plain decimal) or zero (refused, or a void's)
        return None
    normal = NO_NORMAL_QTY
    if "nq" in obj:
        normal_units = _known_units(obj["nq"], units)
        if normal_units is None or normal_units > qty:
            return None
        normal = normal_units
    return TradeRow(agg_id, price, qty, first_id, last_id, trade_time, buyer_maker, normal)


def _known_units(value: object, units: dict[str, int]) -> int | None:
    """`parse_units(value)`, remembered in `units`; None where parse_trade would refuse the field."""
    if type(value) is not str:
        return None
    known = units.get(value)
    if known is None:
        try:
            known = units[value] = parse_units(value)
        except DecimalFormatError:
            return None
    return known


def _normal_qty(obj: dict[str, Any], qty: int) -> int:
    """USD-M's `nq`, exact: a decimal string from 0 to the quantity `q` (so 0 on a void)."""
    try:
        normal = parse_units(_decimal_field(obj, "nq"))
    except DecimalFormatError as exc:
        raise TradeFormatError(f"field 'nq' (quantity without RPI orders): {exc}") from exc
    if not 0 <= normal <= qty:
        raise TradeFormatError(f"field 'nq' {obj['nq']!r} must be from 0 to the quantity {obj['q']!r}")
    return normal


def first_invalid(columns: TradeColumns, *, now_ms: int | None = None) -> tuple[int, str] | None:
    """The first row (index, reason) that `parse_trade` would refuse, once its decimals are units; None if all pass.

    The decimals themselves are checked as text before (`tradetape.domain.column_checks.decimal_units`).
    """
    latest = (time.time_ns() // 1_000_000 if now_ms is None else now_ms) + MAX_AHEAD_MS
    trade = ~columns.voids()
    checks: list[tuple[BoolArray, str]] = [
        ((columns.agg_id < 0) | (columns.agg_id > MAX_ID), "agg id must be from 0 to 2^53-1"),
        (trade & ((columns.first_id < 0) | (columns.first_id > MAX_ID)), "first trade id must be from 0 to 2^53-1"),
        (trade & ((columns.last_id < 0) | (columns.last_id > MAX_ID)), "last trade id must be from 0 to 2^53-1"),
        (columns.last_id < columns.first_id, "last trade id is below first trade id"),
        (trade & (columns.price <= 0), "price must be positive"),
        (trade & (columns.qty <= 0), "quantity must be positive"),
        ((columns.time < MIN_TIME_MS) | (columns.time > latest), "time is not between 2017 and a minute from now"),
    ]
    return first_of(checks)


def _refuse_value(obj: dict[str, Any], price: int, qty: int) -> None:
    """Raise for the first field out of range in a row that is not a void."""
    for field, name in _ID_FIELDS[1:]:
        if obj[field] < 0:
            raise TradeFormatError(f"field {field!r} ({name}) must be an integer from 0 to 2^53-1, got {obj[field]!r}")
    if price <= 0:
        raise TradeFormatError(f"price must be positive, got {obj['p']!r}")
    raise TradeFormatError(f"quantity must be positive, got {obj['q']!r}")


def _decimal_field(obj: dict[str, Any], field: str) -> str:
    value = obj.get(field)
    if not isinstance(value, str):
        raise TradeFormatError(f"field {field!r} must be a decimal string, got {value!r}")
    return value
