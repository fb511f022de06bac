"""`trades`: the raw trades of a range, exact strings, paginated with an opaque cursor.

A page holds at most `limit` trades ascending by agg id, well under NATS's max payload;
`next_cursor` (null on the last page) carries the symbol, the range and the limit of the
first page and the last agg id served, so the next request sends `cursor` and the pages
join without a gap or a repeat even while new trades arrive.

A cursor is bound to what it was made for: sent for another symbol, with another range
or another limit, it is `invalid_request` naming what it belongs to (a foreign cursor
would otherwise answer "no trades, last page"). The range and limit may be repeated
beside it (`start`/`end` equal to its range, `last` equal to its length: the range was
fixed when the first page was asked) or left out (the cursor's are used). It is base64url
of a small JSON array, not secret, but checked field by field and bounded in size.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson
import polars as pl
from pydantic import BaseModel, Field, PrivateAttr, model_validator

from tradetape.api.errors import invalid_request
from tradetape.api.frames import DECIMAL
from tradetape.api.models import RangeRequest, parse_duration_ms
from tradetape.api.query_method import QueryMethod, TradeSource
from tradetape.api.times import iso_time
from tradetape.domain.columns import TradeColumns
from tradetape.domain.decimals import format_units
from tradetape.domain.instruments import is_instrument

MAX_PAGE = 5000
DEFAULT_PAGE = 1000
CURSOR_VERSION = 2
MAX_CURSOR_CHARS = 256
"""A cursor is ~120 characters (a 32-character symbol, five integers); a longer one is not ours, unread."""


@dataclass(frozen=True)
class TradesCursor:
    """Where the next page starts, and the question it belongs to: symbol, range and page size."""

    symbol: str
    start: int
    end: int
    limit: int
    after_id: int
    """The last agg id served."""
    after_time: int
    """Its trade time: the next page reads from there."""

    def encode(self) -> str:
        fields = [CURSOR_VERSION, self.symbol, self.start, self.end, self.limit, self.after_id, self.after_time]
        return base64.urlsafe_b64encode(orjson.dumps(fields)).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> TradesCursor:
        """The cursor `text` holds; `ValueError` for anything this service did not write."""
        foreign = ValueError("cursor is not one this service wrote (give next_cursor of a page as it came)")
        if len(text) > MAX_CURSOR_CHARS:
            raise foreign
        try:
            version, symbol, *numbers = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            start, end, limit, after_id, after_time = numbers
        except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
            raise foreign from None
        if version != CURSOR_VERSION or not is_instrument(symbol) or not all(type(v) is int for v in numbers):
            raise foreign
        if not (start <= after_time < end and 1 <= limit <= MAX_PAGE):
            raise foreign
        return cls(symbol, start, end, limit, after_id, after_time)

    def describe(self) -> str:
        return f"{self.symbol} trades {iso_time(self.start)} → {iso_time(self.end)}, limit {self.limit}"


class TradesRequest(RangeRequest):
    limit: int = Field(
        default=DEFAULT_PAGE, ge=1, le=MAX_PAGE, description="Trades per page (with a cursor: the cursor's)."
    )
    cursor: str | None = Field(
        default=None,
        max_length=MAX_CURSOR_CHARS,
        description="next_cursor of the previous page, for the same symbol; start/end/last and limit may be left "
        "out or must name the cursor's range and limit.",
    )
    _cursor: TradesCursor | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _cursor_bound(self) -> TradesRequest:
        if self.cursor is None:
            return self
        cursor = TradesCursor.decode(self.cursor)
        asked: dict[str, object] = {"start": self.start, "end": self.end, "limit": self.limit}
        bound: dict[str, object] = {"start": cursor.start, "end": cursor.end, "limit": cursor.limit}
        if self.last is not None:
            asked["last"], bound["last"] = parse_duration_ms(self.last), cursor.end - cursor.start
        if "limit" not in self.model_fields_set:
            del asked["limit"]
        differ = [name for name, value in asked.items() if value is not None and value != bound[name]]
        if differ:
            raise ValueError(f"the cursor belongs to {cursor.describe()}; this request's {', '.join(differ)} differ")
        self._cursor = cursor
        self.limit = cursor.limit
        return self

    @property
    def resume(self) -> TradesCursor | None:
        """The checked cursor this request continues from (None: a first page)."""
        return self._cursor

    def time_range(self, now_ms: int, default_ms: int | None = None) -> tuple[int, int] | None:
        if self._cursor is not None:
            return self._cursor.start, self._cursor.end
        return super().time_range(now_ms)


class TradeReply(BaseModel):
    """One aggTrade with Binance's field names; price and quantity exact decimal strings."""

    a: int
    p: str
    q: str
    f: int
    l: int  # noqa: E741 - Binance's name for the last trade id
    T: int
    m: bool


class TradesReply(BaseModel):
    symbol: str
    start: int
    end: int
    trades: list[TradeReply]
    next_cursor: str | None

    def to_polars(self) -> pl.DataFrame:
        """The page as a table: agg id, exact price and quantity, trade ids, time (UTC), buyer-is-maker."""
        frame = pl.DataFrame(
            [t.model_dump() for t in self.trades],
            schema={"a": pl.Int64, "p": pl.String, "q": pl.String, "f": pl.Int64, "l": pl.Int64, "T": pl.Int64,
                    "m": pl.Boolean},
        )
        return frame.select(
            pl.col("a").alias("agg_id"),
            pl.col("p").cast(DECIMAL).alias("price"),
            pl.col("q").cast(DECIMAL).alias("qty"),
            pl.col("f").alias("first_id"),
            pl.col("l").alias("last_id"),
            pl.from_epoch(pl.col("T"), time_unit="ms").dt.replace_time_zone("UTC").alias("time"),
            pl.col("m").alias("buyer_maker"),
        )


def trade_rows(trades: TradeColumns) -> list[dict[str, Any]]:
    """`trades` as `TradeReply` fields (exact decimal strings), ready for JSON: the page and the live feed alike."""
    return [
        {"a": a, "p": format_units(p), "q": format_units(q), "f": f, "l": last, "T": t, "m": m}
        for a, p, q, f, last, t, m in zip(
            trades.agg_id.tolist(), trades.price.tolist(), trades.qty.tolist(), trades.first_id.tolist(),
            trades.last_id.tolist(), trades.time.tolist(), trades.buyer_maker.tolist(), strict=True,
        )
    ]


def handle(source: TradeSource, symbol: str, request: TradesRequest, now_ms: int) -> TradesReply:
    time_range = request.time_range(now_ms)
    assert time_range is not None
    start, end = time_range
    cursor = request.resume
    if cursor is None:
        trades = source.trades(symbol, time_range)
    elif cursor.symbol != symbol:
        raise invalid_request(
            f"the cursor belongs to {cursor.describe()}, not to {symbol}", cursor_symbol=cursor.symbol, symbol=symbol
        )
    else:  # resume at the last trade's time: ids are ascending with time, so nothing is skipped
        trades = source.trades(symbol, (cursor.after_time, end))
        trades = trades.take(trades.agg_id > cursor.after_id)
    page = trades.take(slice(0, request.limit))
    more = len(trades) > request.limit
    return TradesReply(
        symbol=symbol,
        start=start,
        end=end,
        trades=[TradeReply.model_construct(**row) for row in trade_rows(page)],
        next_cursor=(
            TradesCursor(symbol, start, end, request.limit, int(page.agg_id[-1]), int(page.time[-1])).encode()
            if more
            else None
        ),
    )


METHOD = QueryMethod(
    name="trades",
    summary="The raw trades of a range, exact strings, in pages joined by an opaque cursor",
    request=TradesRequest,
    reply=TradesReply,
    handler=handle,
    reply_hint="ask for a smaller limit",
    trade_bytes=56,  # measured peak over 3M trades: 50
)
