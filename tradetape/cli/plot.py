"""`tradetape plot volume_profile|bars|footprint|market_profile SYMBOL ... -o FILE`: a chart of the replies, PNG or
SVG."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradetape.cli.options import add_settings
from tradetape.settings import Settings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from tradetape.client import TapeClient

CHARTS = ("volume_profile", "bars", "footprint", "market_profile")
TPO_ROWS = 40
"""`market_profile`'s rows when neither --rows nor --row-size is given: its letters stay readable (the method's own
default, a hundredth of the range, gives rows too thin to letter)."""


def add_plot_command(parser: argparse.ArgumentParser, settings_fields: Sequence[str]) -> None:

    parser.add_argument(
        "chart", choices=CHARTS,
        help="volume_profile (with vacuums), bars (with cumulative delta), footprint or market_profile (TPO)",
    )
    parser.add_argument("symbol", metavar="SYMBOL")
    parser.add_argument("-o", "--output", type=Path, required=True, help="FILE.png or FILE.svg")
    parser.add_argument("--last", help='duration ending now, e.g. "1h" (default: the last hour)')
    parser.add_argument("--start", help="epoch ms or ISO-8601 (UTC unless a zone is given)")
    parser.add_argument("--end", help="epoch ms or ISO-8601, exclusive")
    parser.add_argument("--row-size", help="volume_profile, footprint, market_profile: row height, a decimal string")
    parser.add_argument(
        "--rows",
        help=f"row count when --row-size is absent: volume_profile's; market_profile's (default {TPO_ROWS});"
        " footprint: of its tallest bar",
    )
    parser.add_argument("--min-trades", help="volume_profile: fewest trades (default 1000)")
    parser.add_argument("--interval", default="5m", help='bars, footprint: interval, "1s" to "1d" (default 5m)')
    parser.add_argument("--imbalance", help="footprint: buy (sell) ≥ this × sell (buy) diagonally (default 3)")
    parser.add_argument("--period", help='market_profile: TPO period, "1s" to "1d" (default 30m)')
    parser.add_argument("--timeout", type=float, default=30.0)
    add_settings(parser, settings_fields)


def run_plot(args: argparse.Namespace, settings: Settings) -> int:
    from tradetape.api.errors import QueryError
    from tradetape.cli.exit_codes import no_reply
    from tradetape.client import TapeUnavailable

    try:
        path = asyncio.run(_plot(args, settings))
    except (QueryError, TapeUnavailable) as exc:
        return no_reply("plot", exc, lambda error: f"error {error.code}: {error.message}")
    except ValueError as exc:
        print(f"tradetape plot: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


async def _plot(args: argparse.Namespace, settings: Settings) -> Path:
    from tradetape import plot
    from tradetape.client import TapeClient

    if args.output.suffix.lower() not in plot.FORMATS:
        raise ValueError(f"the output must end in {' or '.join(plot.FORMATS)}: {args.output}")
    async with await TapeClient.connect(settings, timeout=args.timeout) as tape:
        figure = await chart_figure(tape, args)
    return plot.save(figure, args.output)


async def chart_figure(tape: TapeClient, args: argparse.Namespace) -> Figure:
    """The chart `args` (parsed `tradetape plot` arguments) name, from the replies `tape` gets."""
    from tradetape import plot

    span = {key: value for key in ("last", "start", "end") if (value := getattr(args, key)) is not None}
    rows = {key: value for key in ("row_size", "rows") if (value := getattr(args, key)) is not None}
    if args.chart == "volume_profile":
        fields: dict[str, Any] = {**span}
        if args.min_trades is not None:
            fields["min_trades"] = args.min_trades
        profile = await tape.query("volume_profile", args.symbol, **fields, **rows)
        vacuums = await tape.query("liquidity_vacuums", args.symbol, **fields, row_size=profile.row_size)
        return plot.volume_profile_figure(profile, vacuums)
    if args.chart == "footprint":
        imbalance = {} if args.imbalance is None else {"imbalance": args.imbalance}
        footprint = await tape.query("footprint", args.symbol, **span, **rows, **imbalance, interval=args.interval)
        return plot.footprint_figure(footprint)
    if args.chart == "market_profile":
        period = {} if args.period is None else {"period": args.period}
        profile = await tape.query("market_profile", args.symbol, **span, **(rows or {"rows": TPO_ROWS}), **period)
        return plot.market_profile_figure(profile)
    bars = await tape.query("bars", args.symbol, **span, interval=args.interval)
    flow = await tape.query("flow", args.symbol, **span, interval=args.interval)
    return plot.bars_figure(bars, flow)
