"""`liquidity_vacuums` as the CLI shows it: the rule, the vacuums widest first, the stop advice."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tradetape.api.methods.liquidity_vacuums import LiquidityVacuumsReply, VacuumReply
from tradetape.api.times import iso_time, time_span
from tradetape.cli.tables import table


def render(reply: LiquidityVacuumsReply) -> RenderableType:
    header = Text.assemble(
        (f"{reply.symbol} liquidity vacuums", "bold"),
        f"  {time_span(reply.start, reply.end)}\n",
        f"trades {reply.trade_count}  {reply.row_count} rows of size {reply.row_size}  "
        f"thin: below {reply.threshold} × mean row volume for at least {reply.min_rows} rows",
    )
    parts: list[RenderableType] = [header]
    if reply.vacuums:
        parts += [Text(""), _vacuum_table(reply.vacuums)]
    else:
        parts.append(Text("no vacuums"))
    if reply.stop is not None:
        stop = reply.stop
        parts.append(Text(f"\n{stop.side} from {stop.entry}: stop {stop.stop or '-'} ({stop.reason})", "bold"))
    return Group(*parts)


def _vacuum_table(vacuums: list[VacuumReply]) -> Table:
    numbers = ("price_low", "price_high", "thin rows", "volume in zone", "share of total volume", "below mean row")
    grid = table(*numbers, "impact", "last crossed", right=numbers)
    for v in vacuums:
        crossed = "never" if v.last_crossed is None else (
            f"{iso_time(v.last_crossed.end)} {v.last_crossed.direction} in {v.last_crossed.seconds:g} s"
        )
        grid.add_row(
            v.price_low, v.price_high, str(v.rows), v.volume, f"{v.share:.2%}", f"{v.deficit_pct:.0f}%",
            v.impact, crossed, style="red" if v.impact == "severe" else "",
        )
    return grid
