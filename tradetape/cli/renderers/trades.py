"""`trades` as the CLI shows it: one page, one row a trade, and whether more pages follow."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from tradetape.api.methods.trades import TradesReply
from tradetape.api.times import iso_time, time_span
from tradetape.cli.tables import table


def render(reply: TradesReply) -> RenderableType:
    header = Text.assemble(
        (f"{reply.symbol} trades", "bold"),
        f"  {time_span(reply.start, reply.end)}\n",
        f"{len(reply.trades)} trades on this page"
        + ("; more pages follow (next_cursor)" if reply.next_cursor else "; last page"),
    )
    grid = table("time", "agg id", "side", "price", "qty", "first id", "last id",
                 right=("agg id", "price", "qty", "first id", "last id"))
    for t in reply.trades:
        grid.add_row(iso_time(t.T), str(t.a), "sell" if t.m else "buy", t.p, t.q, str(t.f), str(t.l),
                     style="red" if t.m else "green")
    return Group(header, Text(""), grid)
