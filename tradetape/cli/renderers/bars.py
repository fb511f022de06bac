"""`bars` as the CLI shows it: a header, then one row an interval, green when it closed at or above its open."""

from __future__ import annotations

from decimal import Decimal

from rich.console import Group, RenderableType
from rich.text import Text

from tradetape.api.methods.bars import THRESHOLDS, BarsReply
from tradetape.api.times import iso_time, time_span
from tradetape.cli.tables import table


def render(reply: BarsReply) -> RenderableType:
    kind = next((f"{name} {value}" for name in THRESHOLDS if (value := getattr(reply, name)) is not None), None)
    what = kind or f"{reply.interval}{f' {reply.tz}' if reply.tz else ''}"
    header = Text.assemble(
        (f"{reply.symbol} bars {what}", "bold"),
        f"  {time_span(reply.start, reply.end)}\n",
        f"trades {reply.trade_count}  bars with trades {len(reply.bars)}",
    )
    numbers = ("open", "high", "low", "close", "volume", "buy", "sell", "trades", "vwap")
    ends = ("last trade",) if kind else ()
    grid = table("time", *ends, *numbers, right=numbers)
    for bar in reply.bars:
        rising = Decimal(bar.close) >= Decimal(bar.open)
        last = (iso_time(bar.end_time) + (" partial" if bar.partial else ""),) if bar.end_time is not None else ()
        grid.add_row(
            iso_time(bar.time), *last, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.buy_volume,
            bar.sell_volume, str(bar.trade_count), "" if bar.vwap is None else f"{bar.vwap:.8g}",
            style="green" if rising else "red",
        )
    return Group(header, Text(""), grid)
