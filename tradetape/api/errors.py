"""Query errors: a stable machine-readable code, a human message and details.

Every error a client can get is a `QueryError`, with one of the codes docs/design.md fixes:
`invalid_request` (400), `insufficient_trades` (422), `range_too_large` and
`reply_too_large` (413), `overloaded` (503), `internal` (500), `store_corrupt` (500: a stored
value the answer needs failed its checks; `details.key` names it), `unserved` (404: the shard the
instrument belongs to does not serve it; `details` name the shard). With no analytics worker
running at all, NATS answers "no responders". The service boundary turns it into the
JSON error body (`ErrorReply`) and the NATS micro error headers (`Nats-Service-Error`,
`Nats-Service-Error-Code` = an HTTP-like status); the client turns that body back into
a `QueryError`, so both ends share this one shape.
"""

from __future__ import annotations

from typing import Any

from tradetape.api.models import ErrorDetail, ErrorReply
from tradetape.errors import TradetapeError


class QueryError(TradetapeError):
    status = 400

    def __init__(
        self, code: str, message: str, details: dict[str, Any] | None = None, *, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        if status is not None:
            self.status = status

    def reply(self) -> ErrorReply:
        return ErrorReply(error=ErrorDetail(code=self.code, message=self.message, details=self.details))


def invalid_request(message: str, **details: Any) -> QueryError:
    return QueryError("invalid_request", message, details, status=400)


def range_too_large(message: str, **details: Any) -> QueryError:
    return QueryError("range_too_large", message, details, status=413)


def check_range_span(start_ms: int, end_ms: int, max_days: float) -> None:
    """`range_too_large` for a range longer than `max_days` (a query's or a replay's), saying by how much: a range
    1 ms too long must not read as "31.0 days; at most 31"."""
    max_ms = int(max_days * 86_400_000)
    if end_ms - start_ms > max_ms:
        raise range_too_large(
            f"the range spans {end_ms - start_ms:,} ms ({(end_ms - start_ms) / 86_400_000:.1f} days), "
            f"{end_ms - start_ms - max_ms:,} ms more than the {max_days:g} days ({max_ms:,} ms) allowed",
            start=start_ms,
            end=end_ms,
            max_days=max_days,
        )


def reply_too_large(size: int, max_payload: int, hint: str) -> QueryError:
    return QueryError(
        "reply_too_large",
        f"the reply would be {size} bytes, above the server's max payload of {max_payload}; {hint}",
        {"size": size, "max_payload": max_payload},
        status=413,
    )


def overloaded(pending: int) -> QueryError:
    return QueryError(
        "overloaded", f"{pending} queries are waiting on this worker; retry shortly", {"pending": pending}, status=503
    )


def insufficient_trades(found: int, needed: int) -> QueryError:
    return QueryError(
        "insufficient_trades",
        f"{found} trades in the range, at least {needed} needed",
        {"found": found, "needed": needed},
        status=422,
    )


def store_corrupt(key: str, reason: str) -> QueryError:
    return QueryError(
        "store_corrupt",
        f"the stored value {key} this answer needs is corrupt ({reason[:200]}); the rest of the tape is served",
        {"key": key, "reason": reason[:500]},
        status=500,
    )


def unserved(symbol: str, shard: str, served: int) -> QueryError:
    return QueryError(
        "unserved",
        f"{symbol} is not served: shard {shard}, which answers for it, serves {served} other instruments",
        {"symbol": symbol, "shard": shard, "served_count": served},
        status=404,
    )


def internal_error(exc: BaseException) -> QueryError:
    return QueryError("internal", f"the query failed: {type(exc).__name__}", {"error": str(exc)[:500]}, status=500)
