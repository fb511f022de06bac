"""`vwap`: the volume-weighted average price of a range with standard-deviation bands.

Anchored VWAP: `anchor` (a time) starts the range there and runs to `end` (or now). With
`interval`, the reply also carries the running VWAP and bands at the close of each
interval, as charts draw them. Floats: derived figures (`tradetape.domain.vwap`).
"""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, Field, field_validator, model_validator

from tradetape.api.errors import insufficient_trades, range_too_large
from tradetape.api.models import (
    MAX_INTERVALS,
    IntervalField,
    QuantityField,
    RangeRequest,
    interval_count,
    parse_interval_ms,
    parse_time_ms,
)
from tradetape.api.query_method import QueryMethod, TradeSource, quantity_source, second_bars_of
from tradetape.domain.decimals import SCALE
from tradetape.domain.vwap import running_vwap, vwap


class VwapRequest(RangeRequest):
    quantity: QuantityField = "all"
    anchor: int | str | None = Field(
        default=None, description="Anchored VWAP from this time (epoch ms or ISO-8601) to end or now."
    )
    bands: list[float] = Field(
        default=[1.0, 2.0, 3.0], max_length=10, description="Band widths in standard deviations."
    )
    interval: IntervalField | None = Field(
        default=None, description='With an interval ("1m", "1h"): the running VWAP and bands per interval.'
    )

    @field_validator("anchor")
    @classmethod
    def _anchor(cls, value: int | str | None) -> int | None:
        return None if value is None else parse_time_ms(value)

    @field_validator("bands")
    @classmethod
    def _bands(cls, value: list[float]) -> list[float]:
        if any(not 0 < band <= 10 for band in value):
            raise ValueError("bands are standard deviations in (0, 10]")
        return value

    @model_validator(mode="after")
    def _anchored(self) -> VwapRequest:
        if self.anchor is not None and (self.start is not None or self.last is not None):
            raise ValueError("anchor starts the range: give anchor (and end), not start or last")
        return self

    def time_range(self, now_ms: int, default_ms: int | None = None) -> tuple[int, int] | None:
        if self.anchor is not None:
            assert isinstance(self.anchor, int)
            end = self.end if isinstance(self.end, int) else now_ms
            return self.anchor, end
        return super().time_range(now_ms)


class BandReply(BaseModel):
    deviations: float
    upper: float
    lower: float


class VwapPointReply(BaseModel):
    time: int
    """End of the interval, epoch ms."""
    vwap: float
    std: float


class VwapReply(BaseModel):
    symbol: str
    start: int
    end: int
    anchored: bool
    trade_count: int
    volume: float
    vwap: float
    std: float
    bands: list[BandReply]
    series: list[VwapPointReply] | None

    def to_polars(self) -> pl.DataFrame:
        """The running series (empty without `interval`), `time` as a UTC datetime."""
        rows = [point.model_dump() for point in self.series or []]
        frame = pl.DataFrame(rows, schema={"time": pl.Int64, "vwap": pl.Float64, "std": pl.Float64})
        return frame.with_columns(pl.from_epoch(pl.col("time"), time_unit="ms").dt.replace_time_zone("UTC"))


def handle(source: TradeSource, symbol: str, request: VwapRequest, now_ms: int) -> VwapReply:
    source = quantity_source(source, symbol, request.quantity)
    time_range = request.time_range(now_ms)
    assert time_range is not None
    interval_ms = None if request.interval is None else parse_interval_ms(request.interval)
    if interval_ms is not None and interval_count(time_range, interval_ms) > MAX_INTERVALS:
        raise range_too_large(
            f"more than {MAX_INTERVALS} intervals of {request.interval}", max_intervals=MAX_INTERVALS
        )
    seconds = second_bars_of(source, symbol, time_range)
    trade_count = seconds.total_count
    if trade_count == 0 or not (seconds.volume.lo.any() or seconds.volume.hi.any()):
        raise insufficient_trades(trade_count, 1)
    overall = vwap(seconds)
    series = None
    if interval_ms is not None:
        running = running_vwap(seconds, interval_ms)
        series = [
            VwapPointReply(time=t, vwap=mean / SCALE, std=std / SCALE)
            for t, mean, std in zip(running.time, running.mean, running.std, strict=True)
        ]
    mean, std = overall.mean / SCALE, overall.std / SCALE
    return VwapReply(
        symbol=symbol,
        start=time_range[0],
        end=time_range[1],
        anchored=request.anchor is not None,
        trade_count=trade_count,
        volume=overall.volume / SCALE,
        vwap=mean,
        std=std,
        bands=[BandReply(deviations=k, upper=mean + k * std, lower=mean - k * std) for k in request.bands],
        series=series,
    )


METHOD = QueryMethod(
    name="vwap",
    summary="Volume-weighted average price with standard-deviation bands; anchored from a time",
    request=VwapRequest,
    reply=VwapReply,
    handler=handle,
    reply_hint="use a longer interval or a shorter range",
    trade_bytes=76,  # measured peak over 3M trades: 73
    level_bytes=300,  # measured peak per 1-second bar read (tests/analytics/test_layer_memory.py, bench/query.py)
)
