"""`volume_profile` as the CLI shows it: POC and value area, then the rows from the top price down, with bars."""

from __future__ import annotations

from decimal import Decimal

from rich.console import Group, RenderableType
from rich.text import Text

from tradetape.api.methods.volume_profile import VolumeProfileReply
from tradetape.api.times import iso_time, time_span
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
    return Group(header, Text(""), grid, legend, Text(""), *_render_sessions(reply))


def _render_sessions(reply: VolumeProfileReply) -> list[RenderableType]:
    """One line per session (its POC and value area), then the naked POCs."""
    numbers = ("trades", "volume", "POC", "VAH", "VAL")
    grid = table("session", "from", "to", *numbers, "", right=numbers)
    for session in reply.sessions or []:
        grid.add_row(
            session.label, iso_time(session.start), iso_time(session.end), str(session.trade_count),
            session.total_volume, session.poc, session.vah, session.val, "partial" if session.partial else "",
        )
    naked = ", ".join(f"{poc.poc} ({poc.label})" for poc in reply.naked_pocs or []) or "none"
    return [Text(f"sessions {len(reply.sessions or [])}", "bold"), grid, Text(f"naked POCs: {naked}", "yellow")]
