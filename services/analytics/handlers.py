"""Query methods: a validated request and the shard's trades → a reply model.

Each method reads the trades it needs through a `TradeSource` and computes with the
pure functions of `profile` and `coverage`; formatting to exact decimal strings
happens here, once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel

from services.analytics.coverage import coverage
from services.analytics.errors import bad_request, insufficient_trades
from services.analytics.profile import VolumeProfile, choose_row_size, liquidity_vacuums, volume_profile
from services.analytics.queries import (
    MAX_PROFILE_ROWS,
    CoverageReply,
    CoverageRequest,
    GapReply,
    LiquidityVacuumsReply,
    LiquidityVacuumsRequest,
    ProfileRowReply,
    VacuumReply,
    VolumeProfileReply,
    VolumeProfileRequest,
)
from services.tape.columns import TradeColumns
from services.tape.decimals import format_units


class TradeSource(Protocol):
    def trades(self, symbol: str, time_range: tuple[int, int] | None) -> TradeColumns:
        """Trades in `[start, end)`, or the whole tape when `time_range` is None."""
        ...


def _profile(
    source: TradeSource, symbol: str, request: VolumeProfileRequest, now_ms: int
) -> tuple[int, int, VolumeProfile]:
    """The range asked for and the volume profile of its trades, by the DESIGN.md rules."""
    time_range = request.time_range(now_ms)
    assert time_range is not None
    start, end = time_range
    trades = source.trades(symbol, time_range)
    if len(trades) < max(request.min_trades, 1):
        raise insufficient_trades(len(trades), max(request.min_trades, 1))
    low, high = int(trades.price.min()), int(trades.price.max())
    row_size = request.row_size_units() or choose_row_size(low, high, request.rows)
    row_count = high // row_size - low // row_size + 1
    if row_count > MAX_PROFILE_ROWS:
        raise bad_request(
            f"row_size {format_units(row_size)} gives {row_count} rows; at most {MAX_PROFILE_ROWS} are allowed",
            row_count=row_count,
            max_rows=MAX_PROFILE_ROWS,
        )
    profile = volume_profile(trades.price, trades.qty, trades.buyer_maker, row_size, request.value_area_fraction())
    return start, end, profile


def _summary(symbol: str, start: int, end: int, profile: VolumeProfile) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "start": start,
        "end": end,
        "trade_count": profile.trade_count,
        "row_size": format_units(profile.row_size),
        "total_volume": format_units(profile.total_volume),
    }


def handle_volume_profile(
    source: TradeSource, symbol: str, request: VolumeProfileRequest, now_ms: int
) -> VolumeProfileReply:
    start, end, profile = _profile(source, symbol, request, now_ms)
    return VolumeProfileReply(
        **_summary(symbol, start, end, profile),
        buy_volume=format_units(profile.buy_volume),
        sell_volume=format_units(profile.sell_volume),
        poc=_plain(profile.poc),
        poc_low=format_units(profile.poc_low),
        poc_high=format_units(profile.poc_high),
        vah=format_units(profile.vah),
        val=format_units(profile.val),
        value_area=request.value_area,
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


def handle_liquidity_vacuums(
    source: TradeSource, symbol: str, request: LiquidityVacuumsRequest, now_ms: int
) -> LiquidityVacuumsReply:
    start, end, profile = _profile(source, symbol, request, now_ms)
    vacuums = liquidity_vacuums(profile, request.min_rows, request.threshold)
    return LiquidityVacuumsReply(
        **_summary(symbol, start, end, profile),
        row_count=len(profile.rows),
        threshold=request.threshold,
        min_rows=request.min_rows,
        vacuums=[
            VacuumReply(
                price_low=format_units(v.price_low),
                price_high=format_units(v.price_high),
                rows=v.rows,
                volume=format_units(v.volume),
                share=v.share,
            )
            for v in vacuums
        ],
    )


def handle_coverage(source: TradeSource, symbol: str, request: CoverageRequest, now_ms: int) -> CoverageReply:
    time_range = request.time_range(now_ms, default_ms=None)
    trades = source.trades(symbol, time_range)
    found = coverage(trades.agg_id, trades.time)
    return CoverageReply(
        symbol=symbol,
        start=time_range[0] if time_range else None,
        end=time_range[1] if time_range else None,
        trade_count=found.trade_count,
        first_id=found.first_id,
        last_id=found.last_id,
        first_time=found.first_time,
        last_time=found.last_time,
        missing_count=sum(to_id - from_id + 1 for from_id, to_id in found.gaps),
        gaps=[GapReply(from_id=from_id, to_id=to_id) for from_id, to_id in found.gaps],
    )


def _plain(value: object) -> str:
    """A Decimal as a plain exact string (no exponent, no trailing zeros)."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


HANDLERS: dict[str, Callable[..., BaseModel]] = {
    "volume_profile": handle_volume_profile,
    "liquidity_vacuums": handle_liquidity_vacuums,
    "coverage": handle_coverage,
}
