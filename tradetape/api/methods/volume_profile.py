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
from pydantic import BaseModel, Field, field_validator, model_validator

from tradetape.api.errors import insufficient_trades, invalid_request
from tradetape.api.frames import rows_frame
from tradetape.api.models import RangeRequest, decimal_field
from tradetape.api.query_method import PriceLevelSource, QueryMethod, TradeSource
from tradetape.domain.columns import BoolArray, Int64Array, TradeColumns
from tradetape.domain.decimals import format_units, parse_units
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


class VolumeProfileRequest(RangeRequest):
    row_size: str | None = Field(default=None, description='Row height as a decimal string, e.g. "10".')
    rows: int | None = Field(
        default=None,
        ge=1,
        le=MAX_PROFILE_ROWS,
        description="Row count wanted when row_size is absent (at most); without either, "
        "max(10 ticks, range / 100) rounded to a nice size.",
    )
    value_area: float = Field(default=0.7, gt=0, le=1, description="Share of volume in the value area.")
    min_trades: int = Field(default=1000, ge=0, description="Fewer trades in the range is insufficient_trades.")

    @field_validator("row_size", mode="before")
    @classmethod
    def _row_size(cls, value: Any) -> Any:
        return decimal_field(value, "row_size", positive=True)

    @model_validator(mode="after")
    def _one_row_rule(self) -> VolumeProfileRequest:
        if self.row_size is not None and self.rows is not None:
            raise ValueError("give row_size or rows, not both: row_size sets each row's height, rows their count")
        return self

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


class NodeReply(BaseModel):
    price_low: str
    price_high: str
    volume: str


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

    def to_polars(self) -> pl.DataFrame:
        """The rows as a DataFrame, prices and volumes as exact decimals, ascending by price."""
        return rows_frame([row.model_dump() for row in self.rows], ProfileRowReply)


def profile_of(
    source: TradeSource, symbol: str, request: VolumeProfileRequest, now_ms: int
) -> tuple[int, int, VolumeProfile]:
    """The range asked for and the volume profile of its trades, by the docs/design.md rules.

    From the store's per-price levels when it has them (whole segments are then summed
    from their histograms, never decoded), else from the trades.
    """
    time_range = request.time_range(now_ms)
    assert time_range is not None
    start, end = time_range
    levels = source.price_levels(symbol, time_range) if isinstance(source, PriceLevelSource) else None
    levels_in = _levels_of(source.trades(symbol, time_range)) if levels is None else _levels_from(levels)
    price, qty, sells, counts = levels_in
    found = int(counts.sum())
    needed = max(request.min_trades, 1)
    if found < needed:
        raise insufficient_trades(found, needed)
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
    profile = volume_profile(price, qty, sells, row_size, request.value_area_fraction(), trade_counts=counts)
    return start, end, profile


Levels = tuple[Int64Array, Int64Array, BoolArray, Int64Array]


def _levels_of(trades: TradeColumns) -> Levels:
    """Each trade as its own level: price, quantity, side, one trade."""
    return trades.price, trades.qty, trades.buyer_maker, np.ones(len(trades), dtype=np.int64)


def _levels_from(levels: PriceLevels) -> Levels:
    """Each price twice: its buy volume (with its trade count) and its sell volume."""
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
    start, end, profile = profile_of(source, symbol, request, now_ms)
    high_nodes, low_nodes = volume_nodes(profile)
    return VolumeProfileReply(
        **summary_of(symbol, start, end, profile),
        buy_volume=format_units(profile.buy_volume),
        sell_volume=format_units(profile.sell_volume),
        poc=_plain(profile.poc),
        poc_low=format_units(profile.poc_low),
        poc_high=format_units(profile.poc_high),
        vah=format_units(profile.vah),
        val=format_units(profile.val),
        value_area=request.value_area,
        hvn=[_node(row) for row in high_nodes],
        lvn=[_node(row) for row in low_nodes],
        rows=[
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
