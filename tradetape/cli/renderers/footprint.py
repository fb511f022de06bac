"""`footprint` as the CLI shows it: a block a bar, rows from the highest price down, imbalances marked.

With sessions, a line a session follows (its bars are the range's, cut at its open and close).
"""

from __future__ import annotations

from decimal import Decimal

from rich.console import Group, RenderableType
from rich.text import Text

from tradetape.api.methods.footprint import FootprintBarReply, FootprintReply, FootprintRowReply, StackedImbalanceReply
from tradetape.api.times import iso_time, time_span
from tradetape.cli.session_table import session_table
from tradetape.cli.tables import table


def render(reply: FootprintReply) -> RenderableType:
    """A block a bar: its figures, then its rows from the highest price down, buy × sell, imbalances and POC marked."""
    header = Text.assemble(
        (f"{reply.symbol} footprint {reply.interval}", "bold"),
        f"  {time_span(reply.start, reply.end)}\n",
        f"trades {reply.trade_count}  bars with trades {len(reply.bars)}  row size {reply.row_size or '-'}"
        f"  imbalance {reply.imbalance:g}×  stacked ≥ {reply.stacked} rows",
    )
    parts: list[RenderableType] = [header]
    for bar in reply.bars:
        parts.append(Text(""))
        parts.append(_bar_block(bar))
    legend = "buy × sell per row; ▲ buy imbalance, ▼ sell imbalance, ▲▲/▼▼ in a stacked run; POC; VA: value area"
    parts.append(Text(legend if reply.bars else "no trades in the range", "dim"))
    if reply.sessions is not None:
        parts.append(Text(""))
        parts += session_table(
            reply.sessions, reply.naked_pocs or [], ("bars", "trades", "volume", "delta", "POC", "VAH", "VAL"),
            lambda s: (str(len(s.bars)), str(s.trade_count), s.volume, s.delta, s.poc, s.vah, s.val),
        )
    return Group(*parts)


def _bar_block(bar: FootprintBarReply) -> RenderableType:
    rising = Decimal(bar.close) >= Decimal(bar.open)
    title = Text.assemble(
        (iso_time(bar.time), "bold green" if rising else "bold red"),
        f"  O {bar.open}  H {bar.high}  L {bar.low}  C {bar.close}  volume {bar.volume}  delta {bar.delta}"
        f"  trades {bar.trade_count}  ",
        (f"POC {bar.poc}", "bold yellow"),
        (f"  VAH {bar.vah}  VAL {bar.val}", "cyan"),
    )
    stacked = {(run.side, row.price_low) for run in bar.stacked_imbalances for row in _rows_in(bar, run)}
    grid = table("price", "buy", "", "sell", "trades", "", right=("price", "buy", "trades"))
    val, vah = Decimal(bar.val), Decimal(bar.vah)
    for row in reversed(bar.rows):
        buy = Text(row.buy_volume, "bold green" if row.buy_imbalance else "")
        sell = Text(row.sell_volume, "bold red" if row.sell_imbalance else "")
        marks = [
            ("▲▲" if ("buy", row.price_low) in stacked else "▲") if row.buy_imbalance else "",
            ("▼▼" if ("sell", row.price_low) in stacked else "▼") if row.sell_imbalance else "",
        ]
        poc = Decimal(row.price_low) < Decimal(bar.poc) < Decimal(row.price_high)
        in_value_area = Decimal(row.price_low) >= val and Decimal(row.price_high) <= vah
        marks.append("POC" if poc else "VA" if in_value_area else "")
        grid.add_row(
            row.price_low, buy, "×", sell, str(row.trade_count), " ".join(m for m in marks if m),
            style="bold yellow" if poc else "",
        )
    return Group(title, grid)


def _rows_in(bar: FootprintBarReply, run: StackedImbalanceReply) -> list[FootprintRowReply]:
    low, high = Decimal(run.price_low), Decimal(run.price_high)
    return [row for row in bar.rows if low <= Decimal(row.price_low) and Decimal(row.price_high) <= high]
