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
import sys
from collections.abc import Sequence

import orjson
from pydantic import ValidationError

from tradetape import __version__
from tradetape.cli.completion import add_completion_command
from tradetape.cli.exchange_options import (
    add_exchange_options,
    add_exchange_source_options,
    demo_settings,
    exchange_source_args,
)
from tradetape.cli.history_options import add_history_commands
from tradetape.cli.options import add_settings
from tradetape.cli.plot import add_plot_command
from tradetape.cli.query_options import add_query_command
from tradetape.cli.replay_options import add_replay_command
from tradetape.cli.settings import add_settings_command
from tradetape.cli.status_options import add_status_command
from tradetape.cli.web import add_web_command
from tradetape.config_file import ConfigFileError
from tradetape.settings import Settings

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


def declares_methods(argv: Sequence[str] | None) -> bool:
    """Whether parsing `argv` may reach a query method (`None`: any arguments may come). The top level takes no
    option with a value, so its first word is the command: only `query` and `completion` need the methods,
    whose declaring imports every method's request model (about half of what `tradetape --help` would load)."""
    if argv is None:
        return True
    return next((arg for arg in argv if not arg.startswith("-")), None) in ("query", "completion")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line, or, given the arguments about to be parsed, what parsing them needs."""
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
    add_exchange_options(exchange)
    add_settings(exchange, EXCHANGE_SETTINGS)

    add_query_command(
        _command(commands, "query", "ask the analytics service one question"),
        QUERY_SETTINGS,
        declare=declares_methods(argv),
    )
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
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
        from tradetape.cli.exchange import run_exchange

        return await run_exchange(args, settings)
    from tradetape.cli.services import run_service

    return await run_service(args.command, settings)


if __name__ == "__main__":
    sys.exit(main())
