"""`tradetape query`: send one request over NATS and show the reply as a table or JSON."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from services.tape.nats_client import connect, resolve_nats_url
from services.tape.settings import Settings
from services.tape.subjects import query_subject

BAR_WIDTH = 40


class QueryFailed(Exception):
    pass


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for field in ("last", "start", "end", "row_size", "rows", "value_area", "min_trades"):
        value = getattr(args, field, None)
        if value is not None:
            body[field] = int(value) if field in ("start", "end") and str(value).isdigit() else value
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise QueryFailed(f"--param {item!r} is not KEY=VALUE")
        try:
            body[key] = orjson.loads(value)
        except orjson.JSONDecodeError:
            body[key] = value
    return body


async def send(url: str, subject: str, body: dict[str, Any], timeout: float) -> tuple[dict[str, Any], bool]:
    """The reply, and whether it is an error reply."""
    try:
        nc = await connect(url, "tradetape-query", retry=False, connect_timeout=3)
    except (NatsError, OSError, TimeoutError) as exc:
        raise QueryFailed(f"cannot reach NATS at {url} ({type(exc).__name__}); is `tradetape up` running?") from exc
    try:
        msg = await nc.request(subject, orjson.dumps(body), timeout=timeout)
    except NoRespondersError:
        raise QueryFailed(
            f"no analytics worker answers {subject} on {url}: unknown method or symbol not served"
        ) from None
    except NatsTimeoutError:
        raise QueryFailed(f"no reply on {subject} within {timeout}s") from None
    finally:
        await nc.close()
    reply = orjson.loads(msg.data) if msg.data else {}
    headers = msg.headers or {}
    is_error = bool(headers.get("Nats-Service-Error-Code")) or "error" in reply
    if is_error and "error" not in reply:
        reply = {
            "error": {
                "code": headers.get("Nats-Service-Error-Code"),
                "message": headers.get("Nats-Service-Error"),
                "details": {},
            }
        }
    return reply, is_error


def run_query(args: argparse.Namespace, settings: Settings) -> int:
    url = resolve_nats_url(settings)
    symbol = args.symbol.upper()
    try:
        body = request_body(args)
        reply, is_error = asyncio.run(send(url, query_subject(args.method, symbol), body, args.timeout))
    except QueryFailed as exc:
        print(f"tradetape query: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(orjson.dumps(reply, option=orjson.OPT_INDENT_2).decode())
    elif is_error:
        error = reply["error"]
        details = ", ".join(f"{k}={v}" for k, v in (error.get("details") or {}).items())
        print(
            f"error {error.get('code')}: {error.get('message')}" + (f" ({details})" if details else ""), file=sys.stderr
        )
    else:
        print(FORMATTERS.get(args.method, _format_generic)(reply))
    return 1 if is_error else 0


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def format_volume_profile(reply: dict[str, Any]) -> str:
    lines = [
        f"{reply['symbol']} volume profile  {_time(reply['start'])} → {_time(reply['end'])}",
        f"trades {reply['trade_count']}  volume {reply['total_volume']} (buy {reply['buy_volume']}, "
        f"sell {reply['sell_volume']})  row size {reply['row_size']}",
        f"POC {reply['poc']} [{reply['poc_low']}, {reply['poc_high']})   "
        f"VAH {reply['vah']}   VAL {reply['val']}   value area {reply['value_area']:.0%}",
        "",
        f"{'price_low':>16} {'price_high':>16} {'volume':>16} {'buy':>14} {'sell':>14} {'trades':>7}",
    ]
    rows = reply["rows"]
    peak = max((Decimal(row["volume"]) for row in rows), default=Decimal(0)) or Decimal(1)
    val, vah = Decimal(reply["val"]), Decimal(reply["vah"])
    for row in reversed(rows):
        low, high = Decimal(row["price_low"]), Decimal(row["price_high"])
        mark = "POC" if row["price_low"] == reply["poc_low"] else ("VA" if low >= val and high <= vah else "")
        bar = "█" * int(Decimal(row["volume"]) / peak * BAR_WIDTH)
        lines.append(
            f"{row['price_low']:>16} {row['price_high']:>16} {row['volume']:>16} {row['buy_volume']:>14} "
            f"{row['sell_volume']:>14} {row['trade_count']:>7} {mark:<3} {bar}"
        )
    return "\n".join(lines)


def format_coverage(reply: dict[str, Any]) -> str:
    span = "whole tape" if reply.get("start") is None else f"{_time(reply['start'])} → {_time(reply['end'])}"
    lines = [
        f"{reply['symbol']} coverage ({span})",
        f"trades {reply['trade_count']}  ids {reply['first_id']} .. {reply['last_id']}  "
        f"times {_time(reply['first_time'])} .. {_time(reply['last_time'])}",
        f"gaps {len(reply['gaps'])}  missing trades {reply.get('missing_count', 0)}",
    ]
    lines += [f"  missing ids {gap['from_id']} .. {gap['to_id']}" for gap in reply["gaps"][:50]]
    if len(reply["gaps"]) > 50:
        lines.append(f"  ... and {len(reply['gaps']) - 50} more gaps (use --json)")
    return "\n".join(lines)


def format_liquidity_vacuums(reply: dict[str, Any]) -> str:
    lines = [
        f"{reply['symbol']} liquidity vacuums  {_time(reply['start'])} → {_time(reply['end'])}",
        f"trades {reply['trade_count']}  rows {reply['row_count']} of {reply['row_size']}  "
        f"thin: below {reply['threshold']} × mean row volume for at least {reply['min_rows']} rows",
        "",
        f"{'price_low':>16} {'price_high':>16} {'rows':>6} {'volume':>16} {'share':>8}",
    ]
    lines += [
        f"{v['price_low']:>16} {v['price_high']:>16} {v['rows']:>6} {v['volume']:>16} {v['share']:>8.2%}"
        for v in reply["vacuums"]
    ]
    if not reply["vacuums"]:
        lines.append("no vacuums")
    return "\n".join(lines)


def _format_generic(reply: dict[str, Any]) -> str:
    return orjson.dumps(reply, option=orjson.OPT_INDENT_2).decode()


FORMATTERS = {
    "volume_profile": format_volume_profile,
    "liquidity_vacuums": format_liquidity_vacuums,
    "coverage": format_coverage,
}
