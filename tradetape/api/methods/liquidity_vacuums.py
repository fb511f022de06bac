"""`liquidity_vacuums`: runs of thin rows inside a volume profile, where price moved fast.

A vacuum is a maximal run of at least `min_rows` consecutive rows strictly between the
lowest and highest traded rows, each below `threshold` × the mean row volume (DESIGN.md);
computed in `tradetape.domain.profile`, widest first.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from rich.console import Group, RenderableType
from rich.text import Text

from tradetape.api.methods.volume_profile import ProfileSummary, VolumeProfileRequest, profile_of, summary_of
from tradetape.api.registry import QueryMethod, TradeSource
from tradetape.api.render import table, time_span
from tradetape.domain.decimals import format_units
from tradetape.domain.profile import liquidity_vacuums


class LiquidityVacuumsRequest(VolumeProfileRequest):
    min_rows: int = Field(default=3, ge=1, description="Fewest consecutive thin rows that make a vacuum.")
    threshold: float = Field(default=0.2, gt=0, description="A row is thin below threshold × mean row volume.")


class VacuumReply(BaseModel):
    price_low: str
    price_high: str
    rows: int
    volume: str
    share: float


class LiquidityVacuumsReply(ProfileSummary):
    row_count: int
    threshold: float
    min_rows: int
    vacuums: list[VacuumReply]


def handle(
    source: TradeSource, symbol: str, request: LiquidityVacuumsRequest, now_ms: int
) -> LiquidityVacuumsReply:
    start, end, profile = profile_of(source, symbol, request, now_ms)
    vacuums = liquidity_vacuums(profile, request.min_rows, request.threshold)
    return LiquidityVacuumsReply(
        **summary_of(symbol, start, end, profile),
        row_count=len(profile.rows),
        threshold=request.threshold,
        min_rows=request.min_rows,
        vacuums=[
            VacuumReply(
                price_low=format_units(v.price_low),
                price_high=format_units(v.price_high),
                rows=v.rows,
                volume=format_units(v.volume),
                share=v.share,
            )
            for v in vacuums
        ],
    )


def render(reply: LiquidityVacuumsReply) -> RenderableType:
    header = Text.assemble(
        (f"{reply.symbol} liquidity vacuums", "bold"),
        f"  {time_span(reply.start, reply.end)}\n",
        f"trades {reply.trade_count}  rows {reply.row_count} of {reply.row_size}  "
        f"thin: below {reply.threshold} × mean row volume for at least {reply.min_rows} rows",
    )
    if not reply.vacuums:
        return Group(header, Text("no vacuums"))
    grid = table(
        "price_low", "price_high", "thin rows", "volume in zone", "share of total volume",
        right=("price_low", "price_high", "thin rows", "volume in zone", "share of total volume"),
    )
    for v in reply.vacuums:
        grid.add_row(v.price_low, v.price_high, str(v.rows), v.volume, f"{v.share:.2%}")
    return Group(header, Text(""), grid)


METHOD = QueryMethod(
    name="liquidity_vacuums",
    summary="Price zones the profile crossed on thin volume (runs of rows below threshold × mean row volume)",
    request=LiquidityVacuumsRequest,
    reply=LiquidityVacuumsReply,
    handler=handle,
    render=render,
)
