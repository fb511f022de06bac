"""`tradetape mcp`: every query method as an MCP tool, so an assistant can ask the tape.

The tools come from the method registry: one per method, named after it, its argument
schema the method's request model plus `symbol`, its description the method's summary
with the units and defaults spelled out. A call goes through the Python client over NATS;
the reply is the method's JSON reply as text (what the NATS method answers), cut to
`MAX_TOOL_TEXT` characters when longer (the summary fields whole, the first rows of each
list, and `truncated` saying how many and how to get the rest), an error reply a tool error
carrying its code (`ERROR_CODES`) and message. `list_symbols` lists what is served and each
symbol's coverage. Stdio by default; streamable HTTP with `--http`, behind the access
rule of `tradetape.runtime.http_access` (Host, Origin, a bearer token, the request deadline).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from tradetape import __version__
from tradetape.api.errors import QueryError
from tradetape.api.methods.trades import TradesCursor
from tradetape.api.query_method import QueryMethod
from tradetape.api.registry import methods
from tradetape.client import TapeClient, TapeError
from tradetape.domain.instruments import MAX_INSTRUMENT_LENGTH, split_instrument
from tradetape.settings import Settings

logger = logging.getLogger(__name__)

LIST_SYMBOLS = "list_symbols"
MAX_TOOL_TEXT = 20_000
"""Characters of JSON one tool reply carries at most: an assistant reads all of it (a 5,000-trade page is 584 KB)."""
ERROR_CODES = {
    "invalid_request": "the arguments, the symbol or the tool name are wrong; the message says which",
    "insufficient_trades": "too few trades in the range (details: found, needed)",
    "range_too_large": "the range is over the limit, more than 4,000 intervals, or over a query's memory budget",
    "reply_too_large": "the reply would exceed NATS's max payload; the message says what to ask instead",
    "overloaded": "the analytics worker has too many queries waiting; retry shortly",
    "internal": "the query failed on the worker",
    "store_corrupt": "a stored value the answer needs failed its checksum or format (details: key, reason); "
    "other ranges and symbols still answer",
    "unavailable": "NATS cannot be reached, nobody serves the symbol (the message lists what is served), "
    "or no reply came in time",
    "unserved": "the analytics reply for a symbol its shard does not serve; the tools report it as unavailable, "
    "with what is served",
}
"""Every `error.code` a tool error carries, and what it means (docs/mcp.md)."""
CONVENTIONS = (
    "Symbol: a Binance spot pair in upper case, e.g. BTCUSDT. Range: start/end as epoch milliseconds "
    'or ISO-8601 (UTC unless a zone is given), [start, end) by trade time; or last, a duration ending '
    'now such as "15m", "1h", "24h", "7d". Without a range the last hour (coverage: the whole tape); '
    "start alone runs to now, end alone is the hour before it. "
    "Prices and volumes are exact decimal strings (base asset quantity); times are epoch ms."
)
INSTRUCTIONS = (
    "Tools over a complete tape of Binance aggregate trades. Call list_symbols first to see which "
    "symbols are served and how far back each tape goes. " + CONVENTIONS
)


def tool_for(method: QueryMethod[Any, Any]) -> types.Tool:
    """The MCP tool of one registered method: its request model's schema plus the symbol."""
    schema = method.request.model_json_schema()
    properties: dict[str, Any] = {
        "symbol": {
            "type": "string",
            "maxLength": MAX_INSTRUMENT_LENGTH,
            "description": "Binance instrument as list_symbols names it: BTCUSDT (spot), um:BTCUSDT (USD-M "
            "futures), cm:BTCUSD_PERP (COIN-M futures).",
        }
    }
    properties.update(schema.get("properties", {}))
    input_schema: dict[str, Any] = {"type": "object", "properties": properties, "required": ["symbol"]}
    if "$defs" in schema:
        input_schema["$defs"] = schema["$defs"]
    return types.Tool(
        name=method.name,
        description=f"{method.summary}. {CONVENTIONS} Arguments: {_argument_help(method)}",
        input_schema=input_schema,
    )


def _argument_help(method: QueryMethod[Any, Any]) -> str:
    parts = []
    for name, info in method.request.model_fields.items():
        default = "" if info.default is None else f" (default {info.default})"
        parts.append(f"{name}: {info.description or ''}{default}")
    return "; ".join(parts)


LIST_SYMBOLS_PAGE = 100
"""Symbols a `list_symbols` page holds (each with its coverage): with `ALL` thousands are served."""
LIST_SYMBOLS_CONCURRENCY = 16
"""Coverage queries of one page in flight at once."""
LIST_SYMBOLS_TOOL = types.Tool(
    name=LIST_SYMBOLS,
    description="The symbols served, the methods each answers, and each tape's trade count, first and "
    f"last trade time (epoch ms) and gap count; {LIST_SYMBOLS_PAGE} a page, in name order, with `count` (all that "
    "match) and `next_offset` (call again with offset set to it for the next page; null: none left). "
    "`contains` keeps the symbols whose name holds it (e.g. USDT).",
    input_schema={
        "type": "object",
        "properties": {
            "offset": {"type": "integer", "minimum": 0, "default": 0},
            "contains": {"type": "string", "maxLength": MAX_INSTRUMENT_LENGTH},
        },
    },
)


def build_server(settings: Settings) -> Server[TapeClient]:
    """The MCP server; it opens one NATS connection for its lifetime."""

    @asynccontextmanager
    async def lifespan(_: Server[TapeClient]) -> AsyncIterator[TapeClient]:
        client = await TapeClient.connect(settings)
        try:
            yield client
        finally:
            await client.close()

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[LIST_SYMBOLS_TOOL, *(tool_for(m) for m in methods().values())])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        client: TapeClient = ctx.lifespan_context
        arguments = dict(params.arguments or {})
        try:
            if params.name == LIST_SYMBOLS:
                offset, contains = arguments.get("offset", 0), arguments.get("contains", "")
                if not isinstance(offset, int) or offset < 0 or not isinstance(contains, str):
                    return _error("invalid_request", "offset is a whole number from 0, contains a string")
                page = await list_symbols(client, offset=offset, contains=contains[:MAX_INSTRUMENT_LENGTH])
                return _text(bounded(LIST_SYMBOLS, page, {}))
            if params.name not in methods():
                tools = [LIST_SYMBOLS, *methods()]
                message = f"no tool {params.name!r}; tools: {', '.join(tools)}"
                return _error("invalid_request", message, {"tools": tools})
            symbol = arguments.pop("symbol", None)
            if not isinstance(symbol, str) or not symbol:
                return _error("invalid_request", "symbol is required, e.g. BTCUSDT")
            reply = await client.query(params.name, symbol, **arguments)
            return _text(bounded(params.name, reply.model_dump(mode="json"), arguments))
        except QueryError as exc:
            return _error(exc.code, exc.message, exc.details)
        except TapeError as exc:
            return _error("unavailable", str(exc))

    return Server(
        "tradetape",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def list_symbols(
    client: TapeClient, *, offset: int = 0, contains: str = "", page: int = LIST_SYMBOLS_PAGE
) -> dict[str, Any]:
    """One page of the served symbols (from the shards' served lists) whose name holds `contains`, with coverage."""
    wanted = contains.strip().upper()
    served = [(symbol, names) for symbol, names in (await client.served()).items() if wanted in symbol.upper()]
    shown = served[offset : offset + page]
    slots = asyncio.Semaphore(LIST_SYMBOLS_CONCURRENCY)

    async def entry(symbol: str, names: list[str]) -> dict[str, Any]:
        market, bare = split_instrument(symbol)
        row: dict[str, Any] = {"symbol": symbol, "market": market.value, "exchange_symbol": bare, "methods": names}
        if "coverage" in names:
            async with slots:
                coverage = await client.query("coverage", symbol)
            row |= {
                "trade_count": coverage.trade_count,
                "void_count": coverage.void_count,
                "first_time": coverage.first_time,
                "last_time": coverage.last_time,
                "gaps": len(coverage.gaps),
            }
        return row

    symbols = await asyncio.gather(*(entry(symbol, names) for symbol, names in shown))
    following = offset + page
    return {
        "count": len(served),
        "offset": offset,
        "symbols": list(symbols),
        "next_offset": following if following < len(served) else None,
    }


def bounded(tool: str, body: dict[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    """`body` whole when its JSON fits `MAX_TOOL_TEXT`; else every field but the lists whole, the first rows of each
    list (as many as fit, at least one), and `truncated`: per list `{shown, of}` and `how_to_get_more`.

    A cut `trades` page gets a `next_cursor` that continues after its last trade shown, so paging loses nothing.
    """
    if len(_json(body)) <= MAX_TOOL_TEXT:
        return body
    lists = {key: value for key, value in body.items() if isinstance(value, list) and len(value) > 1}
    if not lists:
        return body

    def cut(keep: int) -> dict[str, Any]:
        shown = {key: value[:keep] for key, value in lists.items()}
        truncated: dict[str, Any] = {
            key: {"shown": len(shown[key]), "of": len(value)} for key, value in lists.items() if len(value) > keep
        }
        truncated["how_to_get_more"] = _how_to_get_more(tool)
        reply = {**body, **shown, "truncated": truncated}
        if tool == "trades" and "trades" in lists and len(shown["trades"]) < len(lists["trades"]):
            reply["next_cursor"] = _cursor_after(body, shown["trades"][-1], arguments)
        return reply

    low, high = 1, max(len(value) for value in lists.values()) - 1  # the most rows per list that fit
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if len(_json(cut(middle))) <= MAX_TOOL_TEXT else (low, middle - 1)
    return cut(low)


def _how_to_get_more(tool: str) -> str:
    if tool == "trades":
        return "call trades again with cursor set to next_cursor: it continues after the last trade shown"
    if tool == LIST_SYMBOLS:
        return "call list_symbols with offset set to next_offset, or coverage for one symbol"
    return f"the rows shown are the first; {methods()[tool].reply_hint} to get them all"


def _cursor_after(page: dict[str, Any], last: dict[str, Any], arguments: dict[str, Any]) -> str:
    """A cursor continuing after `last`, bound to the page's question (its limit: the cursor's or the request's)."""
    limit = (
        TradesCursor.decode(page["next_cursor"]).limit
        if page.get("next_cursor")
        else methods()["trades"].parse_request(arguments).limit
    )
    return TradesCursor(page["symbol"], page["start"], page["end"], limit, last["a"], last["T"]).encode()


def _json(body: dict[str, Any]) -> str:
    return json.dumps(body)


def _text(body: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=_json(body))], structured_content=body)


def _error(code: str, message: str, details: dict[str, Any] | None = None) -> types.CallToolResult:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return types.CallToolResult(content=[types.TextContent(type="text", text=_json(body))], is_error=True)


async def serve_stdio(settings: Settings) -> None:
    server = build_server(settings)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


async def serve_http(settings: Settings, host: str, port: int) -> None:
    """Streamable HTTP at `http://<host>:<port>/mcp`; HttpAccessError, before listening, if exposed without a token."""
    import uvicorn
    from mcp.server.transport_security import TransportSecuritySettings

    from tradetape.runtime.http_access import HttpAccess, require_token
    from tradetape.runtime.uvicorn_access import uvicorn_config

    require_token(host, settings.mcp_token, Settings.env_name("mcp_token"))
    # The SDK's own Host/Origin check is off: the one rule (HttpAccess) guards every path before the SDK sees it.
    unchecked = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app = build_server(settings).streamable_http_app(host=host, transport_security=unchecked)
    access = HttpAccess.for_server(settings, host, port, token=settings.mcp_token)
    logger.info("mcp server listening", extra={"url": f"http://{host}:{port}/mcp", "token": access.token is not None})
    await uvicorn.Server(uvicorn_config(app, host, port, access)).serve()
