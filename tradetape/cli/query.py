"""`tradetape query <method> <SYMBOL>` run: ask one registered method, show its reply (options: `query_options`).

The reply is rendered by the method's renderer (`tradetape.cli.renderers`; rich, plain text
when not a terminal) or printed as JSON with `--json`. A reply with a `next_cursor` is followed, on
stderr, by the command of the next page: the same command with every option given
(`--limit`, the range, `--json`, settings; secrets left out) and `--cursor`. Exit codes:
0 a reply, 1 an error reply or a symbol that is none (printed as one readable line), 2
NATS or the service cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import sys
from typing import Any, get_args, get_origin

import orjson
from pydantic import BaseModel, SecretStr

from tradetape.api.errors import QueryError
from tradetape.api.methods.coverage import CoverageReply
from tradetape.api.query_method import QueryMethod
from tradetape.api.registry import methods
from tradetape.api.times import iso_time
from tradetape.cli.console import PIPE_WIDTH as PIPE_WIDTH  # re-exported: the width a reply is drawn at in a pipe
from tradetape.cli.console import console_for_stdout
from tradetape.cli.exit_codes import no_reply
from tradetape.cli.query_options import DEFAULT_TIMEOUT_S
from tradetape.cli.renderers import renderer
from tradetape.client import TapeClient, TapeError, TapeUnavailable
from tradetape.domain.instruments import instrument_from_input
from tradetape.domain.symbols import SymbolError
from tradetape.errors import TradetapeError
from tradetape.ground.redaction import redact_url
from tradetape.settings import Settings

CURSOR = "cursor"
TIME_DETAILS = ("start", "end", "first_time", "last_time")


def _list_value(text: str) -> Any:
    """A list option as typed: a JSON list (`[0.5, 1]`), else comma-separated items (`0.5,1`)."""
    if text.lstrip().startswith("["):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            raise QueryError("invalid_request", f"{text!r} is not a JSON list (or give items as 0.5,1)") from None
    return [item.strip() for item in text.split(",")]


def request_fields(args: argparse.Namespace, method: QueryMethod[Any, Any]) -> dict[str, Any]:
    """The request as given on the command line; the method's model checks it before it is sent."""
    body: dict[str, Any] = {}
    for field, info in method.request.model_fields.items():
        value = getattr(args, f"field_{field}", None)
        if value is not None:
            body[field] = _list_value(value) if get_origin(info.annotation) is list else value
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
        symbol = instrument_from_input(args.symbol)
    except SymbolError as exc:
        print(f"tradetape query: {exc}", file=sys.stderr)
        return 1
    try:
        fields = request_fields(args, method)
        method.parse_request(fields)  # a bad request is one line before anything connects
        reply = asyncio.run(_ask(settings, method, symbol, fields, args.timeout))
    except Refused as exc:
        print(f"tradetape query: {describe_error(exc.error, method, exc.held)}", file=sys.stderr)
        return 1
    except (QueryError, TapeUnavailable) as exc:
        return no_reply("query", exc, lambda error: describe_error(error, method))
    if args.json:
        print(reply.model_dump_json(indent=2))
    else:
        console_for_stdout().print(renderer(method.name)(reply))
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


class Refused(TradetapeError):
    """An error reply, with what the tape holds of the symbol (None: not asked, or not known)."""

    def __init__(self, error: QueryError, held: CoverageReply | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.held = held


async def _ask(
    settings: Settings, method: QueryMethod[Any, Any], symbol: str, fields: dict[str, Any], timeout: float
) -> BaseModel:
    async with await TapeClient.connect(settings, timeout=timeout) as tape:
        try:
            reply: BaseModel = await tape.query(method.name, symbol, **fields)
        except QueryError as exc:
            held = None
            if exc.code == "insufficient_trades":  # what the tape holds decides which advice helps
                with contextlib.suppress(TapeError):
                    held = await tape.query("coverage", symbol)
            raise Refused(exc, held) from None
        return reply


def describe_error(exc: QueryError, method: QueryMethod[Any, Any], held: CoverageReply | None = None) -> str:
    """An error reply as one readable line: the code, the reason per field, times in ISO-8601, advice that helps."""
    line = f"error {exc.code}: {exc.message}"
    details = {key: value for key, value in exc.details.items() if key != "errors"}
    if details:
        line += " (" + ", ".join(_detail(key, value) for key, value in details.items()) + ")"
    if exc.code == "insufficient_trades":
        line += insufficient_advice(exc, method, held)
    return line


def insufficient_advice(exc: QueryError, method: QueryMethod[Any, Any], held: CoverageReply | None) -> str:
    """What would turn `insufficient_trades` into a reply, given the whole tape `held`; only options `method` has
    and only changes that reach `needed` (lowering --min-trades to 0 found, or widening past the tape, never do)."""
    found, needed = exc.details.get("found"), exc.details.get("needed")
    if not isinstance(found, int) or not isinstance(needed, int):
        return ""
    if held is not None and held.first_id is None:
        return (
            f". The tape holds no {held.symbol} trades yet: they are stored from the first `tradetape up` on"
            " (or `tradetape import`)."
        )
    lowers = "min_trades" in method.request.model_fields
    options = [f"lower --min-trades to {found}"] if lowers and found >= 1 else []
    if held is not None and held.trade_count > found and (held.trade_count >= needed or lowers):
        widen = "widen the range"
        if held.trade_count < needed:
            widen += f" and lower --min-trades to {held.trade_count}"
        options.append(
            f"{widen}: the tape holds {held.trade_count} {held.symbol} trades from {iso_time(held.first_time)}"
            f" to {iso_time(held.last_time)}"
        )
    if not options:
        return ""
    advice = ", or ".join(options)
    return f". {advice[0].upper()}{advice[1:]}."


def _detail(key: str, value: Any) -> str:
    if key in TIME_DETAILS and isinstance(value, int):
        return f"{key}={value} ({iso_time(value)})"
    return f"{key}={value}"
