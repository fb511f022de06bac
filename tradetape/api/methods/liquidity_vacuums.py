"""`liquidity_vacuums`: runs of thin rows inside a volume profile, where price moved fast.

A vacuum is a maximal run of at least `min_rows` consecutive rows strictly between the
lowest and highest traded rows, each below `threshold` × the mean row volume (docs/design.md);
computed in `tradetape.domain.profile`, widest first.
"""

from __future__ import annotations

from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, Field, field_validator, model_validator

from tradetape.api.frames import rows_frame
from tradetape.api.methods.volume_profile import ProfileSummary, VolumeProfileRequest, profile_of, summary_of
from tradetape.api.models import decimal_field
from tradetape.api.query_method import QueryMethod, TradeSource, quantity_source
from tradetape.domain.columns import TradeColumns
from tradetape.domain.decimals import SCALE, format_units, parse_units
from tradetape.domain.profile import LiquidityVacuum, liquidity_vacuums
from tradetape.domain.vacuums import deficit_pct, impact_class, last_crossing, suggest_stop


class LiquidityVacuumsRequest(VolumeProfileRequest):
    min_rows: int = Field(default=3, ge=1, description="Fewest consecutive thin rows that make a vacuum.")
    threshold: float = Field(default=0.2, gt=0, le=1, description="A row is thin below threshold × mean row volume.")
    side: Literal["long", "short"] | None = Field(
        default=None, description="With entry: the position to suggest a stop for, long or short."
    )
    entry: str | None = Field(default=None, description='Entry price (decimal string) for the stop suggestion.')

    @field_validator("entry", mode="before")
    @classmethod
    def _entry(cls, value: Any) -> Any:
        return decimal_field(value, "entry")

    @model_validator(mode="after")
    def _side_and_entry(self) -> LiquidityVacuumsRequest:
        if (self.side is None) != (self.entry is None):
            raise ValueError("side and entry go together: give both for a stop suggestion, or neither")
        return self


class CrossingReply(BaseModel):
    start: int
    """Last trade on the side price came from, epoch ms."""
    end: int
    """First trade on the far side, epoch ms."""
    direction: str
    seconds: float
    speed: float
    """Zone height crossed per second (price units per second)."""


class VacuumReply(BaseModel):
    price_low: str
    price_high: str
    rows: int
    volume: str
    share: float
    deficit_pct: float
    """How far its volume per row is below the mean row, in percent."""
    impact: str
    """severe (deficit ≥ 90 %), high (≥ 75 %) or moderate: how freely price tends to run through."""
    last_crossed: CrossingReply | None


class StopReply(BaseModel):
    side: str
    entry: str
    stop: str | None
    reason: str
    vacuum_low: str | None
    vacuum_high: str | None


class LiquidityVacuumsReply(ProfileSummary):
    row_count: int
    threshold: float
    min_rows: int
    vacuums: list[VacuumReply]
    stop: StopReply | None

    def to_polars(self) -> pl.DataFrame:
        """The vacuums, widest first: exact Decimal edges and volume, the last crossing flattened (null: never)."""
        frame = rows_frame(
            [v.model_dump(include={"price_low", "price_high", "rows", "volume"}) for v in self.vacuums],
            VacuumReply,
            exclude=("share", "deficit_pct", "impact", "last_crossed"),
        )
        crossed = [v.last_crossed for v in self.vacuums]
        return frame.with_columns(
            pl.Series("share", [v.share for v in self.vacuums], dtype=pl.Float64),
            pl.Series("deficit_pct", [v.deficit_pct for v in self.vacuums], dtype=pl.Float64),
            pl.Series("impact", [v.impact for v in self.vacuums], dtype=pl.String),
            _utc("last_crossed_start", [None if c is None else c.start for c in crossed]),
            _utc("last_crossed_end", [None if c is None else c.end for c in crossed]),
            pl.Series("direction", [None if c is None else c.direction for c in crossed], dtype=pl.String),
            pl.Series("seconds", [None if c is None else c.seconds for c in crossed], dtype=pl.Float64),
            pl.Series("speed", [None if c is None else c.speed for c in crossed], dtype=pl.Float64),
        )


def _utc(name: str, times: list[int | None]) -> pl.Series:
    return pl.Series(name, times, dtype=pl.Int64).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")


def handle(
    source: TradeSource, symbol: str, request: LiquidityVacuumsRequest, now_ms: int
) -> LiquidityVacuumsReply:
    source = quantity_source(source, symbol, request.quantity)
    start, end, profile = profile_of(source, symbol, request, now_ms)
    # The profile came from the histograms; the trades only for when price last crossed each vacuum,
    # read afterwards, so the two never sit in memory together.
    trades = source.trades(symbol, (start, end))
    vacuums = liquidity_vacuums(profile, request.min_rows, request.threshold)
    mean_row = profile.total_volume / len(profile.rows)
    stop = None
    if request.side is not None and request.entry is not None:
        advice = suggest_stop(request.side, parse_units(request.entry), vacuums, profile.row_size)
        stop = StopReply(
            side=advice.side,
            entry=format_units(advice.entry),
            stop=None if advice.stop is None else format_units(advice.stop),
            reason=advice.reason,
            vacuum_low=None if advice.vacuum is None else format_units(advice.vacuum.price_low),
            vacuum_high=None if advice.vacuum is None else format_units(advice.vacuum.price_high),
        )
    return LiquidityVacuumsReply(
        **summary_of(symbol, start, end, profile),
        row_count=len(profile.rows),
        threshold=request.threshold,
        min_rows=request.min_rows,
        vacuums=[_vacuum(v, mean_row, trades) for v in vacuums],
        stop=stop,
    )


def _vacuum(vacuum: LiquidityVacuum, mean_row: float, trades: TradeColumns) -> VacuumReply:
    deficit = deficit_pct(vacuum, mean_row)
    crossing = last_crossing(trades.time, trades.price, vacuum.price_low, vacuum.price_high)
    crossed = None
    if crossing is not None:
        seconds = max(crossing.end - crossing.start, 1) / 1000
        height = (vacuum.price_high - vacuum.price_low) / SCALE
        crossed = CrossingReply(
            start=crossing.start, end=crossing.end, direction=crossing.direction, seconds=seconds,
            speed=height / seconds,
        )
    return VacuumReply(
        price_low=format_units(vacuum.price_low),
        price_high=format_units(vacuum.price_high),
        rows=vacuum.rows,
        volume=format_units(vacuum.volume),
        share=vacuum.share,
        deficit_pct=round(deficit, 2),
        impact=impact_class(deficit),
        last_crossed=crossed,
    )


METHOD = QueryMethod(
    name="liquidity_vacuums",
    summary="Price zones the profile crossed on thin volume (runs of rows below threshold × mean row volume)",
    request=LiquidityVacuumsRequest,
    reply=LiquidityVacuumsReply,
    handler=handle,
    trade_bytes=64,  # measured peak over 3M trades: 60
    level_bytes=100,
)
