"""`bars`: OHLCV per interval (1 s to 1 d), with buy and sell volume, trade count and VWAP.

Intervals are aligned to the epoch (UTC) and only those holding trades are listed
(`tradetape.domain.bars`); prices and volumes exact strings, VWAP a float.
"""

from __future__ import annotations

import math

import polars as pl
from pydantic import BaseModel

from tradetape.api.errors import range_too_large
from tradetape.api.frames import rows_frame
from tradetape.api.models import MAX_INTERVALS, IntervalRequest, interval_count
from tradetape.api.query_method import QueryMethod, TradeSource
from tradetape.domain.bars import TimeBars, time_bars
from tradetape.domain.columns import TradeColumns
from tradetape.domain.decimals import SCALE, format_units


class BarsRequest(IntervalRequest):
    pass


class BarReply(BaseModel):
    time: int
    """Open time of the interval, epoch ms."""
    open: str
    high: str
    low: str
    close: str
    volume: str
    buy_volume: str
    sell_volume: str
    trade_count: int
    vwap: float | None


class BarsReply(BaseModel):
    symbol: str
    start: int
    end: int
    interval: str
    interval_ms: int
    trade_count: int
    bars: list[BarReply]

    def to_polars(self) -> pl.DataFrame:
        """The bars as a DataFrame: exact Decimal prices and volumes, `time` as a UTC datetime."""
        frame = rows_frame([bar.model_dump(exclude={"vwap"}) for bar in self.bars], BarReply, exclude=("vwap",))
        vwap = pl.Series("vwap", [bar.vwap for bar in self.bars], dtype=pl.Float64)
        return frame.with_columns(vwap, pl.from_epoch(pl.col("time"), time_unit="ms").dt.replace_time_zone("UTC"))


def read_intervals(
    source: TradeSource, symbol: str, request: IntervalRequest, now_ms: int
) -> tuple[int, int, TradeColumns]:
    """The range and its trades, refused up front when it would need more than MAX_INTERVALS rows."""
    time_range = request.time_range(now_ms)
    assert time_range is not None
    count = interval_count(time_range, request.interval_ms())
    if count > MAX_INTERVALS:
        raise range_too_large(
            f"{count} intervals of {request.interval}; at most {MAX_INTERVALS}:"
            " use a longer interval or a shorter range",
            intervals=count,
            max_intervals=MAX_INTERVALS,
        )
    return time_range[0], time_range[1], source.trades(symbol, time_range)


def bar_replies(bars: TimeBars) -> list[BarReply]:
    vwaps = bars.vwap_units.tolist()
    return [
        BarReply(
            time=int(bars.start[i]),
            open=format_units(int(bars.open[i])),
            high=format_units(int(bars.high[i])),
            low=format_units(int(bars.low[i])),
            close=format_units(int(bars.close[i])),
            volume=format_units(bars.volume[i]),
            buy_volume=format_units(bars.buy_volume[i]),
            sell_volume=format_units(bars.sell_volume[i]),
            trade_count=int(bars.trade_count[i]),
            vwap=None if math.isnan(vwaps[i]) else vwaps[i] / SCALE,
        )
        for i in range(len(bars))
    ]


def handle(source: TradeSource, symbol: str, request: BarsRequest, now_ms: int) -> BarsReply:
    start, end, trades = read_intervals(source, symbol, request, now_ms)
    bars = time_bars(trades, request.interval_ms())
    return BarsReply(
        symbol=symbol,
        start=start,
        end=end,
        interval=request.interval,
        interval_ms=request.interval_ms(),
        trade_count=len(trades),
        bars=bar_replies(bars),
    )


METHOD = QueryMethod(
    name="bars",
    summary="OHLCV bars per interval (1s to 1d) with buy and sell volume, trade count and VWAP",
    request=BarsRequest,
    reply=BarsReply,
    handler=handle,
    reply_hint="use a longer interval or a shorter range",
    trade_bytes=76,  # measured peak over 3M trades: 72
)
