"""`large_trades`: the largest trades of a range, the top N by quantity or all above a size.

Ordered by quantity, largest first (ties: the earlier agg id first); `quote_qty` is the
exact price × quantity. With `min_qty`, at most `top` trades are listed and `truncated`
says when more qualified.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, Field, field_validator

from tradetape.api.frames import rows_frame
from tradetape.api.models import QuantityField, RangeRequest, decimal_field
from tradetape.api.query_method import QueryMethod, TradeSource, quantity_source
from tradetape.domain.decimals import format_units, parse_units

MAX_TOP = 1000


class LargeTradesRequest(RangeRequest):
    quantity: QuantityField = "all"
    top: int = Field(default=20, ge=1, le=MAX_TOP, description="How many trades to list at most.")
    min_qty: str | None = Field(
        default=None, description='Only trades of at least this base quantity, a decimal string, e.g. "1.5".'
    )

    @field_validator("min_qty", mode="before")
    @classmethod
    def _min_qty(cls, value: Any) -> Any:
        return decimal_field(value, "min_qty")


class LargeTradeReply(BaseModel):
    agg_id: int
    time: int
    price: str
    qty: str
    quote_qty: str
    side: str
    """"buy" when the taker bought (`m` false), "sell" when the taker sold."""


class LargeTradesReply(BaseModel):
    symbol: str
    start: int
    end: int
    trade_count: int
    """Trades in the range."""
    matched: int
    """Trades that qualified (all of them with `top` alone)."""
    truncated: bool
    trades: list[LargeTradeReply]

    def to_polars(self) -> pl.DataFrame:
        frame = rows_frame([t.model_dump(exclude={"side"}) for t in self.trades], LargeTradeReply, exclude=("side",))
        return frame.with_columns(pl.Series("side", [t.side for t in self.trades], dtype=pl.String))


def handle(source: TradeSource, symbol: str, request: LargeTradesRequest, now_ms: int) -> LargeTradesReply:
    source = quantity_source(source, symbol, request.quantity)
    time_range = request.time_range(now_ms)
    assert time_range is not None
    trades = source.trades(symbol, time_range)
    candidates = np.arange(len(trades))
    if request.min_qty is not None:
        candidates = np.flatnonzero(trades.qty >= parse_units(request.min_qty))
    matched = len(candidates)
    qty = trades.qty[candidates]
    if matched > request.top:  # only trades at or above the top-th largest size can be chosen (ties kept)
        kth = np.partition(qty, matched - request.top)[matched - request.top]
        candidates, qty = candidates[qty >= kth], qty[qty >= kth]
    # Largest quantity first, then the earlier agg id: lexsort sorts by its last key first.
    order = candidates[np.lexsort((trades.agg_id[candidates], -qty))][: request.top]
    chosen = trades.take(order)
    return LargeTradesReply(
        symbol=symbol,
        start=time_range[0],
        end=time_range[1],
        trade_count=len(trades),
        matched=matched,
        truncated=matched > request.top,
        trades=[
            LargeTradeReply(
                agg_id=int(chosen.agg_id[i]),
                time=int(chosen.time[i]),
                price=format_units(int(chosen.price[i])),
                qty=format_units(int(chosen.qty[i])),
                quote_qty=_quote(int(chosen.price[i]), int(chosen.qty[i])),
                side="sell" if chosen.buyer_maker[i] else "buy",
            )
            for i in range(len(chosen))
        ],
    )


def _quote(price: int, qty: int) -> str:
    """price × qty exactly: the product of two values in 1e-8 has up to 16 decimal places."""
    whole, frac = divmod(price * qty, 10**16)
    return f"{whole}.{frac:016d}".rstrip("0").rstrip(".")


METHOD = QueryMethod(
    name="large_trades",
    summary="The largest trades of a range: top N by quantity, or all above a size",
    request=LargeTradesRequest,
    reply=LargeTradesReply,
    handler=handle,
    reply_hint="ask for fewer trades (top)",
    trade_bytes=76,  # measured peak over 3M trades: 73
)
