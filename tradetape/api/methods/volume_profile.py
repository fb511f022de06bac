"""`volume_profile`: volume per fixed-height price row, with POC, value area high and low.

The rules (row `floor(p / row_size)`, POC tie-break, value area growth) are those of
docs/design.md, computed exactly in `tradetape.domain.profile`; this module validates the
request, reads the range and formats exact decimal strings once.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

from tradetape.api.errors import insufficient_trades, invalid_request, range_too_large
from tradetape.api.frames import rows_frame
from tradetape.api.models import (
    ProfileRowsField,
    QuantityField,
    RangeRequest,
    RowRule,
    RowSizeField,
    SessionField,
    omitted,
    session_spec,
)
from tradetape.api.query_method import (
    MinuteLevelSource,
    PriceLevelSource,
    QueryMethod,
    TradeSource,
    contract_size_of,
    quantity_source,
)
from tradetape.api.sessions import (
    NakedPocReply,
    PieceAnswer,
    RangePiece,
    SessionAnswer,
    SessionInfo,
    per_session,
    range_pieces,
    session_info,
)
from tradetape.domain.aggregates import MinuteLevels
from tradetape.domain.columns import BoolArray, Int64Array, TradeColumns
from tradetape.domain.contracts import base_units, quote_units
from tradetape.domain.decimals import format_units, parse_units
from tradetape.domain.footprint import level_step
from tradetape.domain.price_levels import PriceLevels
from tradetape.domain.profile import (
    MAX_PROFILE_ROWS,
    ProfileRow,
    VolumeProfile,
    choose_row_size,
    default_row_size,
    infer_tick,
    volume_nodes,
    volume_profile,
)
from tradetape.domain.sessions import SessionSpec


class VolumeProfileRequest(RangeRequest, RowRule):
    quantity: QuantityField = "all"
    row_size: RowSizeField = Field(default=None, description='Row height as a decimal string, e.g. "10".')
    rows: ProfileRowsField = None
    value_area: float = Field(default=0.7, gt=0, le=1, description="Share of volume in the value area.")
    min_trades: int = Field(default=1000, ge=0, description="Fewer trades in the range is insufficient_trades.")
    session: SessionField = None

    def row_size_units(self) -> int | None:
        return None if self.row_size is None else parse_units(self.row_size)

    def value_area_fraction(self) -> Decimal:
        return Decimal(str(self.value_area))


class ProfileRowReply(BaseModel):
    price_low: str
    price_high: str
    volume: str
    buy_volume: str
    sell_volume: str
    trade_count: int
    base_volume: str | None = Field(default=None, exclude_if=omitted)
    """COIN-M: the row's volume in the coin, contracts × contract size / price (`tradetape.domain.contracts`)."""
    quote_volume: str | None = Field(default=None, exclude_if=omitted)
    """COIN-M: the row's volume in USD, contracts × contract size."""


class NodeReply(BaseModel):
    price_low: str
    price_high: str
    volume: str


class SessionProfileReply(SessionInfo):
    """One session's volume profile: the reply's profile fields, over the part of the session in the range."""

    trade_count: int
    total_volume: str
    buy_volume: str
    sell_volume: str
    poc: str
    poc_low: str
    poc_high: str
    vah: str
    val: str
    hvn: list[NodeReply]
    lvn: list[NodeReply]
    rows: list[ProfileRowReply]
    contract_size: int | None = Field(default=None, exclude_if=omitted)
    """COIN-M: the USD value of one contract (volumes count contracts), when the worker knows it."""
    total_base_volume: str | None = Field(default=None, exclude_if=omitted)
    """COIN-M: `total_volume` in the coin (the rows' `base_volume` summed)."""
    total_quote_volume: str | None = Field(default=None, exclude_if=omitted)
    """COIN-M: `total_volume` in USD."""


class ProfileSummary(BaseModel):
    """What every reply computed from a volume profile starts with."""

    symbol: str
    start: int
    end: int
    trade_count: int
    row_size: str
    total_volume: str


class VolumeProfileReply(ProfileSummary):
    buy_volume: str
    sell_volume: str
    poc: str
    poc_low: str
    poc_high: str
    vah: str
    val: str
    value_area: float
    hvn: list[NodeReply]
    """High-volume nodes: rows that out-trade their two neighbours each side, above the mean; largest first."""
    lvn: list[NodeReply]
    """Low-volume nodes: inner rows below their neighbours and the mean; thinnest first."""
    rows: list[ProfileRowReply]
    sessions: list[SessionProfileReply] | None = Field(default=None, exclude_if=omitted)
    """With `session`: the profile of each session in the range holding trades (rows sized as the range's)."""
    naked_pocs: list[NakedPocReply] | None = Field(default=None, exclude_if=omitted)
    """With `session`: POC rows of sessions closed in the range that no later trade in it reached."""
    contract_size: int | None = Field(default=None, exclude_if=omitted)
    """COIN-M: the USD value of one contract (volumes count contracts), when the worker knows it."""
    total_base_volume: str | None = Field(default=None, exclude_if=omitted)
    """COIN-M: `total_volume` in the coin (the rows' `base_volume` summed)."""
    total_quote_volume: str | None = Field(default=None, exclude_if=omitted)
    """COIN-M: `total_volume` in USD."""

    def to_polars(self) -> pl.DataFrame:
        """The rows as a DataFrame, prices and volumes as exact decimals, ascending by price."""
        return rows_frame([row.model_dump() for row in self.rows], ProfileRowReply)


def profile_of(
    source: TradeSource, symbol: str, request: VolumeProfileRequest, now_ms: int
) -> tuple[int, int, VolumeProfile]:
    """The range asked for and the volume profile of its trades, by the docs/design.md rules.

    From the store's per-minute levels with a `row_size` (bucketed to its power of ten) or over a short range
    (`MINUTE_LEVELS_SPAN_MS`), else from its per-price levels when it has them (whole segments are then summed
    from their histograms, never decoded); else from the trades (`_minute_step`).
    """
    start, end, profile, _ = _profiled(source, symbol, request, now_ms)
    return start, end, profile


def _profiled(
    source: TradeSource, symbol: str, request: VolumeProfileRequest, now_ms: int, *, exact_prices: bool = False
) -> tuple[int, int, VolumeProfile, Levels]:
    """`profile_of`, and the levels it was built from: each at its own price when `exact_prices` (a COIN-M
    profile's coin volumes divide by it), else perhaps bucketed into the rows."""
    time_range = request.time_range(now_ms)
    assert time_range is not None
    start, end = time_range
    levels = read_levels(source, symbol, time_range, _minute_step(request, time_range, exact_prices))
    price, qty, sells, counts = levels
    _check_found(request, counts)
    row_size = _row_size(request, price)
    profile = volume_profile(price, qty, sells, row_size, request.value_area_fraction(), trade_counts=counts)
    return start, end, profile, levels


def read_levels(source: TradeSource, symbol: str, time_range: tuple[int, int], price_step: int | None = None) -> Levels:
    """What `[start, end)` traded per price: from the store's histograms when it offers them, else its trades.

    With a `price_step`, from the store's per-minute levels when it keeps them, prices taken down to multiples of
    the step (1: exact), so several levels may share a price: each stays in the row of its trades.
    """
    if price_step is not None and isinstance(source, MinuteLevelSource):
        minutes = source.minute_levels(symbol, time_range, price_step)
        if minutes is not None:
            return _levels_from(minutes)
    levels = source.price_levels(symbol, time_range) if isinstance(source, PriceLevelSource) else None
    return _levels_of(source.trades(symbol, time_range)) if levels is None else _levels_from(levels)


MINUTE_LEVELS_SPAN_MS = 2 * 3_600_000
"""A profile without a `row_size` over at most this reads the plain minute levels (~37,000 rows an hour of the
bench's BTCUSDT: 0.35 ms) instead of merging them per price (1.2 ms); longer ones sum whole segments' histograms."""


def _minute_step(request: VolumeProfileRequest, time_range: tuple[int, int], exact_prices: bool) -> int | None:
    """The price step to read the range's minute levels at (`read_levels`), or None for its per-price levels.

    With a `row_size`, the largest power of ten dividing it (`level_step`): a few bucketed levels a minute, bucketed
    once per segment and cached so, where per-price levels merge every distinct price of every minute and segment
    (the bench's 1 h at rows of 10 USDT: 206 levels read in 0.27 ms, against 15,311 in 1.2 ms). A COIN-M profile
    whose coin volumes divide by each price (`exact_prices`) reads the per-price levels.
    """
    if exact_prices:
        return None
    row_size = request.row_size_units()
    if row_size is not None:
        return level_step(row_size)
    return 1 if time_range[1] - time_range[0] <= MINUTE_LEVELS_SPAN_MS else None


def _check_found(request: VolumeProfileRequest, counts: Int64Array) -> None:
    found = int(counts.sum())
    needed = max(request.min_trades, 1)
    if found < needed:
        raise insufficient_trades(found, needed)


def _row_size(request: VolumeProfileRequest, price: Int64Array) -> int:
    """The row height asked for, or chosen for the prices' span and tick; `invalid_request` past MAX_PROFILE_ROWS."""
    low, high = int(price.min()), int(price.max())
    tick = infer_tick(price)
    row_size = request.row_size_units() or (
        choose_row_size(low, high, request.rows, tick) if request.rows else default_row_size(low, high, tick)
    )
    row_count = high // row_size - low // row_size + 1
    if row_count > MAX_PROFILE_ROWS:
        raise invalid_request(
            f"row_size {format_units(row_size)} gives {row_count} rows; at most {MAX_PROFILE_ROWS} are allowed",
            row_count=row_count,
            max_rows=MAX_PROFILE_ROWS,
        )
    return row_size


Levels = tuple[Int64Array, Int64Array, BoolArray, Int64Array]


def _levels_of(trades: TradeColumns) -> Levels:
    """Each trade as its own level: price, quantity, side, one trade."""
    return trades.price, trades.qty, trades.buyer_maker, np.ones(len(trades), dtype=np.int64)


def _levels_from(levels: PriceLevels | MinuteLevels) -> Levels:
    """Each level twice: its buy volume (with its trade count) and its sell volume."""
    n = len(levels)
    price = np.repeat(levels.price, 2)
    qty = np.empty(2 * n, dtype=np.int64)
    qty[0::2], qty[1::2] = levels.buy_volume, levels.volume - levels.buy_volume
    sells = np.tile(np.array([False, True]), n)
    counts = np.zeros(2 * n, dtype=np.int64)
    counts[0::2] = levels.trade_count
    return price, qty, sells, counts


def summary_of(symbol: str, start: int, end: int, profile: VolumeProfile) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "start": start,
        "end": end,
        "trade_count": profile.trade_count,
        "row_size": format_units(profile.row_size),
        "total_volume": format_units(profile.total_volume),
    }


def handle(source: TradeSource, symbol: str, request: VolumeProfileRequest, now_ms: int) -> VolumeProfileReply:
    source = quantity_source(source, symbol, request.quantity)
    if request.session is not None:
        return _by_session(source, symbol, request, session_spec(request.session), now_ms)
    size = contract_size_of(source, symbol)
    start, end, profile, levels = _profiled(source, symbol, request, now_ms, exact_prices=size is not None)
    reply = VolumeProfileReply(
        **summary_of(symbol, start, end, profile), **_profile_fields(profile), value_area=request.value_area
    )
    return reply if size is None else reply.model_copy(update=_in_coins(reply.rows, profile, levels, size))


def _in_coins(replies: list[ProfileRowReply], profile: VolumeProfile, levels: Levels, size: int) -> dict[str, Any]:
    """A COIN-M profile's rows' base and quote volumes (`tradetape.domain.contracts`), set on their `replies`; and
    the profile's contract size and total base and quote volumes, the fields to add to its reply."""
    price, qty = levels[0], levels[1]
    rows = price // profile.row_size - profile.rows[0].index
    base = base_units(price, qty, rows, len(profile.rows), size)
    for row, reply_row, coins in zip(profile.rows, replies, base, strict=True):
        reply_row.base_volume, reply_row.quote_volume = format_units(coins), format_units(quote_units(row.volume, size))
    total_quote = format_units(quote_units(profile.total_volume, size))
    return {"contract_size": size, "total_base_volume": format_units(sum(base)), "total_quote_volume": total_quote}


def _profile_fields(profile: VolumeProfile) -> dict[str, Any]:
    """A profile's POC, value area, nodes and rows as exact strings: the reply's, and each session's."""
    high_nodes, low_nodes = volume_nodes(profile)
    return {
        "buy_volume": format_units(profile.buy_volume),
        "sell_volume": format_units(profile.sell_volume),
        "poc": _plain(profile.poc),
        "poc_low": format_units(profile.poc_low),
        "poc_high": format_units(profile.poc_high),
        "vah": format_units(profile.vah),
        "val": format_units(profile.val),
        "hvn": [_node(row) for row in high_nodes],
        "lvn": [_node(row) for row in low_nodes],
        "rows": [
            ProfileRowReply(
                price_low=format_units(row.price_low),
                price_high=format_units(row.price_high),
                volume=format_units(row.volume),
                buy_volume=format_units(row.buy_volume),
                sell_volume=format_units(row.sell_volume),
                trade_count=row.trade_count,
            )
            for row in profile.rows
        ],
    }


MAX_SESSION_ROWS = 20_000
"""Rows all sessions' profiles may hold together."""


def _by_session(
    source: TradeSource, symbol: str, request: VolumeProfileRequest, spec: SessionSpec, now_ms: int
) -> VolumeProfileReply:
    """The range's profile as without `session`, plus one per session (same row size) and the naked POCs.

    Each piece of the range (sessions, and the time between them) is read once; the range's
    profile sums them all.
    """
    time_range = request.time_range(now_ms)
    assert time_range is not None
    pieces = range_pieces(spec, time_range)
    levels = [read_levels(source, symbol, piece.range) for piece in pieces]
    price, qty, sells, counts = (np.concatenate(column) for column in zip(*levels, strict=True))
    _check_found(request, counts)
    row_size = _row_size(request, price)
    share = request.value_area_fraction()
    held = [(piece, level) for piece, level in zip(pieces, levels, strict=True) if piece.session and len(level[0])]
    rows = sum(int(level[0].max()) // row_size - int(level[0].min()) // row_size + 1 for _, level in held)
    if rows > MAX_SESSION_ROWS:
        raise range_too_large(
            f"{len(held)} sessions of row_size {format_units(row_size)} need {rows} rows; at most {MAX_SESSION_ROWS}:"
            " use a larger row_size or a shorter range",
            rows=rows,
            max_rows=MAX_SESSION_ROWS,
        )
    read = dict(zip(pieces, levels, strict=True))
    size = contract_size_of(source, symbol)

    def answer(piece: RangePiece) -> SessionAnswer[SessionProfileReply]:
        p, q, s, c = read[piece]
        if not len(p):
            return p, None
        profile = volume_profile(p, q, s, row_size, share, trade_counts=c)
        fields = _profile_fields(profile)
        if size is not None:
            fields |= _in_coins(fields["rows"], profile, read[piece], size)
        session = SessionProfileReply(
            **session_info(piece),
            trade_count=profile.trade_count,
            total_volume=format_units(profile.total_volume),
            **fields,
        )
        return np.unique(p), (session, PieceAnswer(piece, fields["poc"], profile.poc_low, profile.poc_high))

    sessions, naked = per_session(pieces, lambda piece: np.unique(read[piece][0]), answer)
    profile = volume_profile(price, qty, sells, row_size, share, trade_counts=counts)
    fields = _profile_fields(profile)
    if size is not None:
        fields |= _in_coins(fields["rows"], profile, (price, qty, sells, counts), size)
    return VolumeProfileReply(
        **summary_of(symbol, *time_range, profile),
        **fields,
        value_area=request.value_area,
        sessions=sessions,
        naked_pocs=naked,
    )


def _node(row: ProfileRow) -> NodeReply:
    return NodeReply(
        price_low=format_units(row.price_low), price_high=format_units(row.price_high), volume=format_units(row.volume)
    )


def _plain(value: object) -> str:
    """A Decimal as a plain exact string (no exponent, no trailing zeros)."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


METHOD = QueryMethod(
    name="volume_profile",
    summary="Volume per price row with POC, value area high (VAH) and low (VAL)",
    request=VolumeProfileRequest,
    reply=VolumeProfileReply,
    handler=handle,
    reply_hint="ask for fewer rows or a larger row_size",
    trade_bytes=96,  # edges decoded and summed per price; the rest from histograms: 94 bytes a level measured
    level_bytes=100,
)
