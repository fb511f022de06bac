"""What the CLI prints of a reply (its method's renderer in `tradetape.cli.renderers`) and what `to_polars` gives."""

from __future__ import annotations

import io
import types
from decimal import Decimal
from typing import Any, Union, get_args, get_origin

import polars as pl
from pydantic import BaseModel
from rich.console import Console, RenderableType

from tests.api.test_methods import BASE
from tradetape.api.methods import coverage, liquidity_vacuums, volume_profile
from tradetape.api.registry import methods
from tradetape.cli.renderers import renderer
from tradetape.domain.trade import TradeRow
from tradetape.testing import HeldTrades

UNITS = 100_000_000


def text_of(renderable: RenderableType) -> str:
    out = io.StringIO()
    Console(file=out, width=200, no_color=True, highlight=False).print(renderable)
    return out.getvalue()


def trades_at(*prices: tuple[int, int]) -> HeldTrades:
    """`count` trades of 1 at each whole `price`, one a millisecond from BASE, consecutive agg ids."""
    rows = []
    for price, count in prices:
        for _ in range(count):
            n = len(rows)
            rows.append(TradeRow(1000 + n, price * UNITS, UNITS, 1000 + n, 1000 + n, BASE + n, n % 2 == 0))
    return HeldTrades.from_rows(rows)


SPAN = {"start": BASE, "end": BASE + 60_000}


def test_a_one_row_profile_marks_both_value_area_edges() -> None:
    """The one row is the value area's high and low edge: it used to be tagged `POC VAH` only."""
    request = volume_profile.VolumeProfileRequest(**SPAN, row_size="10", min_trades=1)
    reply = volume_profile.handle(trades_at((100, 5)), "BTCUSDT", request, BASE)
    assert len(reply.rows) == 1 and reply.val == "100" and reply.vah == "110"
    shown = text_of(renderer("volume_profile")(reply))
    [row] = [line for line in shown.splitlines() if line.strip().startswith("100")]
    assert "POC VAH VAL" in row


def test_coverage_of_an_empty_range_says_no_trades() -> None:
    """It used to print `ids None .. None  times - .. -`."""
    reply = coverage.handle(trades_at((100, 5)), "BTCUSDT", coverage.CoverageRequest(start=BASE + 10**6), BASE + 10**7)
    shown = text_of(renderer("coverage")(reply))
    assert "no trades in the range" in shown and "None" not in shown
    whole = coverage.handle(trades_at(), "BTCUSDT", coverage.CoverageRequest(), BASE)
    assert "no trades on the tape" in text_of(renderer("coverage")(whole))


def vacuums_of(source: HeldTrades, **fields: Any) -> liquidity_vacuums.LiquidityVacuumsReply:
    request = liquidity_vacuums.LiquidityVacuumsRequest(**SPAN, row_size="1", min_trades=1, **fields)
    return liquidity_vacuums.handle(source, "BTCUSDT", request, BASE)


def test_vacuums_header_counts_rows_of_a_size_and_stop_advice_stays_without_a_vacuum() -> None:
    """`rows 93 of 2` (93 rows of size 2) read as 93 of 2 rows; with no vacuum the stop advice used to vanish."""
    thick = trades_at((100, 50), (101, 50), (102, 50))
    reply = vacuums_of(thick, side="long", entry="102")
    shown = text_of(renderer("liquidity_vacuums")(reply))
    assert reply.vacuums == [] and reply.stop is not None
    assert "3 rows of size 1" in shown and "rows 3 of" not in shown
    assert "no vacuums" in shown and "long from 102: stop - (no vacuum below the entry in this range)" in shown


def test_every_reply_with_rows_has_to_polars() -> None:
    """`LiquidityVacuumsReply` had rows but no `.to_polars()`."""
    for name, method in methods().items():
        if _has_rows(method.reply):
            assert callable(getattr(method.reply, "to_polars", None)), name


def _has_rows(model: type[BaseModel]) -> bool:
    for info in model.model_fields.values():
        annotation = info.annotation
        if get_origin(annotation) in (Union, types.UnionType):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        if get_origin(annotation) is list and issubclass(get_args(annotation)[0], BaseModel):
            return True
    return False


def test_vacuums_to_polars() -> None:
    # thick rows at 100 and 110, one thin trade at 105: the rows between are a vacuum
    reply = vacuums_of(trades_at((100, 60), (110, 60), (105, 1)))
    frame = reply.to_polars()
    assert frame.height == len(reply.vacuums) >= 1
    assert frame.schema["price_low"] == pl.Decimal(38, 8) and frame.schema["rows"] == pl.Int64
    assert frame.schema["last_crossed_end"] == pl.Datetime("ms", "UTC")
    first = frame.row(0, named=True)
    widest = reply.vacuums[0]
    assert (first["price_low"], first["price_high"]) == (Decimal(widest.price_low), Decimal(widest.price_high))
    assert (first["impact"], first["rows"], first["deficit_pct"]) == (widest.impact, widest.rows, widest.deficit_pct)
    crossed = widest.last_crossed
    assert first["direction"] == (crossed.direction if crossed else None)
