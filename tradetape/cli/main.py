"""The `tradetape` command: parse arguments, build settings once, configure logging, run.

Each subcommand takes the settings it uses as options derived from `Settings` (an
option wins over its environment variable); `query` takes one sub-subcommand per
registered method, its options derived from that method's request model.

What this module imports at its top declares the commands (argparse, settings, request models);
what runs and draws a command (rich, the services) is imported where that command runs, so a
service started as `tradetape analytics` loads no terminal renderer.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson
from pydantic import ValidationError

from tradetape import __version__
from tradetape.cli.completion import add_completion_command
from tradetape.cli.history_options import add_history_commands
from tradetape.cli.options import add_settings
from tradetape.cli.plot import add_plot_command
from tradetape.cli.query_options import add_query_command
from tradetape.cli.settings import add_settings_command
from tradetape.cli.status_options import add_status_command
from tradetape.cli.web import add_web_command
from tradetape.config_file import ConfigFileError
from tradetape.domain.instruments import Market, market_of
from tradetape.settings import Settings, market_of_all

ALL_SETTINGS = tuple(Settings.model_fields)
STREAM_SETTINGS = ("stream_max_age_hours", "stream_max_bytes", "stream_replicas")
HTTP_SETTINGS = ("http_allowed_hosts", "http_request_timeout_s", "http_max_connections")
METRICS_SETTINGS = ("metrics_port", "metrics_host", *HTTP_SETTINGS)
SHARD_SETTINGS = ("shard", "shard_count", "shard_index")
NATS_SETTINGS = ("nats_url", *(field for field in ALL_SETTINGS if field.startswith("nats_") and field != "nats_url"))
LOG_SETTINGS = ("log_level", "log_format")
SERVICE_SETTINGS = {
    "ingest": (
        *NATS_SETTINGS, "data_dir", "symbols", "binance_ws_url", "binance_rest_url", "retention_days", *LOG_SETTINGS,
        *STREAM_SETTINGS, *METRICS_SETTINGS, *(field for field in ALL_SETTINGS if field.startswith("ingest_")),
    ),
    "persist": (
        *NATS_SETTINGS, "data_dir", "symbols", "retention_days", *LOG_SETTINGS, "rollup_age_s", *STREAM_SETTINGS,
        *SHARD_SETTINGS, *METRICS_SETTINGS,
    ),
    "analytics": (
        *NATS_SETTINGS, "data_dir", "symbols", *LOG_SETTINGS, *SHARD_SETTINGS, *METRICS_SETTINGS,
        *(field for field in ALL_SETTINGS if field.startswith(("query_", "replay_"))),
    ),
}
EXCHANGE_SETTINGS = ("data_dir", "symbols", *LOG_SETTINGS, *NATS_SETTINGS)
QUERY_SETTINGS = (*NATS_SETTINGS, "data_dir")
MCP_SETTINGS = (*NATS_SETTINGS, "data_dir", "mcp_host", "mcp_port", "mcp_token", *HTTP_SETTINGS, *LOG_SETTINGS)
WEB_SETTINGS = (
    "data_dir", "symbols", *(field for field in ALL_SETTINGS if field.startswith("web_")), *HTTP_SETTINGS, *LOG_SETTINGS
)

EXAMPLES = {
    "up": "tradetape up --simulate            # offline, with the bundled exchange simulator",
    "ingest": "NATS_URL=nats://127.0.0.1:4222 tradetape ingest --symbols BTCUSDT",
    "persist": "NATS_URL=nats://127.0.0.1:4222 tradetape persist --shard main",
    "analytics": "NATS_URL=nats://127.0.0.1:4222 tradetape analytics",
    "exchange": "tradetape exchange --port 9443 --rate 200",
    "query": "tradetape query volume_profile BTCUSDT --last 1h --rows 20",
    "replay": "tradetape replay BTCUSDT ETHUSDT --start 2026-12-01T00:00Z --end 2026-12-01T01:00Z -o hour.parquet",
    "schema": "tradetape schema > api.json",
    "mcp": "tradetape mcp            # stdio, as an assistant's MCP configuration starts it",
    "status": "tradetape status --watch 2",
    "plot": "tradetape plot volume_profile BTCUSDT --last 1h -o profile.png",
    "web": "tradetape web            # then open http://127.0.0.1:8766/",
    "settings": "tradetape settings > tradetape.toml   # the settings in force, as a config file",
    "completion": "source <(tradetape completion bash)   # in ~/.bashrc",
    "nats-auth": "tradetape nats-auth > deploy/nats/auth.conf",
}


def _setting_names(field: str) -> str:
    """Where a setting may have come from: its option, its variable, its config file key."""
    field = "nats_url" if field == Settings.env_name("nats_url") else field
    if field not in Settings.model_fields:
        return field
    return f"{Settings.flag(field)} ({Settings.env_name(field)}, or {field} in the config file)"


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {
        field: getattr(args, f"setting_{field}")
        for field in ALL_SETTINGS
        if getattr(args, f"setting_{field}", None) is not None
    }
    return Settings.load(getattr(args, "config", None), **overrides)


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str, example: str = ""
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"example:\n  {example or EXAMPLES[name]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tradetape", description="A gap-free tape of Binance aggregate trades.")
    parser.add_argument("--version", action="version", version=f"tradetape {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = _command(commands, "up", "run NATS, ingest, persist and analytics on this machine")
    up.add_argument(
        "--simulate",
        action="store_true",
        help="use the bundled exchange simulator instead of Binance (no internet needed)",
    )
    add_exchange_source_options(up)
    add_settings(up, ALL_SETTINGS)

    for name, help_text in (
        ("ingest", "run the ingest service: Binance aggTrade streams → JetStream"),
        ("persist", "run the persist service: JetStream → 1-second windows in RocksDB"),
        ("analytics", "run the analytics service: answer tape.query.<method>.<SYMBOL> over NATS"),
    ):
        add_settings(_command(commands, name, help_text), SERVICE_SETTINGS[name])

    exchange = _command(commands, "exchange", "run the Binance-compatible exchange simulator")
    exchange.add_argument("--host", default="127.0.0.1")
    exchange.add_argument("--port", type=int, default=9443, help="0 picks a free port")
    exchange.add_argument("--ready-file", type=Path, help="write the served URLs here as JSON once listening")
    add_exchange_source_options(exchange)
    exchange.add_argument("--drop-every", type=int, default=0, help="skip every Nth trade on the WebSocket")
    exchange.add_argument(
        "--drop-after", type=int, default=0, help="skip every trade after the first N of a connection on the WebSocket"
    )
    exchange.add_argument("--malformed-every", type=int, default=0, help="send a malformed frame after every Nth trade")
    exchange.add_argument("--disconnect-after", type=int, default=0, help="close each connection after N trades")
    exchange.add_argument(
        "--invalid-every", type=int, default=0, help="send a frame with an invalid value after every Nth trade"
    )
    exchange.add_argument("--duplicate-every", type=int, default=0, help="send every Nth trade twice")
    exchange.add_argument("--oversized-every", type=int, default=0, help="send a padded copy after every Nth trade")
    exchange.add_argument("--oversized-bytes", type=int, default=1024 * 1024, help="size of an oversized frame")
    exchange.add_argument(
        "--shutdown-after", type=int, default=0, help="announce serverShutdown after N trades, close 2 s later"
    )
    exchange.add_argument("--silent-after", type=int, default=0, help="go silent (no frames, no pongs) after N trades")
    exchange.add_argument("--rest-lag", type=float, default=0.0, help="REST returns only trades older than S seconds")
    exchange.add_argument(
        "--rest-error", choices=("503", "429", "418", "html"), default="", help="how REST aggTrades calls fail"
    )
    exchange.add_argument("--rest-error-calls", type=int, default=0, help="fail this many REST calls (0: all)")
    exchange.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds on 429 and 418")
    stored = exchange.add_argument_group("a stored range instead (a bot backtested unchanged)")
    stored.add_argument(
        "--from-store",
        action="store_true",
        help="serve the --symbols' stored trades of --start..--end (replayed over NATS, --speed paced) instead of "
        "generating or replaying files; they start when a first client subscribes",
    )
    stored.add_argument("--start", default=None, help="with --from-store: range start, epoch ms or ISO-8601")
    stored.add_argument("--end", default=None, help="with --from-store: range end, epoch ms or ISO-8601")
    add_settings(exchange, EXCHANGE_SETTINGS)

    add_query_command(_command(commands, "query", "ask the analytics service one question"), QUERY_SETTINGS)
    from tradetape.cli.replay import add_replay_command

    add_replay_command(
        _command(commands, "replay", "stream stored trades back: to a file, stdout or a NATS subject"), QUERY_SETTINGS
    )
    _command(commands, "schema", "print the JSON Schema of the query API")
    add_status_command(_command(commands, "status", "NATS, stream, services and symbols at a glance"), QUERY_SETTINGS)
    add_plot_command(_command(commands, "plot", "draw a chart of a query: PNG or SVG by extension"), QUERY_SETTINGS)
    add_history_commands(
        lambda name, text, example: _command(commands, name, text, example), add_settings, NATS_SETTINGS
    )
    mcp = _command(commands, "mcp", "serve every query method as an MCP tool for assistants (stdio by default)")
    mcp.add_argument("--http", action="store_true", help="serve streamable HTTP at http://<mcp host>:<mcp port>/mcp")
    add_settings(mcp, MCP_SETTINGS)
    web = _command(commands, "web", "serve the live web page (it talks to NATS over WebSocket)")
    add_web_command(web, WEB_SETTINGS)
    settings_command = _command(commands, "settings", "print the settings in force, or their reference")
    add_settings_command(settings_command, ALL_SETTINGS)
    add_completion_command(_command(commands, "completion", "print a shell completion script (bash, zsh or fish)"))
    _command(commands, "nats-auth", "print the NATS users and permissions of every role, for nats-server to include")
    return parser


def add_exchange_source_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("simulated exchange")
    group.add_argument(
        "--replay",
        action="append",
        type=Path,
        default=None,
        metavar="FILE",
        help="data.binance.vision aggTrades CSV to replay (repeatable); with neither --replay nor --rate, "
        "the bundled BTCUSDT file is replayed and other symbols are generated at 20/s",
    )
    group.add_argument("--speed", type=float, default=None, help="replay speed factor (default: as fast as possible)")
    group.add_argument("--original-times", action="store_true", help="keep the file's trade times")
    group.add_argument(
        "--rate", type=float, default=None, help="generated trades/s for each symbol without a replay file (default 20)"
    )
    group.add_argument("--seed", type=int, default=1)
    group.add_argument(
        "--history-days",
        type=int,
        default=7,
        help="finished days of history the simulator invents before its first start, for fetch-history (default 7)",
    )


def exchange_source_args(args: argparse.Namespace) -> list[str]:
    """The simulated-exchange options given to `up`, as arguments of the `tradetape exchange` child."""
    argv: list[str] = []
    for path in args.replay or ():
        argv += ["--replay", str(Path(path).resolve())]
    if args.speed is not None:
        argv += ["--speed", str(args.speed)]
    if args.original_times:
        argv.append("--original-times")
    if args.rate is not None:
        argv += ["--rate", str(args.rate)]
    argv += ["--seed", str(args.seed), "--history-days", str(args.history_days)]
    return argv


DEMO_SYMBOLS = ("BTCUSDT", "ETHUSDT", "um:BTCUSDT", "cm:BTCUSD_PERP")
"""What the offline demo trades when no symbols are set: spot, USD-M and COIN-M all show."""


def demo_settings(settings: Settings) -> Settings:
    """The offline demo's settings (`up --simulate`, `exchange`): `DEMO_SYMBOLS` unless symbols were set."""
    if "symbols" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"symbols": DEMO_SYMBOLS})


def simulated_symbols(settings: Settings) -> tuple[str, ...]:
    """The instruments the simulator lists: every one named, and for a market named by its `ALL` the demo's.

    The simulator is the exchange, so `um:ALL` asks it what USD-M trades: the demo's USD-M instruments.
    """
    named = tuple(s for s in settings.symbols if market_of_all(s) is None)
    whole = settings.markets_from_exchange
    return (*named, *(s for s in DEMO_SYMBOLS if market_of(s) in whole and s not in named)) or DEMO_SYMBOLS


def exchange_config(args: argparse.Namespace, settings: Settings) -> object:
    from tradetape.services.exchange import BUNDLED_REPLAY, ExchangeConfig, FaultConfig
    from tradetape.services.exchange.stored import replayed

    if args.replay:
        replay: tuple[Path, ...] = tuple(args.replay)
    else:
        replay = () if args.rate is not None else (BUNDLED_REPLAY,)
    from_store = getattr(args, "from_store", False)  # `up --simulate` has no --from-store
    symbols = simulated_symbols(settings)
    return ExchangeConfig(
        host=args.host,
        port=args.port,
        symbols=symbols,
        replay=() if from_store else replay,
        speed=args.speed,
        original_times=args.original_times,
        rate=args.rate if args.rate is not None else 20.0,
        seed=args.seed,
        state_dir=None if from_store else settings.data_dir / "exchange",
        history_days=0 if from_store else args.history_days,
        stored=replayed(settings, symbols, args.start, args.end, args.speed) if from_store else None,
        faults=FaultConfig(
            drop_every=args.drop_every,
            drop_after=args.drop_after,
            malformed_every=args.malformed_every,
            disconnect_after=args.disconnect_after,
            invalid_every=args.invalid_every,
            duplicate_every=args.duplicate_every,
            oversized_every=args.oversized_every,
            oversized_bytes=args.oversized_bytes,
            shutdown_after=args.shutdown_after,
            silent_after=args.silent_after,
            rest_lag_s=args.rest_lag,
            rest_error=args.rest_error,
            rest_error_calls=args.rest_error_calls,
            retry_after_s=args.retry_after,
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "completion":
        from tradetape.cli.completion import run_completion

        return run_completion(args, parser)
    if args.command == "schema":
        from tradetape.api.registry import api_schema

        sys.stdout.write(orjson.dumps(api_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if args.command == "nats-auth":
        from tradetape.bus.roles import auth_conf

        sys.stdout.write(auth_conf())
        return 0
    try:
        settings = settings_from(args)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_setting_names(str(e['loc'][0])) if e['loc'] else 'settings'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        print(f"tradetape: invalid settings: {problems}", file=sys.stderr)
        return 2
    except ConfigFileError as exc:
        print(f"tradetape: {exc}", file=sys.stderr)
        return 2
    from tradetape.runtime.logs import configure_logging

    if args.command == "query":
        from tradetape.cli.query import run_query

        configure_logging("ERROR")
        return run_query(args, settings)
    if args.command == "replay":
        from tradetape.cli.replay import run_replay

        configure_logging("WARNING")
        return run_replay(args, settings)
    if args.command == "plot":
        from tradetape.cli.plot import run_plot

        configure_logging("ERROR")
        return run_plot(args, settings)
    if args.command in ("import", "fetch-history", "export", "repair"):
        from tradetape.cli.history import run_history

        configure_logging("WARNING")
        return run_history(args, settings)
    if args.command == "web":
        from tradetape.cli.web import run_web

        configure_logging(settings.log_level, settings.log_format)
        return run_web(args, settings)
    if args.command == "settings":
        from tradetape.cli.settings import run_settings

        return run_settings(args, settings)
    if args.command == "status":
        from tradetape.cli.status import run_status

        configure_logging("ERROR")
        return run_status(args, settings)
    configure_logging(settings.log_level, settings.log_format)
    try:
        return asyncio.run(_run(args, settings))
    except KeyboardInterrupt:
        return 130


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "mcp":
        from tradetape import mcp_server

        if args.http:
            from tradetape.ground.hosts import HttpAccessError

            try:
                await mcp_server.serve_http(settings, settings.mcp_host, settings.mcp_port)
            except HttpAccessError as exc:
                print(f"tradetape mcp: {exc}", file=sys.stderr)
                return 2
        else:
            await mcp_server.serve_stdio(settings)
        return 0
    if args.command == "up":
        from tradetape.runtime.supervisor import run_up

        if args.simulate:
            return await run_up(demo_settings(settings), exchange_source_args(args))
        return await run_up(settings, None)
    if args.command == "exchange":
        return await _run_exchange(args, settings)
    return await _run_service(args.command, settings)


async def _run_exchange(args: argparse.Namespace, settings: Settings) -> int:
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


SERVICE_CLASSES = {
    "ingest": ("tradetape.services.ingest.service", "IngestService"),
    "persist": ("tradetape.services.persist.service", "PersistService"),
    "analytics": ("tradetape.services.analytics.service", "AnalyticsService"),
}


async def _run_service(name: str, settings: Settings) -> int:
    """One service until SIGINT/SIGTERM; the CLI sits on top of the services, so it imports them here."""
    import contextlib

    from nats.aio.client import Client
    from nats.errors import Error as NatsError

    from tradetape.bus.auth import NatsAuth
    from tradetape.bus.connect import resolve_nats_url
    from tradetape.runtime.collector import settle_after_start
    from tradetape.runtime.http_access import HttpAccess
    from tradetape.runtime.lifecycle import run_with_nats
    from tradetape.runtime.metrics import MetricsPortError, MetricsServer, announce

    module, class_name = SERVICE_CLASSES[name]
    service_class = getattr(importlib.import_module(module), class_name)

    async def serve(nc: Client, stop: asyncio.Event) -> None:
        service = service_class(settings, nc)
        metrics_server.attach(service.metrics)
        presence = None
        if name != "analytics":  # analytics is a micro service itself
            # With ALL the list is the exchange's, learned by the service itself: "ALL" says so
            # (status takes the symbols from the shard manifests and analytics instead).
            own = settings.symbols if name == "ingest" or settings.symbols_from_exchange else settings.shard_symbols
            metadata = {"symbols": ",".join(own)}
            if name == "persist":
                metadata["shard"] = settings.shard
            metadata["metrics_port"] = str(settings.metrics_port)
            presence = await announce(nc, name, metadata, service.replies)
        settle_after_start()
        try:
            await service.run(stop)
        finally:
            if presence is not None:
                with contextlib.suppress(NatsError, OSError, TimeoutError):
                    await presence.stop()

    host, port = settings.metrics_host, settings.metrics_port
    metrics_server = MetricsServer(host, port, HttpAccess.for_server(settings, host, port))
    try:
        await metrics_server.start()
    except MetricsPortError as exc:
        print(f"tradetape {name}: {exc} (--metrics-port, TRADETAPE_METRICS_PORT)", file=sys.stderr)
        return 1
    try:
        await run_with_nats(resolve_nats_url(settings), f"tradetape-{name}", serve, NatsAuth.from_settings(settings))
    finally:
        await metrics_server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
