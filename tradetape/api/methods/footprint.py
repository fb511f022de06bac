"""`footprint`: each bar's taker-buy and taker-sell volume per price row, with imbalances, POC and value area.

Bars are aligned as `bars`; the rules (rows, diagonal imbalances, stacked runs, POC and value
area per bar) are those of `tradetape.domain.footprint`, computed exactly from price levels per
interval. With an interval of whole minutes, a source keeping the aggregate layer feeds the bars
from its 1-second bars and the levels from its per-minute price levels, so only the range's
ragged edges are decoded (the same answer, exactly); shorter or odd intervals read the trades.
With `session`, the same footprint of each session's part of the range follows, with
the session's POC and value area over all its bars' rows (`tradetape.api.sessions`). The reply is
bounded: at most MAX_FOOTPRINT_CELLS rows over all its bars, the sessions' included.
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from typing import Literal

import numpy as np
import orjson
import polars as pl
from pydantic import BaseModel, Field, TypeAdapter

from tradetape.api.errors import range_too_large
from tradetape.api.frames import rows_frame
from tradetape.api.methods.bars import OhlcvReply, checked_range
from tradetape.api.methods.volume_profile import read_levels
from tradetape.api.models import (
    IntervalRequest,
    QuantityField,
    RowRule,
    RowSizeField,
    SessionField,
    omitted,
    session_spec,
)
from tradetape.api.query_method import MinuteLevelSource, QueryMethod, TradeSource, minute_bars_of, quantity_source
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
from tradetape.domain.aggregates import MINUTE_MS, TimeBars
from tradetape.domain.bars import time_bars
from tradetape.domain.decimals import format_units, parse_units
from tradetape.domain.footprint import FootprintBar, footprint, footprint_cells, footprint_row_size, level_step
from tradetape.domain.interval_levels import IntervalLevels, interval_levels, minute_levels_per_interval
from tradetape.domain.profile import MAX_PROFILE_ROWS, exact_fraction, infer_tick
from tradetape.domain.value_area import half_units_text, value_area_of

MAX_FOOTPRINT_CELLS = 6000
"""Rows one reply may hold over all its bars (about 140 bytes of JSON each: 0.85 MB, under NATS's 1 MiB)."""
DEFAULT_ROWS_PER_BAR = 20
"""Without `row_size` or `rows`: the nice row size giving the widest bar at most this many rows."""


class FootprintRequest(IntervalRequest, RowRule):
    quantity: QuantityField = "all"
    row_size: RowSizeField = Field(default=None, description='Row height as a decimal string, e.g. "5".')
    rows: int | None = Field(
        default=None,
        ge=1,
        le=MAX_FOOTPRINT_CELLS,
        description="When row_size is absent: the nice row size giving the widest bar at most this many rows "
        f"(default {DEFAULT_ROWS_PER_BAR}).",
    )
    imbalance: float = Field(
        default=3, ge=1, le=1000, description="A buy (sell) imbalance: buy (sell) ≥ imbalance × sell (buy) diagonally."
    )
    stacked: int = Field(default=3, ge=1, le=1000, description="Fewest consecutive imbalanced rows a stacked run has.")
    value_area: float = Field(default=0.7, gt=0, le=1, description="Share of each bar's volume in its value area.")
    session: SessionField = None


class FootprintRowReply(BaseModel):
    price_low: str
    price_high: str
    buy_volume: str
    sell_volume: str
    trade_count: int
    buy_imbalance: bool
    """buy ≥ imbalance × sell of the row below (and buy > 0)."""
    sell_imbalance: bool
    """sell ≥ imbalance × buy of the row above (and sell > 0)."""


class StackedImbalanceReply(BaseModel):
    side: Literal["buy", "sell"]
    price_low: str
    price_high: str
    rows: int


class FootprintBarReply(OhlcvReply):
    delta: str
    trade_count: int
    poc: str
    """Middle of the bar's POC row."""
    vah: str
    val: str
    rows: list[FootprintRowReply]
    """Every row from the bar's low to its high, ascending by price."""
    stacked_imbalances: list[StackedImbalanceReply]


class SessionFootprintReply(SessionInfo):
    """One session's footprint: its bars (the range's row size), and its POC and value area over all their rows."""

    trade_count: int
    volume: str
    buy_volume: str
    sell_volume: str
    delta: str
    poc: str
    """Middle of the row with the most volume over the session's bars (the volume profile's rules)."""
    poc_low: str
    poc_high: str
    vah: str
    val: str
    bars: list[FootprintBarReply]


class FootprintReply(BaseModel):
    symbol: str
    start: int
    end: int
    interval: str
    interval_ms: int
    row_size: str | None
    """The row height used; null only when the range holds no trades and none was asked."""
    imbalance: float
    stacked: int
    value_area: float
    trade_count: int
    bars: list[FootprintBarReply]
    sessions: list[SessionFootprintReply] | None = Field(default=None, exclude_if=omitted)
    """With `session`: the footprint of each session in the range holding trades."""
    naked_pocs: list[NakedPocReply] | None = Field(default=None, exclude_if=omitted)
    """With `session`: POC rows of sessions closed in the range that no later trade in it reached."""

    def to_polars(self) -> pl.DataFrame:
        """One line per (bar, row): `time` as a UTC datetime, then the row; exact Decimal prices and volumes."""
        flags = ("buy_imbalance", "sell_imbalance")
        cells = [row.model_dump() for bar in self.bars for row in bar.rows]
        frame = rows_frame([{k: v for k, v in c.items() if k not in flags} for c in cells], FootprintRowReply, flags)
        times = pl.Series("time", [bar.time for bar in self.bars for _ in bar.rows], dtype=pl.Int64)
        frame = frame.with_columns(*(pl.Series(flag, [c[flag] for c in cells], dtype=pl.Boolean) for flag in flags))
        return frame.insert_column(0, times).with_columns(
            pl.from_epoch(pl.col("time"), time_unit="ms").dt.replace_time_zone("UTC")
        )


def handle(source: TradeSource, symbol: str, request: FootprintRequest, now_ms: int) -> FootprintReply:
    return FootprintReply.model_validate_json(encode(source, symbol, request, now_ms))


def encode(source: TradeSource, symbol: str, request: FootprintRequest, now_ms: int) -> bytes:
    """The reply's JSON, byte for byte what `FootprintReply.model_dump_json` gives, built without a model a row
    without `session` (what the service sends: a day's 5-minute footprint holds ~2,000 rows)."""
    source = quantity_source(source, symbol, request.quantity)
    time_range = request.time_range(now_ms)
    assert time_range is not None
    pieces = None if request.session is None else range_pieces(session_spec(request.session), time_range)
    reply = _range_json(source, symbol, request, now_ms)
    if pieces is None:
        return reply
    with_sessions = _with_sessions(source, symbol, request, FootprintReply.model_validate_json(reply), pieces)
    return with_sessions.model_dump_json().encode()


def _range_json(source: TradeSource, symbol: str, request: FootprintRequest, now_ms: int) -> bytes:
    """The footprint of the whole range: the whole reply without `session`, as JSON (fields in the model's order)."""
    start, end = checked_range(request, now_ms)
    asked = None if request.row_size is None else parse_units(request.row_size)
    bars, levels = read_footprint_parts(source, symbol, (start, end), request.interval_ms(), asked)
    row_size, computed = _footprint_of(bars, levels, request, asked, held=0)
    return orjson.dumps(
        {
            **request.reply_head(symbol, start, end),
            "row_size": None if row_size is None else format_units(row_size),
            "imbalance": float(request.imbalance),  # a float field: 3.0, also where the default 3 stands
            "stacked": request.stacked,
            "value_area": float(request.value_area),
            "trade_count": int(bars.trade_count.sum()),
            "bars": orjson.Fragment(bars_json(computed)),
        }
    )


def read_footprint_parts(
    source: TradeSource, symbol: str, time_range: tuple[int, int], interval_ms: int, row_size: int | None
) -> tuple[TimeBars, IntervalLevels]:
    """The bars of `[start, end)` and its price levels per interval.

    From the aggregate layer when the interval is a whole number of minutes and the source keeps
    one (its minute levels summed per interval, its second bars rolled up, from a row a minute where
    a segment holds the minute whole: trades decoded only at the range's ragged edges), else from
    the range's trades; the same figures either way. With the
    `row_size` known, the layer's levels come bucketed by `level_step(row_size)`: the same rows, a
    few levels a minute instead of one a traded price (the levels' prices then name only their row).
    """
    if interval_ms % MINUTE_MS == 0 and isinstance(source, MinuteLevelSource):
        minutes = source.minute_levels(symbol, time_range, 1 if row_size is None else level_step(row_size))
        if minutes is not None:  # None: a minute's sum could leave int64, so the trades are summed exactly below
            bars = minute_bars_of(source, symbol, time_range).rolled(interval_ms)
            return bars, minute_levels_per_interval(minutes, interval_ms)
    trades = source.trades(symbol, time_range)
    levels = interval_levels(trades, interval_ms)
    if levels is None:  # a level's sum could leave int64: each trade its own level, summed exactly
        levels = IntervalLevels.each_trade(trades, interval_ms)
    return time_bars(trades, interval_ms), levels


def _footprint_of(
    bars: TimeBars, levels: IntervalLevels, request: FootprintRequest, row_size: int | None, held: int
) -> tuple[int | None, list[FootprintBar]]:
    """The row size (the one asked, else chosen for these bars) and the footprint of `bars` and `levels`.

    `held` rows are already in the reply: past MAX_FOOTPRINT_CELLS with them is `range_too_large`,
    before the footprint is built.
    """
    if row_size is None and len(bars):
        row_size = footprint_row_size(bars, request.rows or DEFAULT_ROWS_PER_BAR, infer_tick(levels.price))
    if row_size is None or not len(bars):
        return row_size, []
    own = footprint_cells(bars, row_size)
    if held + own > MAX_FOOTPRINT_CELLS:
        besides = f" ({held + own} with the rest of the reply)" if held else ""
        raise range_too_large(
            f"{len(bars)} bars of {request.interval} at row size {format_units(row_size)} hold {own} rows{besides};"
            f" at most {MAX_FOOTPRINT_CELLS}: use a larger row_size, a longer interval or a shorter range",
            cells=held + own,
            max_cells=MAX_FOOTPRINT_CELLS,
            bars=len(bars),
        )
    return row_size, footprint(
        bars,
        levels,
        row_size,
        ratio=exact_fraction(request.imbalance, "imbalance"),
        stacked=request.stacked,
        value_area=exact_fraction(request.value_area, "value_area"),
    )


def _with_sessions(
    source: TradeSource, symbol: str, request: FootprintRequest, reply: FootprintReply, pieces: list[RangePiece]
) -> FootprintReply:
    """The range's reply plus each session's footprint at the range's row size, and the naked POCs.

    Each piece of the range is read on its own (a session's bars and levels, or only the prices
    traded between sessions), so no more than one piece is held at a time.
    """
    if reply.row_size is None:  # no trades in the range: no session holds any
        return reply.model_copy(update={"sessions": [], "naked_pocs": []})
    row_size = parse_units(reply.row_size)
    held = sum(len(bar.rows) for bar in reply.bars)
    share = exact_fraction(request.value_area, "value_area")

    def answer(piece: RangePiece) -> SessionAnswer[SessionFootprintReply]:
        nonlocal held
        bars, levels = read_footprint_parts(source, symbol, piece.range, request.interval_ms(), row_size)
        _, computed = _footprint_of(bars, levels, request, row_size, held)
        held += sum(len(bar.buys) for bar in computed)
        return np.unique(levels.price), _session_reply(piece, computed, row_size, share) if computed else None

    sessions, naked = per_session(pieces, lambda piece: np.unique(read_levels(source, symbol, piece.range)[0]), answer)
    return reply.model_copy(update={"sessions": sessions, "naked_pocs": naked})


def _session_reply(
    piece: RangePiece, bars: list[FootprintBar], row_size: int, share: Fraction
) -> tuple[SessionFootprintReply, PieceAnswer]:
    """A session's figures from its bars; POC and value area by the volume profile's rules over its rows' volumes,
    from its lowest row to its highest (at most MAX_PROFILE_ROWS, else `range_too_large`)."""
    volumes: dict[int, int] = defaultdict(int)
    for bar in bars:
        bottom = bar.bottom // row_size
        for r, (buy, sell) in enumerate(zip(bar.buys, bar.sells, strict=True)):
            volumes[bottom + r] += buy + sell
    bottom, top = min(volumes), max(volumes)
    if top - bottom + 1 > MAX_PROFILE_ROWS:
        raise range_too_large(
            f"a session spans {top - bottom + 1} rows of row size {format_units(row_size)}; its POC is found over"
            f" at most {MAX_PROFILE_ROWS}: use a larger row_size",
            rows=top - bottom + 1,
            max_rows=MAX_PROFILE_ROWS,
        )
    poc, low, high = value_area_of([volumes.get(k, 0) for k in range(bottom, top + 1)], share)
    buy, sell = sum(bar.buy_volume for bar in bars), sum(bar.sell_volume for bar in bars)
    poc_low = (bottom + poc) * row_size
    poc_text = half_units_text(2 * poc_low + row_size)
    session = SessionFootprintReply(
        **session_info(piece),
        trade_count=sum(bar.trade_count for bar in bars),
        volume=format_units(buy + sell),
        buy_volume=format_units(buy),
        sell_volume=format_units(sell),
        delta=format_units(buy - sell),
        poc=poc_text,
        poc_low=format_units(poc_low),
        poc_high=format_units(poc_low + row_size),
        vah=format_units((bottom + high + 1) * row_size),
        val=format_units((bottom + low) * row_size),
        bars=_bar_replies(bars),
    )
    return session, PieceAnswer(piece, poc_text, poc_low, poc_low + row_size)


def _bar_replies(bars: list[FootprintBar]) -> list[FootprintBarReply]:
    """The bars as reply models, validated from their JSON (`bars_json`) in one call: a day's ~2,000 rows built one
    model at a time (validated, or `model_construct`, which is slower still) took a third of the answer."""
    return _BAR_REPLIES.validate_json(bars_json(bars))


def bars_json(bars: list[FootprintBar]) -> bytes:
    """The bars' JSON as `list[FootprintBarReply]` dumps it, byte for byte, from the bars' row columns with no model
    a row. Prices repeat from bar to bar (row edges), so each is formatted once."""
    prices = _PriceTexts()
    replies = []
    for bar in bars:
        bottom, size = bar.bottom, bar.row_size
        edges = list(map(prices.__getitem__, range(bottom, bottom + (len(bar.buys) + 1) * size, size)))
        replies.append(
            {
                "time": bar.start,
                "open": prices[bar.open],
                "high": prices[bar.high],
                "low": prices[bar.low],
                "close": prices[bar.close],
                "volume": format_units(bar.volume),
                "buy_volume": format_units(bar.buy_volume),
                "sell_volume": format_units(bar.sell_volume),
                "delta": format_units(bar.delta),
                "trade_count": bar.trade_count,
                "poc": bar.poc_text,
                "vah": edges[bar.value_area_high_row + 1],
                "val": edges[bar.value_area_low_row],
                "rows": [
                    {"price_low": low, "price_high": high, "buy_volume": format_units(buy),
                     "sell_volume": format_units(sell), "trade_count": count, "buy_imbalance": buy_flag,
                     "sell_imbalance": sell_flag}
                    for low, high, buy, sell, count, buy_flag, sell_flag in zip(
                        edges[:-1], edges[1:], bar.buys, bar.sells, bar.counts, bar.buy_flags, bar.sell_flags,
                        strict=True,
                    )
                ],
                "stacked_imbalances": [
                    {"side": run.side, "price_low": prices[run.price_low], "price_high": prices[run.price_high],
                     "rows": run.rows}
                    for run in bar.stacked
                ],
            }
        )  # fmt: skip
    return orjson.dumps(replies)


class _PriceTexts(dict[int, str]):
    """Prices as text, each formatted on its first lookup (`__missing__`: hits stay in C)."""

    def __missing__(self, units: int) -> str:
        text = self[units] = format_units(units)
        return text


_BAR_REPLIES = TypeAdapter(list[FootprintBarReply])


METHOD = QueryMethod(
    name="footprint",
    summary="Per bar, taker-buy and taker-sell volume per price row with imbalances, POC and value area",
    request=FootprintRequest,
    reply=FootprintReply,
    handler=handle,
    encoder=encode,
    reply_hint="use a larger row_size, a longer interval or a shorter range",
    trade_bytes=112,  # measured peak over 3M trades: 109 (5m bars, levels sorted per interval and price)
    level_bytes=104,  # measured peak per minute level read (bench/query.py, 5m): 101 over 24 h, 99 over 7 d
)
