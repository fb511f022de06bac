"""`vwap` as the CLI shows it: VWAP and σ, the bands, and the running series when an interval was asked."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from tradetape.api.methods.vwap import VwapReply
from tradetape.api.times import iso_time, time_span
from tradetape.cli.tables import table


def render(reply: VwapReply) -> RenderableType:
    header = Text.assemble(
        (f"{reply.symbol} {'anchored ' if reply.anchored else ''}VWAP", "bold"),
        f"  {time_span(reply.start, reply.end)}\n",
        f"trades {reply.trade_count}  volume {reply.volume:.8g}\n",
        (f"VWAP {reply.vwap:.10g}", "bold yellow"),
        f"   σ {reply.std:.6g}",
    )
    bands = table("band", "upper", "lower", right=("band", "upper", "lower"))
    for band in reply.bands:
        bands.add_row(f"±{band.deviations:g}σ", f"{band.upper:.10g}", f"{band.lower:.10g}")
    parts: list[RenderableType] = [header, Text(""), bands]
    if reply.series:
        series = table("until", "vwap", "σ", right=("vwap", "σ"))
        for point in reply.series:
            series.add_row(iso_time(point.time), f"{point.vwap:.10g}", f"{point.std:.6g}")
        parts += [Text(""), series]
    return Group(*parts)
