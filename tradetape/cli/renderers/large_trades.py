"""`large_trades` as the CLI shows it: how many qualify, then the largest, green for a taker buy."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from tradetape.api.methods.large_trades import LargeTradesReply
from tradetape.api.times import iso_time, time_span
from tradetape.cli.tables import table


def render(reply: LargeTradesReply) -> RenderableType:
    header = Text.assemble(
        (f"{reply.symbol} large trades", "bold"),
        f"  {time_span(reply.start, reply.end)}\n",
        f"{reply.matched} of {reply.trade_count} trades qualify; largest {len(reply.trades)} shown"
        + (" (more qualify)" if reply.truncated else ""),
    )
    grid = table("time", "agg id", "side", "price", "qty", "quote qty", right=("agg id", "price", "qty", "quote qty"))
    for trade in reply.trades:
        grid.add_row(
            iso_time(trade.time), str(trade.agg_id), trade.side, trade.price, trade.qty, trade.quote_qty,
            style="green" if trade.side == "buy" else "red",
        )
    return Group(header, Text(""), grid)
