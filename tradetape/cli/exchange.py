"""`tradetape exchange`: the simulator on its port until SIGINT/SIGTERM, its URLs announced."""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson

from tradetape.cli.exchange_options import demo_settings, exchange_config
from tradetape.domain.instruments import Market
from tradetape.settings import Settings


async def run_exchange(args: argparse.Namespace, settings: Settings) -> int:
    from tradetape.ground.url_files import write_url_file
    from tradetape.runtime.lifecycle import stop_on_signals
    from tradetape.services.exchange import Exchange
    from tradetape.settings import MARKET_URL_FIELDS

    if args.from_store:
        from tradetape.api.models import parse_time_ms

        try:
            if args.start is None or args.end is None:
                raise ValueError("--from-store needs --start and --end")
            parse_time_ms(args.start)
            parse_time_ms(args.end)
        except ValueError as exc:
            print(f"tradetape exchange: {exc}", file=sys.stderr)
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
        await stop.wait()
    return 0
