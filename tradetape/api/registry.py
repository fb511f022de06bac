"""The registry of query methods: one module a method under `tradetape.api.methods`.

A method module declares `METHOD = QueryMethod(...)`: its name, request and reply
models, the handler that computes the reply from the shard's trades, and how the CLI
renders it. The micro service, `tradetape schema`, the CLI and the client all iterate
`methods()`, so adding a method is one new module (and its tests).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ValidationError
from rich.console import RenderableType

from tradetape.api.errors import invalid_request
from tradetape.api.models import ErrorReply, RangeRequest
from tradetape.domain.columns import TradeColumns
from tradetape.domain.price_levels import PriceLevels

QUERY_SUBJECT = "tape.query.<method>.<SYMBOL>"

RequestT = TypeVar("RequestT", bound=RangeRequest)
ReplyT = TypeVar("ReplyT", bound=BaseModel)


class TradeSource(Protocol):
    """Where handlers read trades from: a shard's store, or anything a test builds."""

    def trades(self, symbol: str, time_range: tuple[int, int] | None) -> TradeColumns:
        """Trades in `[start, end)`, or the whole tape when `time_range` is None."""
        ...


@runtime_checkable
class PriceLevelSource(Protocol):
    """A source that can sum trades per distinct price without handing them over (segment histograms)."""

    def price_levels(self, symbol: str, time_range: tuple[int, int] | None) -> PriceLevels | None:
        """Volume, buy volume and trade count per price; None when the sums could leave int64."""
        ...


@dataclass(frozen=True)
class QueryMethod(Generic[RequestT, ReplyT]):
    name: str
    """The `<method>` token of `tape.query.<method>.<SYMBOL>`."""
    summary: str
    """One line for help texts and the schema."""
    request: type[RequestT]
    reply: type[ReplyT]
    handler: Callable[[TradeSource, str, RequestT, int], ReplyT]
    """`(source, symbol, request, now_ms) -> reply`; raises `QueryError` for what a client must hear."""
    render: Callable[[ReplyT], RenderableType]
    """The reply as the CLI shows it (a rich renderable)."""
    reply_hint: str = "ask for a shorter range"
    """What to change when the reply exceeds the server's max payload."""
    bounded_range: bool = True
    """Whether `query_max_range_days` applies (not to `coverage`, which reads no trades)."""
    reads_ingest_ledger: bool = False
    """Whether the service hands the handler ingest's open gaps (`IngestGapSource`) read from NATS KV."""
    trade_bytes: int = 128
    """Peak bytes the handler needs per trade it reads: the decoded columns and what it computes from them.

    Measured with tracemalloc over 3M real-like trades (`bench/flood.py`'s history) and
    rounded up; with `query_memory_mb`, the read is refused before decoding past the
    budget. The default is deliberately dear, for a method nobody measured yet.
    """
    level_bytes: int = 100
    """Peak bytes per price level a histogram read merges (`price_levels`), measured the same way."""

    def parse_request(self, data: bytes | dict[str, Any]) -> RequestT:
        """A JSON body (or its fields) as this method's request; `invalid_request` naming each failing field."""
        try:
            if isinstance(data, dict):
                return self.request.model_validate(data)
            return self.request.model_validate_json(data or b"{}")
        except ValidationError as exc:
            problems = [
                {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": _reason(e["msg"])}
                for e in exc.errors()
            ]
            summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
            raise invalid_request(f"invalid {self.name} request: {summary}", errors=problems) from None


@cache
def methods() -> dict[str, QueryMethod[Any, Any]]:
    """Every method module's `METHOD`, by name, in module-name order."""
    from tradetape.api import methods as package

    found: dict[str, QueryMethod[Any, Any]] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        method = getattr(module, "METHOD", None)
        if isinstance(method, QueryMethod):
            if method.name in found:
                raise RuntimeError(f"query method {method.name!r} is declared twice")
            found[method.name] = method
    return found


def method(name: str) -> QueryMethod[Any, Any]:
    """The method called `name`; `KeyError` naming the known ones otherwise."""
    try:
        return methods()[name]
    except KeyError:
        raise KeyError(f"unknown query method {name!r}; known: {', '.join(methods())}") from None


def _reason(message: str) -> str:
    """Pydantic's message without the "Value error, " it puts before a validator's own text."""
    return message.removeprefix("Value error, ")


def api_schema() -> dict[str, Any]:
    """JSON Schema of every method's request and reply, the error reply, and the live subjects' messages."""
    from tradetape.api.live import live_schema  # it builds on the method modules

    return {
        "subject": QUERY_SUBJECT,
        "methods": {
            name: {
                "summary": m.summary,
                "request": m.request.model_json_schema(),
                "reply": m.reply.model_json_schema(),
            }
            for name, m in methods().items()
        },
        "error": ErrorReply.model_json_schema(),
        "live": live_schema(),
    }
