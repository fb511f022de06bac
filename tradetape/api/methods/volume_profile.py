"""`volume_profile`: volume per fixed-height price row, with POC, value area high and low.

The rules (row `floor(p / row_size)`, POC tie-break, value area growth) are those of
DESIGN.md, computed exactly in `tradetape.domain.profile`; this module validates the
request, reads the range and formats exact decimal strings once.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import polars as pl
from pydantic import BaseModel, Field, field_validator
from rich.console import Group, RenderableType
from rich.text import Text

from tradetape.api.errors import bad_request, insufficient_trades
from tradetape.api.models import RangeRequest
from tradetape.api.registry import QueryMethod, TradeSource
from tradetape.api.render import table, time_span
from tradetape.domain.decimals import DecimalFormatError, format_units, parse_units
from tradetape.domain.profile import MAX_PROFILE_ROWS, VolumeProfile, choose_row_size, volume_profile

BAR_WIDTH = 40
DECIMAL = pl.Decimal(38, 8)


class VolumeProfileRequest(RangeRequest):
    row_size: str | None = Field(default=None, description='Row height as a decimal string, e.g. "10".')
    rows: int = Field(
        default=100, ge=1, le=MAX_PROFILE_ROWS, description="Row count wanted when row_size is absent (at most)."
    )
    value_area: float = Field(default=0.7, gt=0, le=1, description="Share of volume in the value area.")
    min_trades: int = Field(default=1000, ge=0, description="Fewer trades in the range is insufficient_trades.")

    @field_validator("row_size", mode="before")
    @classmethod
    def _row_size(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            try:
                units = parse_units(value.strip())
            except DecimalFormatError as exc:
                raise ValueError(f"row_size {exc}") from None
            if units <= 0:
                raise ValueError("row_size must be positive")
            return value.strip()
        return value

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
    rows: list[ProfileRowReply]

    def to_polars(self) -> pl.DataFrame:
        """The rows as a DataFrame, prices and volumes as exact decimals, ascending by price."""
        return rows_frame([row.model_dump() for row in self.rows], ProfileRowReply)


def rows_frame(rows: list[dict[str, Any]], model: type[BaseModel]) -> pl.DataFrame:
    """Reply rows as a DataFrame: the model's decimal-string fields become exact Decimal columns."""
    frame = pl.DataFrame(rows, schema={name: pl.String for name in model.model_fields}, strict=False)
    casts = [
        pl.col(name).cast(DECIMAL if field.annotation is str else pl.Int64)
        for name, field in model.model_fields.items()
    ]
    return frame.with_columns(casts)


def profile_of(
    source: TradeSource, symbol: str, request: VolumeProfileRequest, now_ms: int
) -> tuple[int, int, VolumeProfile]:
    """The range asked for and the volume profile of its trades, by the DESIGN.md rules."""
    time_range = request.time_range(now_ms)
    assert time_range is not None
    start, end = time_range
    trades = source.trades(symbol, time_range)
    needed = max(request.min_trades, 1)
    if len(trades) < needed:
        raise insufficient_trades(len(trades), needed)
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


def _plain(value: object) -> str:
    """A Decimal as a plain exact string (no exponent, no trailing zeros)."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def render(reply: VolumeProfileReply) -> RenderableType:
    """Header lines, then the rows from the highest price down, POC and value area marked, with bars."""
    header = Text.assemble(
        (f"{reply.symbol} volume profile", "bold"),
        f"  {time_span(reply.start, reply.end)}\n",
        f"trades {reply.trade_count}  volume {reply.total_volume} (buy {reply.buy_volume}, "
        f"sell {reply.sell_volume})  row size {reply.row_size}\n",
        (f"POC {reply.poc} [{reply.poc_low}, {reply.poc_high})", "bold yellow"),
        (f"   VAH {reply.vah}   VAL {reply.val}", "cyan"),
        f"   value area {reply.value_area:.0%}",
    )
    grid = table(
        "price_low", "price_high", "volume", "buy", "sell", "trades", "", "",
        right=("price_low", "price_high", "volume", "buy", "sell", "trades"),
    )
    peak = max((Decimal(row.volume) for row in reply.rows), default=Decimal(0)) or Decimal(1)
    val, vah = Decimal(reply.val), Decimal(reply.vah)
    for row in reversed(reply.rows):
        poc = row.price_low == reply.poc_low
        in_value_area = Decimal(row.price_low) >= val and Decimal(row.price_high) <= vah
        mark = "POC" if poc else ("VA" if in_value_area else "")
        bar = "█" * int(Decimal(row.volume) / peak * BAR_WIDTH)
        style = "bold yellow" if poc else ("cyan" if in_value_area else "")
        grid.add_row(
            row.price_low, row.price_high, row.volume, row.buy_volume, row.sell_volume, str(row.trade_count),
            mark, bar, style=style,
        )
    return Group(header, Text(""), grid)


METHOD = QueryMethod(
    name="volume_profile",
    summary="Volume per price row with POC, value area high (VAH) and low (VAL)",
    request=VolumeProfileRequest,
    reply=VolumeProfileReply,
    handler=handle,
    render=render,
)
