"""The `tradetape` command: parse arguments, build settings once, configure logging, run.

Options carry the names of the environment variables (`--nats-url` = `NATS_URL`,
`--data-dir` = `TRADETAPE_DATA_DIR`, ...); an option given on the command line wins.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from services.tape.logs import configure_logging
from services.tape.settings import Settings

_SETTINGS_OPTIONS = {
    "nats_url": ("--nats-url", "NATS server URL (NATS_URL); unset: `up` embeds one"),
    "data_dir": ("--data-dir", "data directory (TRADETAPE_DATA_DIR, default ./data)"),
    "symbols": ("--symbols", "comma-separated symbols (TRADETAPE_SYMBOLS, default BTCUSDT,ETHUSDT)"),
    "binance_ws_url": ("--binance-ws-url", "exchange WebSocket URL (TRADETAPE_BINANCE_WS_URL)"),
    "binance_rest_url": ("--binance-rest-url", "exchange REST URL (TRADETAPE_BINANCE_REST_URL)"),
    "retention_days": ("--retention-days", "days of trades kept (TRADETAPE_RETENTION_DAYS, default 7)"),
    "shard": ("--shard", "persist shard name (TRADETAPE_SHARD, default main)"),
    "log_level": ("--log-level", "DEBUG, INFO, WARNING (TRADETAPE_LOG_LEVEL)"),
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    for dest, (flag, help_text) in _SETTINGS_OPTIONS.items():
        common.add_argument(flag, dest=dest, default=None, help=help_text)

    parser = argparse.ArgumentParser(prog="tradetape", description="A gap-free tape of Binance aggregate trades.")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", parents=[common], help="run NATS, ingest, persist and analytics on this machine")
    up.add_argument(
        "--simulate",
        action="store_true",
        help="use the bundled exchange simulator instead of Binance (no internet needed)",
    )
    _add_exchange_source_options(up)
    for name, help_text in (
        ("ingest", "Binance → JetStream"),
        ("persist", "JetStream → RocksDB"),
        ("analytics", "answer queries over NATS"),
    ):
        commands.add_parser(name, parents=[common], help=help_text)

    exchange = commands.add_parser("exchange", parents=[common], help="run the Binance-compatible simulator")
    exchange.add_argument("--host", default="127.0.0.1")
    exchange.add_argument("--port", type=int, default=9443)
    _add_exchange_source_options(exchange)
    exchange.add_argument("--drop-every", type=int, default=0, help="skip every Nth trade on the WebSocket")
    exchange.add_argument("--malformed-every", type=int, default=0, help="send a malformed frame after every Nth trade")
    exchange.add_argument("--disconnect-after", type=int, default=0, help="close each connection after N trades")

    query = commands.add_parser("query", parents=[common], help="ask the analytics service")
    query.add_argument("method", help="volume_profile, liquidity_vacuums, coverage")
    query.add_argument("symbol")
    query.add_argument("--last", help='duration ending now, e.g. "15m", "1h", "24h"')
    query.add_argument("--start", help="epoch ms or ISO-8601, inclusive")
    query.add_argument("--end", help="epoch ms or ISO-8601, exclusive")
    query.add_argument("--row-size", help='volume_profile row height, e.g. "10"')
    query.add_argument("--rows", type=int, help="volume_profile row count when --row-size is absent")
    query.add_argument("--value-area", type=float, help="value area share, default 0.7")
    query.add_argument("--min-trades", type=int, help="fewest trades for a profile, default 1000")
    query.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="any other request field (repeatable)"
    )
    query.add_argument("--json", action="store_true", help="print the raw JSON reply")
    query.add_argument("--timeout", type=float, default=30.0)

    commands.add_parser("schema", help="print the JSON Schema of the query API")
    return parser


def _add_exchange_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--replay",
        action="append",
        type=Path,
        default=None,
        metavar="FILE",
        help="data.binance.vision aggTrades CSV to replay (repeatable); with neither --replay nor --rate, "
        "the bundled BTCUSDT file is replayed and other symbols are generated at 20/s",
    )
    parser.add_argument("--speed", type=float, default=None, help="replay speed factor (default: as fast as possible)")
    parser.add_argument("--original-times", action="store_true", help="keep the file's trade times")
    parser.add_argument(
        "--rate", type=float, default=None, help="generated trades/s for each symbol without a replay file (default 20)"
    )
    parser.add_argument("--seed", type=int, default=1)


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {dest: getattr(args, dest) for dest in _SETTINGS_OPTIONS if getattr(args, dest, None) is not None}
    return Settings(**overrides)


def exchange_config(args: argparse.Namespace, settings: Settings, *, port: int, host: str = "127.0.0.1") -> Any:
    from services.exchange import BUNDLED_REPLAY, ExchangeConfig, FaultConfig

    if args.replay:
        replay: tuple[Path, ...] = tuple(args.replay)
    else:
        replay = () if args.rate is not None else (BUNDLED_REPLAY,)
    return ExchangeConfig(
        host=host,
        port=port,
        symbols=settings.symbols,
        replay=replay,
        speed=args.speed,
        original_times=args.original_times,
        rate=args.rate if args.rate is not None else 20.0,
        seed=args.seed,
        faults=FaultConfig(
            drop_every=getattr(args, "drop_every", 0),
            malformed_every=getattr(args, "malformed_every", 0),
            disconnect_after=getattr(args, "disconnect_after", 0),
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "schema":
        from services.analytics.queries import api_schema

        sys.stdout.write(orjson.dumps(api_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    try:
        settings = settings_from(args)
    except ValidationError as exc:
        print(f"tradetape: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    if args.command == "query":
        from services.query_client import run_query

        configure_logging("ERROR")
        return run_query(args, settings)
    configure_logging(settings.log_level)
    try:
        return asyncio.run(_run(args, settings))
    except KeyboardInterrupt:
        return 130


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from services.tape.lifecycle import run_with_nats
    from services.tape.nats_client import resolve_nats_url

    if args.command == "up":
        from services.up import run_up

        return await run_up(settings, exchange_config(args, settings, port=0) if args.simulate else None)
    if args.command == "exchange":
        from services.exchange import Exchange
        from services.tape.lifecycle import stop_on_signals

        stop = asyncio.Event()
        stop_on_signals(stop)
        async with Exchange(exchange_config(args, settings, port=args.port, host=args.host)) as exchange:
            print(
                f"exchange simulator on {exchange.ws_url} (WebSocket) and {exchange.rest_url} (REST)", file=sys.stderr
            )
            await stop.wait()
        return 0
    url = resolve_nats_url(settings)
    if args.command == "ingest":
        from services.ingest.service import IngestService

        await run_with_nats(url, "tradetape-ingest", lambda nc, stop: IngestService(settings, nc).run(stop))
    elif args.command == "persist":
        from services.persist.service import PersistService

        await run_with_nats(url, "tradetape-persist", lambda nc, stop: PersistService(settings, nc).run(stop))
    elif args.command == "analytics":
        from services.analytics.service import AnalyticsService

        await run_with_nats(url, "tradetape-analytics", lambda nc, stop: AnalyticsService(settings, nc).run(stop))
    return 0


if __name__ == "__main__":
    sys.exit(main())
