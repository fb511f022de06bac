"""`coverage` as the CLI shows it: what is held, the gaps (the first SHOWN_GAPS) and ingest's open gaps."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from tradetape.api.methods.coverage import CoverageReply
from tradetape.api.times import iso_time, time_span

SHOWN_GAPS = 50


def render(reply: CoverageReply) -> RenderableType:
    lines = [Text.assemble((f"{reply.symbol} coverage", "bold"), f" ({time_span(reply.start, reply.end)})")]
    if reply.first_id is None:
        lines.append(Text("no trades on the tape" if reply.start is None else "no trades in the range"))
    else:
        lines += [
            Text(
                f"trades {reply.trade_count}  ids {reply.first_id} .. {reply.last_id}  "
                f"times {iso_time(reply.first_time)} .. {iso_time(reply.last_time)}"
            ),
            Text(
                f"gaps {len(reply.gaps)}  missing trades {reply.missing_count}", style="red" if reply.gaps else "green"
            ),
        ]
    if reply.void_count:
        lines.append(Text(f"voids {reply.void_count}  (ids Binance invalidated: held, no trade)"))
    lines += [Text(f"  missing ids {gap.from_id} .. {gap.to_id}") for gap in reply.gaps[:SHOWN_GAPS]]
    if len(reply.gaps) > SHOWN_GAPS:
        lines.append(Text(f"  ... and {len(reply.gaps) - SHOWN_GAPS} more gaps (use --json)"))
    if reply.ingest_gaps is None:
        lines.append(Text("ingest ledger not reachable", style="yellow"))
    else:
        lines.append(Text(f"ingest open gaps {len(reply.ingest_gaps)}", style="red" if reply.ingest_gaps else "green"))
        lines += [
            Text(f"  ids {g.from_id} .. {g.to_id}  open {g.age_s:g} s  attempts {g.attempts}  {g.last_error}")
            for g in reply.ingest_gaps[:SHOWN_GAPS]
        ]
    return Group(*lines)
