"""`market_profile` as the CLI shows it: the rows from the highest price down, each with its TPO letters.

With sessions, a line a session follows: its POC, value area and initial balance (`--json` has its rows).
"""

from __future__ import annotations

from decimal import Decimal

from rich.console import Group, RenderableType
from rich.text import Text

from tradetape.api.methods.market_profile import MarketProfileReply, SessionMarketProfileReply
from tradetape.api.times import iso_time, time_span
from tradetape.cli.session_table import session_table
from tradetape.cli.tables import table


def render(reply: MarketProfileReply) -> RenderableType:
    """Header lines, then the rows from the highest price down, each with its letters; POC, value area marked."""
    balance = reply.initial_balance
    poor = " ".join(name for name, flag in (("poor high", reply.poor_high), ("poor low", reply.poor_low)) if flag)
    header = Text.assemble(
        (f"{reply.symbol} market profile (TPO) {reply.period}", "bold"),
        f"  {time_span(reply.start, reply.end)}\n",
        f"trades {reply.trade_count}  periods with trades {len(reply.periods)}  row size {reply.row_size}\n",
        (f"POC {reply.poc} [{reply.poc_low}, {reply.poc_high})", "bold yellow"),
        (f"   VAH {reply.vah}   VAL {reply.val}", "cyan"),
        f"   value area {reply.value_area:.0%}\n",
        f"initial balance {balance.low} – {balance.high}" if balance else "initial balance - (no trades in A or B)",
        f"   {poor}" if poor else "",
    )
    singles = [(Decimal(run.price_low), Decimal(run.price_high)) for run in reply.single_prints]
    val, vah = Decimal(reply.val), Decimal(reply.vah)
    grid = table("price_low", "TPOs", "letters", "", right=("price_low", "TPOs"))
    for row in reversed(reply.rows):
        low, high = Decimal(row.price_low), Decimal(row.price_high)
        poc = row.price_low == reply.poc_low
        in_value_area = low >= val and high <= vah
        single = any(first <= low and high <= last for first, last in singles)
        mark = " ".join(m for m in ("POC" if poc else "VA" if in_value_area else "", "single" if single else "") if m)
        style = "bold yellow" if poc else ("cyan" if in_value_area else "")
        grid.add_row(row.price_low, str(row.tpo_count), row.letters, mark, style=style)
    periods = "  ".join(f"{p.letter} {iso_time(p.start)[11:16]}" for p in reply.periods)
    legend = Text(
        f"periods: {periods}\nletters A–Z, a–z, then A again; POC: most TPOs; VA: value area; single: single prints",
        "dim",
    )
    if reply.sessions is None:
        return Group(header, Text(""), grid, legend)
    sessions = session_table(
        reply.sessions, reply.naked_pocs or [], ("periods", "trades", "POC", "VAH", "VAL", "initial balance"),
        _session_cells,
    )
    return Group(header, Text(""), grid, legend, Text(""), *sessions)


def _session_cells(session: SessionMarketProfileReply) -> tuple[str, ...]:
    balance = session.initial_balance
    return (
        str(len(session.periods)), str(session.trade_count), session.poc, session.vah, session.val,
        f"{balance.low} – {balance.high}" if balance else "-",
    )
