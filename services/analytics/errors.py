"""Query errors: a stable machine-readable code, a human message and details.

Every error a client can get is a `QueryError`; the handler boundary turns it into the
JSON error body and the NATS micro error headers (`Nats-Service-Error`,
`Nats-Service-Error-Code` = an HTTP-like status).
"""

from __future__ import annotations

from typing import Any


class QueryError(Exception):
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

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def bad_request(message: str, **details: Any) -> QueryError:
    return QueryError("bad_request", message, details, status=400)


def insufficient_trades(found: int, needed: int) -> QueryError:
    return QueryError(
        "insufficient_trades",
        f"{found} trades in the range, at least {needed} needed",
        {"found": found, "needed": needed},
        status=422,
    )


def no_data(symbol: str, reason: str) -> QueryError:
    return QueryError("no_data", f"no stored trades for {symbol}: {reason}", {"symbol": symbol}, status=404)


def internal_error(exc: BaseException) -> QueryError:
    return QueryError("internal", f"the query failed: {type(exc).__name__}", {"error": str(exc)[:500]}, status=500)
