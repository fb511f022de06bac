"""`bars`: OHLCV per interval (1 s to 1 d), with buy and sell volume, trade count and VWAP.

Intervals are aligned to the epoch (UTC) and only those holding trades are listed
(`tradetape.domain.bars`); prices and volumes exact strings, VWAP a float.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from tradetape.api.errors import invalid_request, range_too_large
from tradetape.api.frames import rows_frame
from tradetape.api.models import (
    MAX_INTERVALS,
    IntervalRequest,
    QuantityField,
    decimal_field,
    interval_count,
    omitted,
    parse_duration_ms,
    parse_interval_ms,
    zone_field,
)
from tradetape.api.query_method import (
    MinuteLevelSource,
    QueryMethod,
    TradeSource,
    contract_size_of,
    quantity_source,
    rows_to_roll,
)
from tradetape.domain.aggregates import MINUTE_MS, OhlcRows, TimeBars
from tradetape.domain.bars import DAY_MS, calendar_bars
from tradetape.domain.columns import Int64Array
from tradetape.domain.contracts import base_units, quote_units
from tradetape.domain.decimals import SCALE, format_units, parse_units
from tradetape.domain.instruments import Market, market_of
from tradetape.domain.interval_levels import IntervalLevels, interval_levels
from tradetape.domain.local_time import day_starts, zone
from tradetape.domain.threshold_bars import TooManyBars, dollar_bars, tick_bars, volume_bars

WEEK_MS = 7 * DAY_MS
THRESHOLDS = ("volume_bar", "tick_bar", "dollar_bar")


class BarsRequest(IntervalRequest):
    """Time bars (`interval`, local days and weeks with `tz`), or bars that close on a threshold of activity."""

    quantity: QuantityField = "all"
    interval: str = Field(
        default="1m",
        description='Interval, whole seconds from "1s" to "1d" aligned to the epoch (UTC), or "1w" (weeks from '
        "Monday 00:00); or give volume_bar, tick_bar or dollar_bar instead.",
    )
    tz: str | None = Field(
        default=None,
        description='With an interval of "1d" or "1w": bars from local midnights of this IANA zone (a day of 23 or '
        "25 hours across a DST change); default UTC.",
    )
    volume_bar: str | None = Field(
        default=None, description='A bar each time this base volume has traded (decimal string, e.g. "10").'
    )
    tick_bar: int | None = Field(default=None, ge=1, le=1_000_000_000, description="A bar every this many trades.")
    dollar_bar: str | None = Field(
        default=None,
        description='A bar each time this quote value (price x quantity; COIN-M: USD, contracts x contract size) has'
        ' traded, e.g. "1000000".',
    )

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        if parse_duration_ms(value) != WEEK_MS:
            parse_interval_ms(value)
        return value

    @field_validator("tz", mode="before")
    @classmethod
    def _tz(cls, value: Any) -> Any:
        return None if value is None else zone_field(value)

    @field_validator("volume_bar", "dollar_bar", mode="before")
    @classmethod
    def _threshold(cls, value: Any, info: ValidationInfo) -> Any:
        return decimal_field(value, info.field_name or "threshold", positive=True)

    @model_validator(mode="after")
    def _one_kind(self) -> BarsRequest:
        kinds = [name for name in THRESHOLDS if getattr(self, name) is not None]
        if "interval" in self.model_fields_set:
            kinds.insert(0, "interval")
        if len(kinds) > 1:
            raise ValueError(f"give one of interval, volume_bar, tick_bar and dollar_bar, not {' and '.join(kinds)}")
        if self.tz is not None and (self.threshold() is not None or self.interval_ms() < DAY_MS):
            raise ValueError('tz aligns bars of "1d" or "1w"; shorter intervals are aligned to the epoch (UTC)')
        return self

    def interval_ms(self) -> int:
        ms = parse_duration_ms(self.interval)
        return ms if ms == WEEK_MS else parse_interval_ms(self.interval)

    def threshold(self) -> tuple[str, int] | None:
        """The threshold bars asked for, `(kind, amount)`: volume and dollars in units of 1e-8; None for time bars."""
        if self.volume_bar is not None:
            return "volume_bar", parse_units(self.volume_bar)
        if self.dollar_bar is not None:
            return "dollar_bar", parse_units(self.dollar_bar)
        if self.tick_bar is not None:
            return "tick_bar", self.tick_bar
        return None


class OhlcvReply(BaseModel):
    """What every bar's reply starts with (a bar's, a footprint bar's): its time, prices and volumes."""

    time: int
    """Open time of the interval (of a threshold bar: its first trade's time), epoch ms."""
    open: str
    high: str
    low: str
    close: str
    volume: str
    buy_volume: str
    sell_volume: str


class BarReply(OhlcvReply):
    trade_count: int
    vwap: float | None
    end_time: int | None = Field(default=None, exclude_if=omitted)
    """A threshold bar's last (closing) trade's time, epoch ms."""
    partial: bool | None = Field(default=None, exclude_if=omitted)
    """A threshold bar that has not reached its threshold (the range ended first): only ever the last."""
    base_volume: str | None = Field(default=None, exclude_if=omitted)
    """COIN-M time bars: the volume in the coin, contracts × contract size / price (`tradetape.domain.contracts`)."""
    quote_volume: str | None = Field(default=None, exclude_if=omitted)
    """COIN-M time bars: the volume in USD, contracts × contract size."""


class BarsReply(BaseModel):
    symbol: str
    start: int
    end: int
    interval: str | None = Field(default=None, exclude_if=omitted)
    """The interval asked for; None for threshold bars."""
    interval_ms: int | None = Field(default=None, exclude_if=omitted)
    """Its nominal length (a local day bar may last 23 or 25 hours); None for threshold bars."""
    tz: str | None = Field(default=None, exclude_if=omitted)
    volume_bar: str | None = Field(default=None, exclude_if=omitted)
    tick_bar: int | None = Field(default=None, exclude_if=omitted)
    dollar_bar: str | None = Field(default=None, exclude_if=omitted)
    contract_size: int | None = Field(default=None, exclude_if=omitted)
    """COIN-M: the USD value of one contract (`volume` counts contracts), when the worker knows it."""
    trade_count: int
    bars: list[BarReply]

    def to_polars(self) -> pl.DataFrame:
        """The bars as a DataFrame: exact Decimal prices and volumes, `time` as a UTC datetime."""
        frame = rows_frame([bar.model_dump(exclude={"vwap"}) for bar in self.bars], BarReply, exclude=("vwap",))
        vwap = pl.Series("vwap", [bar.vwap for bar in self.bars], dtype=pl.Float64)
        return frame.with_columns(vwap, pl.from_epoch(pl.col("time"), time_unit="ms").dt.replace_time_zone("UTC"))


def read_rows(source: TradeSource, symbol: str, request: IntervalRequest, now_ms: int) -> tuple[int, int, OhlcRows]:
    """The range and its rows to roll into the request's bars (the store's layer, or built from the trades)."""
    start, end = checked_range(request, now_ms)
    return start, end, rows_to_roll(source, symbol, (start, end), request.interval_ms())


def checked_range(request: IntervalRequest, now_ms: int) -> tuple[int, int]:
    """The range asked for; `range_too_large` when it would need more than MAX_INTERVALS rows."""
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
    return time_range


def bar_replies(bars: TimeBars, ends: Int64Array | None = None, last_complete: bool = True) -> list[BarReply]:
    """The bars as reply rows (columns turned into lists first: a numpy scalar a field is slow); with `ends`
    (threshold bars) each with its end time and whether it is partial."""
    columns = (bars.start, bars.open, bars.high, bars.low, bars.close, bars.trade_count)
    sums = (bars.volume, bars.buy_volume, bars.sell_volume, bars.vwap_units)
    rows = zip(*(column.tolist() for column in columns), *sums, strict=True)
    n = len(bars)
    extra: list[dict[str, Any]] = (
        [{} for _ in range(n)]
        if ends is None
        else [{"end_time": int(ends[i]), "partial": i == n - 1 and not last_complete} for i in range(n)]
    )
    return [
        BarReply(
            time=time,
            open=format_units(open_),
            high=format_units(high),
            low=format_units(low),
            close=format_units(close),
            volume=format_units(volume),
            buy_volume=format_units(buy),
            sell_volume=format_units(sell),
            trade_count=count,
            vwap=None if math.isnan(vwap) else vwap / SCALE,
            **more,
        )
        for (time, open_, high, low, close, count, volume, buy, sell, vwap), more in zip(rows, extra, strict=True)
    ]


def handle(source: TradeSource, symbol: str, request: BarsRequest, now_ms: int) -> BarsReply:
    source = quantity_source(source, symbol, request.quantity)
    threshold = request.threshold()
    if threshold is not None:
        return _threshold_bars(source, symbol, request, *threshold, now_ms)
    if request.tz is not None or request.interval_ms() == WEEK_MS:
        return _calendar_bars(source, symbol, request, now_ms)
    start, end, rows = read_rows(source, symbol, request, now_ms)
    bars = rows.rolled(request.interval_ms())
    replies = bar_replies(bars)
    size = contract_size_of(source, symbol)
    if size is not None:
        _in_coins(replies, bars, _base_units(source, symbol, (start, end), bars, size), size)
    return BarsReply(
        symbol=symbol,
        start=start,
        end=end,
        interval=request.interval,
        interval_ms=request.interval_ms(),
        contract_size=size,
        trade_count=rows.total_count,
        bars=replies,
    )


def _in_coins(replies: list[BarReply], bars: TimeBars, base: list[int], size: int) -> None:
    """COIN-M bars' base volume (`base`, per bar) and quote volume, contracts × `size`, set on their replies."""
    for reply, volume, coins in zip(replies, bars.volume, base, strict=True):
        reply.base_volume, reply.quote_volume = format_units(coins), format_units(quote_units(volume, size))


def _base_units(source: TradeSource, symbol: str, time_range: tuple[int, int], bars: TimeBars, size: int) -> list[int]:
    """Each bar's base volume (COIN-M), from its volume per distinct price: the layer's minute levels for bars of
    whole minutes, else the trades (or each trade alone, where a level's sum could leave int64)."""
    levels = None
    if bars.interval_ms % MINUTE_MS == 0 and isinstance(source, MinuteLevelSource):
        levels = source.minute_levels(symbol, time_range)
    if levels is not None:
        per = levels.per_interval(bars.interval_ms)
        starts, price, volume = per.time - per.time % bars.interval_ms, per.price, per.volume
    else:
        trades = source.trades(symbol, time_range)
        found = interval_levels(trades, bars.interval_ms) or IntervalLevels.each_trade(trades, bars.interval_ms)
        starts, price, volume = found.index * bars.interval_ms, found.price, found.volume
    return base_units(price, volume, np.searchsorted(bars.start, starts), len(bars), size)


def _calendar_bars(source: TradeSource, symbol: str, request: BarsRequest, now_ms: int) -> BarsReply:
    """Day or week bars from the local midnights of `tz` (UTC by default), weeks from Monday."""
    time_range = request.time_range(now_ms)
    assert time_range is not None
    start, end = time_range
    interval_ms = request.interval_ms()
    most = (end - start) // interval_ms + 3  # before any edge is computed: a day is at least 22 hours
    if most > MAX_INTERVALS:
        raise range_too_large(
            f"about {most} intervals of {request.interval}; at most {MAX_INTERVALS}: ask a shorter range",
            intervals=most,
            max_intervals=MAX_INTERVALS,
        )
    tz = request.tz or "UTC"
    edges = np.array(day_starts(zone(tz), start, end, days=interval_ms // DAY_MS), dtype=np.int64)
    trades = source.trades(symbol, time_range)
    bars = calendar_bars(trades, edges, interval_ms)
    replies = bar_replies(bars)
    size = contract_size_of(source, symbol)
    if size is not None:  # bars are listed only where trades are: a trade's bar is the last starting at or before it
        bar_of = np.searchsorted(bars.start, trades.time, side="right") - 1
        _in_coins(replies, bars, base_units(trades.price, trades.qty, bar_of, len(bars), size), size)
    return BarsReply(
        symbol=symbol,
        start=start,
        end=end,
        interval=request.interval,
        interval_ms=interval_ms,
        tz=tz,
        contract_size=size,
        trade_count=len(trades),
        bars=replies,
    )


_THRESHOLD_BARS = {"volume_bar": volume_bars, "tick_bar": tick_bars, "dollar_bar": dollar_bars}


def _threshold_bars(
    source: TradeSource, symbol: str, request: BarsRequest, kind: str, amount: int, now_ms: int
) -> BarsReply:
    """Bars closing on the trade at which their count, volume or quote value reaches the threshold.

    A COIN-M trade's quote value is its USD, contracts × contract size (not price × contracts): a COIN-M
    dollar bar is a volume bar of ⌈threshold / contract size⌉ contracts, exactly; without the contract
    size it is `invalid_request`.
    """
    time_range = request.time_range(now_ms)
    assert time_range is not None
    asked = request.threshold()  # what the user named: a COIN-M dollar bar is computed as a volume bar
    assert asked is not None
    size = contract_size_of(source, symbol)
    if kind == "dollar_bar" and market_of(symbol) is Market.CM:
        if size is None:
            raise invalid_request(
                f"a COIN-M dollar bar counts USD, contracts × contract size, and {symbol}'s contract size is not known"
                " here: ask volume_bar (contracts)",
                field="dollar_bar",
            )
        kind, amount = "volume_bar", -(-amount // size)
    trades = source.trades(symbol, time_range)
    target = amount * SCALE if kind == "dollar_bar" else amount  # price x quantity is in units of 1e-16
    try:
        found = _THRESHOLD_BARS[kind](trades, target, MAX_INTERVALS)
    except TooManyBars as exc:
        raise range_too_large(
            f"{exc}: at most {MAX_INTERVALS} bars; use a larger {asked[0]} or a shorter range",
            max_intervals=MAX_INTERVALS,
        ) from None
    replies = bar_replies(found.bars, found.end, found.last_complete)
    if size is not None:
        bar_of = np.repeat(np.arange(len(found.first), dtype=np.int64), np.diff(np.r_[found.first, len(trades)]))
        _in_coins(replies, found.bars, base_units(trades.price, trades.qty, bar_of, len(found.bars), size), size)
    return BarsReply(
        symbol=symbol,
        start=time_range[0],
        end=time_range[1],
        contract_size=size,
        trade_count=len(trades),
        bars=replies,
        **{asked[0]: getattr(request, asked[0])},
    )


METHOD = QueryMethod(
    name="bars",
    summary="OHLCV bars per interval (1s to 1d) with buy and sell volume, trade count and VWAP",
    request=BarsRequest,
    reply=BarsReply,
    handler=handle,
    reply_hint="use a longer interval or a shorter range",
    trade_bytes=76,  # measured peak over 3M trades: 72
    level_bytes=300,  # measured peak per 1-second bar read (tests/analytics/test_layer_memory.py, bench/query.py)
)
