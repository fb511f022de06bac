"""What the client raises, and how an error reply or an unserved subject becomes one."""

from __future__ import annotations

from pydantic import ValidationError

from tradetape.api.errors import QueryError
from tradetape.api.models import ErrorReply
from tradetape.errors import TradetapeError

ERROR_CODE_HEADER = "Nats-Service-Error-Code"
UNSERVED = "unserved"
"""The error code of the shard an instrument belongs to when it does not serve it (`tradetape.api.errors`)."""
SHOWN_SYMBOLS = 50
"""Served symbols an error message names at most (with `TRADETAPE_SYMBOLS=ALL` there are thousands)."""


class TapeError(TradetapeError):
    """Anything the client raises."""


class TapeUnavailable(TapeError):
    """NATS cannot be reached, no analytics worker serves the subject, or none answered in time.

    For a subject nobody serves, `served` holds what is served (symbol → methods) and the
    message says it: the symbols served, or the symbol's methods.
    """

    def __init__(self, message: str, served: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.served = served


class ClientQueryError(QueryError, TapeError):
    """An error reply from the analytics service."""


def describe_served(served: dict[str, list[str]], method: str, symbol: str) -> str:
    """Why nobody answered `method` about `symbol`, in terms of what is served."""
    if not served:
        return "no analytics worker has said what it serves (start `tradetape up` or `tradetape analytics`)"
    if symbol not in served:
        names = list(served)
        more = f" and {len(names) - SHOWN_SYMBOLS} more" if len(names) > SHOWN_SYMBOLS else ""
        return f"{symbol} is not served; served symbols: {', '.join(names[:SHOWN_SYMBOLS])}{more}"
    return f"{symbol} has no method {method}; its methods: {', '.join(served[symbol])}"


def error_of(data: bytes, headers: dict[str, str]) -> ClientQueryError:
    """The exception an error reply stands for (a body that is no `ErrorReply`: `internal`, the header's text)."""
    status = int(headers.get(ERROR_CODE_HEADER) or 500)
    try:
        reply = ErrorReply.model_validate_json(data)
    except ValidationError:
        return ClientQueryError("internal", headers.get("Nats-Service-Error") or "error without a body", status=status)
    error = reply.error
    return ClientQueryError(error.code, error.message, error.details, status=status)
