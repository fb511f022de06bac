"""`volume_profile` as the CLI shows it: POC and value area, then the rows from the top price down, with bars."""

from __future__ import annotations

from decimal import Decimal

from rich.console import Group, RenderableType
from rich.text import Text

from tradetape.api.methods.volume_profile import VolumeProfileReply
from tradetape.api.times import time_span
from tradetape.cli.session_table import session_table
from tradetape.cli.tables import table

BAR_WIDTH = 40


def render(reply: VolumeProfileReply) -> RenderableType:
    """Header lines, then the rows from the highest price down, POC and value area marked, with bars."""
    header = Text.assemble(
        (f"{reply.symbol} volume profile", "bold"),
        f"  {time_span(reply.start, reply.end)}\n",
        f"trades {reply.trade_count}  volume {reply.total_volume} (buy {reply.buy_volume}, "
        f"sell {reply.sell_volume})  row size {reply.row_size}\n",
        (f"POC {reply.poc} [{reply.poc_low}, {reply.poc_high})", "bold yellow"),
        (f"   VAH {reply.vah}   VAL {reply.val}", "cyan"),
        f"   value area {reply.value_area:.0%}",
    )
    grid = table(
        "price_low", "price_high", "volume", "buy", "sell", "trades", "", "",
        right=("price_low", "price_high", "volume", "buy", "sell", "trades"),
    )
    peak = max((Decimal(row.volume) for row in reply.rows), default=Decimal(0)) or Decimal(1)
    val, vah = Decimal(reply.val), Decimal(reply.vah)
    high_nodes = {node.price_low for node in reply.hvn}
    low_nodes = {node.price_low for node in reply.lvn}
    for row in reversed(reply.rows):
        poc = row.price_low == reply.poc_low
        in_value_area = Decimal(row.price_low) >= val and Decimal(row.price_high) <= vah
        edges = ("VAH" if Decimal(row.price_high) == vah else "", "VAL" if Decimal(row.price_low) == val else "")
        node = "HVN" if row.price_low in high_nodes else ("LVN" if row.price_low in low_nodes else "")
        mark = " ".join(part for part in ("POC" if poc else "VA" if in_value_area else "", *edges, node) if part)
        bar = "█" * int(Decimal(row.volume) / peak * BAR_WIDTH)
        style = "bold yellow" if poc else ("cyan" if in_value_area else "")
        grid.add_row(
            row.price_low, row.price_high, row.volume, row.buy_volume, row.sell_volume, str(row.trade_count),
            mark, bar, style=style,
        )
    legend = Text("POC: most volume; VA: value area; VAH/VAL: its edges; HVN/LVN: high/low-volume nodes", "dim")
    if reply.sessions is None:
        return Group(header, Text(""), grid, legend)
    sessions = session_table(
        reply.sessions, reply.naked_pocs or [], ("trades", "volume", "POC", "VAH", "VAL"),
        lambda s: (str(s.trade_count), s.total_volume, s.poc, s.vah, s.val),
    )
    return Group(header, Text(""), grid, legend, Text(""), *sessions)
