"""`tradetape query <method> <SYMBOL>`: one registered method, its options from its request model.

The reply is rendered by the method's own `render` (rich; plain text when not a
terminal) or printed as JSON with `--json`. A reply with a `next_cursor` is followed, on
stderr, by the command of the next page: the same command with every option given
(`--limit`, the range, `--json`, settings; secrets left out) and `--cursor`. Exit codes:
0 a reply, 1 an error reply or a symbol that is none (printed as one readable line), 2
NATS or the service cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from collections.abc import Sequence
from typing import Any, get_args, get_origin

import orjson
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from rich.console import Console

from tradetape.api.errors import QueryError
from tradetape.api.registry import QueryMethod, methods
from tradetape.api.render import iso_time
from tradetape.bus.auth import redact_url
from tradetape.client import TapeClient, TapeUnavailable
from tradetape.domain.symbols import SymbolError, symbol_from_input
from tradetape.settings import Settings

DEFAULT_TIMEOUT_S = 30.0
CURSOR = "cursor"
PIPE_WIDTH = 200
"""Columns when stdout is not a terminal, so tables are never cut."""
TIME_DETAILS = ("start", "end", "first_time", "last_time")


def add_query_command(parser: argparse.ArgumentParser, settings_fields: Sequence[str]) -> None:
    from tradetape.cli.main import add_settings

    by_method = parser.add_subparsers(dest="method", required=True, metavar="METHOD")
    for name, method in methods().items():
        sub = by_method.add_parser(
            name,
            help=method.summary,
            description=method.summary,
            epilog=f"example:\n  tradetape query {name} BTCUSDT --last 1h",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("symbol", metavar="SYMBOL", help="e.g. BTCUSDT")
        fields = sub.add_argument_group("request (times: epoch ms or ISO-8601, UTC unless a zone is given)")
        for field, info in method.request.model_fields.items():
            fields.add_argument(
                f"--{field.replace('_', '-')}", dest=f"field_{field}", metavar=field.upper(), help=_field_help(info)
            )
        sub.add_argument(
            "--param", action="append", default=[], metavar="KEY=VALUE", help="any request field, as JSON or text"
        )
        sub.add_argument("--json", action="store_true", help="print the raw JSON reply")
        sub.add_argument(
            "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait for the reply (default 30)"
        )
        add_settings(sub, settings_fields)


def _field_help(info: FieldInfo) -> str:
    text = info.description or ""
    if info.default is not PydanticUndefined and info.default is not None:
        text += f" (default {info.default})"
    return text


def request_fields(args: argparse.Namespace, method: QueryMethod[Any, Any]) -> dict[str, Any]:
    """The request as given on the command line; the method's model checks it before it is sent."""
    body: dict[str, Any] = {}
    for field, info in method.request.model_fields.items():
        value = getattr(args, f"field_{field}", None)
        if value is not None:
            body[field] = value.split(",") if get_origin(info.annotation) is list else value
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise QueryError("invalid_request", f"--param {item!r} is not KEY=VALUE")
        try:
            body[key] = orjson.loads(value)
        except orjson.JSONDecodeError:
            body[key] = value
    return body


def run_query(args: argparse.Namespace, settings: Settings) -> int:
    method = methods()[args.method]
    try:
        symbol = symbol_from_input(args.symbol)
    except SymbolError as exc:
        print(f"tradetape query: {exc}", file=sys.stderr)
        return 1
    try:
        reply = asyncio.run(_ask(settings, method, symbol, request_fields(args, method), args.timeout))
    except QueryError as exc:
        print(f"tradetape query: {describe_error(exc, method)}", file=sys.stderr)
        return 1
    except TapeUnavailable as exc:
        print(f"tradetape query: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(reply.model_dump_json(indent=2))
    else:
        console_for_stdout().print(method.render(reply))
    next_cursor = getattr(reply, "next_cursor", None)
    if isinstance(next_cursor, str):
        print(f"next page: {next_page_command(args, method, symbol, next_cursor)}", file=sys.stderr)
    return 0


def next_page_command(args: argparse.Namespace, method: QueryMethod[Any, Any], symbol: str, cursor: str) -> str:
    """This command again, every option the user gave repeated but secrets and the old cursor, and `cursor`."""
    words = ["tradetape", "query", method.name, symbol]
    for field in method.request.model_fields:
        value = getattr(args, f"field_{field}", None)
        if value is not None and field != CURSOR:
            words += [f"--{field.replace('_', '-')}", value]
    words += [w for item in args.param if item.partition("=")[0] != CURSOR for w in ("--param", item)]
    if args.json:
        words.append("--json")
    if args.timeout != DEFAULT_TIMEOUT_S:
        words += ["--timeout", f"{args.timeout:g}"]
    for field, info in Settings.model_fields.items():
        value = getattr(args, f"setting_{field}", None)
        secret = SecretStr in get_args(info.annotation) or (isinstance(value, str) and redact_url(value) != value)
        if value is not None and not secret:
            words += [Settings.flag(field), value]
    return shlex.join([*words, f"--{CURSOR}", cursor])


async def _ask(
    settings: Settings, method: QueryMethod[Any, Any], symbol: str, fields: dict[str, Any], timeout: float
) -> BaseModel:
    async with await TapeClient.connect(settings, timeout=timeout) as tape:
        try:
            reply: BaseModel = await tape.query(method.name, symbol, **fields)
        except TapeUnavailable as exc:
            served = await tape.served()
            raise TapeUnavailable(f"{exc}: {describe_served(served, method.name, symbol)}") from None
        return reply


def describe_served(served: dict[str, list[str]], method: str, symbol: str) -> str:
    if not served:
        return "no analytics worker is running (start `tradetape up` or `tradetape analytics`)"
    if symbol not in served:
        return f"{symbol} is not served; served symbols: {', '.join(served)}"
    return f"{symbol} has no method {method}; its methods: {', '.join(served[symbol])}"


def describe_error(exc: QueryError, method: QueryMethod[Any, Any]) -> str:
    """An error reply as one readable line: the code, the reason per field, times in ISO-8601, a hint."""
    line = f"error {exc.code}: {exc.message}"
    details = {key: value for key, value in exc.details.items() if key != "errors"}
    if details:
        line += " (" + ", ".join(_detail(key, value) for key, value in details.items()) + ")"
    if exc.code == "insufficient_trades":
        line += (
            f". Lower --min-trades (e.g. --min-trades {exc.details.get('found', 0) or 1}) or widen the range"
            " (e.g. --last 24h); the tape holds trades from the first `tradetape up` on."
        )
    return line


def _detail(key: str, value: Any) -> str:
    if key in TIME_DETAILS and isinstance(value, int):
        return f"{key}={value} ({iso_time(value)})"
    return f"{key}={value}"


def console_for_stdout() -> Console:
    if sys.stdout.isatty():
        return Console()
    return Console(width=int(os.environ.get("COLUMNS", PIPE_WIDTH)), no_color=True, highlight=False)
