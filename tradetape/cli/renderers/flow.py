"""`flow` as the CLI shows it: the totals, then one row an interval, red when sellers took more."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from tradetape.api.methods.flow import FlowReply
from tradetape.api.times import iso_time, time_span
from tradetape.cli.tables import table


def render(reply: FlowReply) -> RenderableType:
    header = Text.assemble(
        (f"{reply.symbol} order flow {reply.interval}", "bold"),
        f"  {time_span(reply.start, reply.end)}\n",
        f"trades {reply.trade_count}  buy {reply.buy_volume}  sell {reply.sell_volume}  delta {reply.delta}",
    )
    numbers = ("buy", "sell", "delta", "cum. delta", "trades")
    grid = table("time", *numbers, right=numbers)
    for row in reply.rows:
        grid.add_row(
            iso_time(row.time), row.buy_volume, row.sell_volume, row.delta, row.cumulative_delta,
            str(row.trade_count), style="red" if row.delta.startswith("-") else "green",
        )
    return Group(header, Text(""), grid)
