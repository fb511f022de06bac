"""`tradetape exchange`: the simulator on its port until SIGINT/SIGTERM, its URLs announced."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

import orjson

from tradetape.cli.exchange_options import demo_settings, exchange_config
from tradetape.domain.instruments import Market
from tradetape.settings import Settings

if TYPE_CHECKING:
    from tradetape.api.errors import QueryError


async def run_exchange(args: argparse.Namespace, settings: Settings) -> int:
    from tradetape.ground.url_files import write_url_file
    from tradetape.runtime.collector import settle_after_start
    from tradetape.runtime.lifecycle import stop_on_signals
    from tradetape.services.exchange import Exchange
    from tradetape.settings import MARKET_URL_FIELDS

    if args.from_store:
        if args.start is None or args.end is None:
            print("tradetape exchange: --from-store needs --start and --end", file=sys.stderr)
            return 2
        if (refused := _unreplayable(args.start, args.end, settings)) is not None:
            print(f"tradetape exchange: {refused.code}: {refused.message}", file=sys.stderr)
            return 2
    stop = asyncio.Event()
    stop_on_signals(stop)
    async with Exchange(exchange_config(args, demo_settings(settings))) as exchange:  # type: ignore[arg-type]
        if args.ready_file is not None:  # the settings pointing each market's clients at it
            urls: dict[str, str] = {}
            for market, (ws_field, rest_field) in MARKET_URL_FIELDS.items():
                urls[ws_field], urls[rest_field] = exchange.urls(market)
            write_url_file(args.ready_file, orjson.dumps(urls).decode())
        print(f"exchange simulator on {exchange.ws_url} (WebSocket) and {exchange.rest_url} (REST)", file=sys.stderr)
        print(
            f"USD-M at {exchange.urls(Market.UM)[0]}, COIN-M at {exchange.urls(Market.CM)[0]} (same REST)",
            file=sys.stderr,
        )
        settle_after_start()
        await stop.wait()
    return 0


def _unreplayable(start: str, end: str, settings: Settings) -> QueryError | None:
    """Why the workers would refuse to replay `[start, end)` (checked as they check it), before the simulator
    listens: the feed starts only when a first bot subscribes, and a refusal then is one log line."""
    from tradetape.api.errors import QueryError, check_range_span
    from tradetape.api.replay import ReplayRequest

    try:
        request = ReplayRequest.parse({"start": start, "end": end})
        check_range_span(request.start_ms, request.end_ms, settings.query_max_range_days)
    except QueryError as exc:
        return exc
    return None
