"""`market_profile` (TPO): how many periods traded at each price row, lettered, with POC, value area and more.

Periods are epoch-aligned like `bars`; the rules (letters, coverage by row, POC and value area by
TPO count, initial balance, single prints, poor high and low) are those of `tradetape.domain.tpo`,
computed exactly from each period's high and low, rolled up from the range's 1-second bars (the
store's aggregate layer: trades decoded only at the range's ragged edges). With `session`, the same profile of each
session's part of the range follows (letters from its first period, rows at the range's row size;
`tradetape.api.sessions`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, Field

from tradetape.api.errors import insufficient_trades, invalid_request, range_too_large
from tradetape.api.frames import rows_frame
from tradetape.api.methods.volume_profile import MAX_SESSION_ROWS, read_levels
from tradetape.api.models import (
    MAX_INTERVALS,
    IntervalField,
    ProfileRowsField,
    RangeRequest,
    RowRule,
    RowSizeField,
    SessionField,
    interval_count,
    omitted,
    parse_interval_ms,
    session_spec,
)
from tradetape.api.query_method import QueryMethod, TradeSource, second_bars_of
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
from tradetape.domain.columns import Int64Array
from tradetape.domain.decimals import format_units, parse_units
from tradetape.domain.profile import MAX_PROFILE_ROWS, choose_row_size, default_row_size, exact_fraction, infer_tick
from tradetape.domain.tpo import TpoProfile, market_profile, tpo_cells

MAX_TPO_CELLS = 400_000
"""Periods × rows one profile may take (a bool and a byte a cell while lettering)."""


class MarketProfileRequest(RangeRequest, RowRule):
    period: IntervalField = Field(
        default="30m", description='TPO period, whole seconds from "1s" to "1d", aligned as bars.'
    )
    row_size: RowSizeField = Field(default=None, description='Row height as a decimal string, e.g. "10".')
    rows: ProfileRowsField = None
    value_area: float = Field(default=0.7, gt=0, le=1, description="Share of the TPOs in the value area.")
    session: SessionField = None

    def period_ms(self) -> int:
        return parse_interval_ms(self.period)


class TpoRowReply(BaseModel):
    price_low: str
    price_high: str
    tpo_count: int
    letters: str
    """The letters of the periods covering the row, in time order."""


class TpoPeriodReply(BaseModel):
    letter: str
    start: int
    high: str
    low: str


class InitialBalanceReply(BaseModel):
    high: str
    low: str


class SinglePrintReply(BaseModel):
    price_low: str
    price_high: str
    rows: int


class SessionMarketProfileReply(SessionInfo):
    """One session's market profile: the reply's profile fields over its part of the range, lettered from its first
    period, at the range's row size."""

    trade_count: int
    poc: str
    poc_low: str
    poc_high: str
    vah: str
    val: str
    initial_balance: InitialBalanceReply | None
    """High and low of the session's first two periods (of those in the range); null when neither traded."""
    single_prints: list[SinglePrintReply]
    poor_high: bool
    poor_low: bool
    periods: list[TpoPeriodReply]
    rows: list[TpoRowReply]


class MarketProfileReply(BaseModel):
    symbol: str
    start: int
    end: int
    period: str
    period_ms: int
    trade_count: int
    row_size: str
    value_area: float
    poc: str
    """Middle of the row with the most TPOs."""
    poc_low: str
    poc_high: str
    vah: str
    val: str
    initial_balance: InitialBalanceReply | None
    """High and low of the range's first two periods; null when neither traded."""
    single_prints: list[SinglePrintReply]
    poor_high: bool
    poor_low: bool
    periods: list[TpoPeriodReply]
    rows: list[TpoRowReply]
    sessions: list[SessionMarketProfileReply] | None = Field(default=None, exclude_if=omitted)
    """With `session`: the profile of each session in the range holding trades."""
    naked_pocs: list[NakedPocReply] | None = Field(default=None, exclude_if=omitted)
    """With `session`: POC rows of sessions closed in the range that no later trade in it reached."""

    def to_polars(self) -> pl.DataFrame:
        """The rows, ascending by price: exact Decimal prices, `tpo_count`, `letters` as text."""
        frame = rows_frame([row.model_dump(exclude={"letters"}) for row in self.rows], TpoRowReply, ("letters",))
        return frame.with_columns(pl.Series("letters", [row.letters for row in self.rows], dtype=pl.String))


def handle(source: TradeSource, symbol: str, request: MarketProfileRequest, now_ms: int) -> MarketProfileReply:
    time_range = request.time_range(now_ms)
    assert time_range is not None
    period_ms = request.period_ms()
    count = interval_count(time_range, period_ms)
    if count > MAX_INTERVALS:
        raise range_too_large(
            f"{count} periods of {request.period}; at most {MAX_INTERVALS}: use a longer period or a shorter range",
            intervals=count,
            max_intervals=MAX_INTERVALS,
        )
    pieces = None if request.session is None else range_pieces(session_spec(request.session), time_range)
    reply = _range_reply(source, symbol, request, time_range)
    return reply if pieces is None else _with_sessions(source, symbol, request, reply, pieces)


def _range_reply(
    source: TradeSource, symbol: str, request: MarketProfileRequest, time_range: tuple[int, int]
) -> MarketProfileReply:
    """The profile of the whole range: the whole reply without `session`."""
    period_ms = request.period_ms()
    start, end = time_range
    seconds = second_bars_of(source, symbol, time_range)
    if len(seconds) == 0:
        raise insufficient_trades(0, 1)
    bars = seconds.rolled(period_ms)
    low, high = int(bars.low.min()), int(bars.high.max())
    tick = infer_tick(np.concatenate([bars.open, bars.high, bars.low, bars.close]))
    row_size = (
        parse_units(request.row_size)
        if request.row_size is not None
        else choose_row_size(low, high, request.rows, tick) if request.rows else default_row_size(low, high, tick)
    )
    row_count = high // row_size - low // row_size + 1
    if row_count > MAX_PROFILE_ROWS:
        raise invalid_request(
            f"row_size {format_units(row_size)} gives {row_count} rows; at most {MAX_PROFILE_ROWS} are allowed",
            row_count=row_count,
            max_rows=MAX_PROFILE_ROWS,
        )
    cells = tpo_cells(bars, row_size)
    if cells > MAX_TPO_CELLS:
        raise range_too_large(
            f"{len(bars)} periods × {row_count} rows = {cells}; at most {MAX_TPO_CELLS}:"
            " use a larger row_size, a longer period or a shorter range",
            cells=cells,
            max_cells=MAX_TPO_CELLS,
            periods=len(bars),
            rows=row_count,
        )
    profile = market_profile(
        bars, start // period_ms * period_ms, row_size, exact_fraction(request.value_area, "value_area")
    )
    return MarketProfileReply(
        symbol=symbol,
        start=start,
        end=end,
        period=request.period,
        period_ms=period_ms,
        trade_count=seconds.total_count,
        row_size=format_units(row_size),
        value_area=request.value_area,
        **_profile_fields(profile),
    )


def _with_sessions(
    source: TradeSource,
    symbol: str,
    request: MarketProfileRequest,
    reply: MarketProfileReply,
    pieces: list[RangePiece],
) -> MarketProfileReply:
    """The range's reply plus each session's profile at the range's row size, and the naked POCs.

    A session's periods and rows lie within the range's, so each profile is within the range's
    bound on cells; their rows together are bounded by MAX_SESSION_ROWS. Each piece of the range
    is read on its own (its traded prices from the store's histograms, a session's periods from its
    1-second bars), so no more than one piece is held at a time.
    """
    period_ms = request.period_ms()
    row_size = parse_units(reply.row_size)
    share = exact_fraction(request.value_area, "value_area")
    rows = 0

    def answer(piece: RangePiece) -> SessionAnswer[SessionMarketProfileReply]:
        nonlocal rows
        prices = traded(piece)
        seconds = second_bars_of(source, symbol, piece.range)
        if len(seconds) == 0:
            return prices, None
        bars = seconds.rolled(period_ms)
        rows += int(bars.high.max()) // row_size - int(bars.low.min()) // row_size + 1
        if rows > MAX_SESSION_ROWS:
            raise range_too_large(
                f"the sessions' profiles at row size {format_units(row_size)} need {rows} rows or more;"
                f" at most {MAX_SESSION_ROWS}: use a larger row_size or a shorter range",
                rows=rows,
                max_rows=MAX_SESSION_ROWS,
            )
        profile = market_profile(bars, piece.start // period_ms * period_ms, row_size, share)
        fields = _profile_fields(profile)
        session = SessionMarketProfileReply(**session_info(piece), trade_count=seconds.total_count, **fields)
        return prices, (session, PieceAnswer(piece, fields["poc"], profile.poc_low, profile.poc_high))

    def traded(piece: RangePiece) -> Int64Array:
        return np.unique(read_levels(source, symbol, piece.range)[0])

    sessions, naked = per_session(pieces, traded, answer)
    return reply.model_copy(update={"sessions": sessions, "naked_pocs": naked})


def _profile_fields(profile: TpoProfile) -> dict[str, Any]:
    """A profile's POC, value area, initial balance, single prints, extremes, periods and rows as exact strings."""
    balance = profile.initial_balance
    return {
        "poc": format(profile.poc, "f"),  # built without trailing zeros or an exponent
        "poc_low": format_units(profile.poc_low),
        "poc_high": format_units(profile.poc_high),
        "vah": format_units(profile.vah),
        "val": format_units(profile.val),
        "initial_balance": None
        if balance is None
        else InitialBalanceReply(high=format_units(balance[0]), low=format_units(balance[1])),
        "single_prints": [
            SinglePrintReply(price_low=format_units(run.price_low), price_high=format_units(run.price_high),
                             rows=run.rows)
            for run in profile.single_prints
        ],
        "poor_high": profile.poor_high,
        "poor_low": profile.poor_low,
        "periods": [
            TpoPeriodReply(letter=p.letter, start=p.start, high=format_units(p.high), low=format_units(p.low))
            for p in profile.periods
        ],
        "rows": [
            TpoRowReply(
                price_low=format_units(row.price_low),
                price_high=format_units(row.price_high),
                tpo_count=row.tpo_count,
                letters=row.letters,
            )
            for row in profile.rows
        ],
    }


METHOD = QueryMethod(
    name="market_profile",
    summary="Market profile (TPO): periods per price row with letters, POC, value area, initial balance, single prints",
    request=MarketProfileRequest,
    reply=MarketProfileReply,
    handler=handle,
    reply_hint="use a larger row_size, a longer period or a shorter range",
    trade_bytes=76,  # measured peak over 3M trades: 72 (the bars' peak: periods are bars)
    level_bytes=300,  # measured peak per 1-second bar read (bench/query.py, 30m): 298 over 7 d, 270 a row more
)
