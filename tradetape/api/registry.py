"""The registry of query methods: one module a method under `tradetape.api.methods`.

A method module declares `METHOD = QueryMethod(...)` (`tradetape.api.query_method`): its
name, request and reply models and the handler that computes the reply from the shard's trades.
The micro service, `tradetape schema`, the CLI and the client all iterate `methods()`, so adding a
method is one new module (and its tests), plus, for the CLI's tables, a renderer module of the same
name in `tradetape.cli.renderers` (without one the CLI prints the reply's JSON).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

from tradetape.api.live.messages import live_schema
from tradetape.api.models import ErrorReply
from tradetape.api.query_method import QueryMethod
from tradetape.bus.subjects import QUERY_SUBJECT, SYMBOL_TOKENS


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


def api_schema() -> dict[str, Any]:
    """JSON Schema of every method's request and reply, the error reply, and the live subjects' messages."""
    return {
        "subject": QUERY_SUBJECT,
        "symbol": SYMBOL_TOKENS,
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
