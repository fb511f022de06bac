"""The query client: a connection to the tape (opened again if the server closes it) and request-reply queries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

import orjson
from nats.aio.client import Client
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from pydantic import ValidationError

from tradetape.api.errors import QueryError
from tradetape.api.registry import method as registered_method
from tradetape.api.registry import methods
from tradetape.bus.auth import NatsAuth
from tradetape.bus.connect import connect, resolve_nats_url
from tradetape.bus.served import read_served, served_methods
from tradetape.bus.subjects import VIEW_HEADER, query_subject
from tradetape.client.errors import (
    ERROR_CODE_HEADER,
    UNSERVED,
    ClientQueryError,
    TapeUnavailable,
    describe_served,
    error_of,
)
from tradetape.domain.instruments import instrument_from_input
from tradetape.domain.symbols import SymbolError
from tradetape.ground.redaction import redact_url
from tradetape.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0


class QueryClient:
    """A connection to the tape and its query methods, request-reply; the live and replay parts build on it."""

    def __init__(
        self,
        nc: Client,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        owns_connection: bool = False,
        reopen: Callable[[], Awaitable[Client]] | None = None,
    ) -> None:
        """`reopen` opens a new connection when the server has closed `nc` for good (`connect` passes one)."""
        self.nc = nc
        self.timeout = timeout
        self._owns_connection = owns_connection
        self._reopen = reopen
        self._reopening = asyncio.Lock()

    @classmethod
    async def connect(
        cls, settings: Settings | None = None, *, url: str | None = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> Self:
        """Connect to `url`, or to the server `settings` (default: from the environment) point at."""
        settings = settings or Settings()
        url = url or resolve_nats_url(settings)
        auth = NatsAuth.from_settings(settings)

        async def open_connection() -> Client:
            try:
                return await connect(url, "tradetape-client", auth=auth, retry=False, connect_timeout=3)
            except (NatsError, OSError, TimeoutError) as exc:
                raise TapeUnavailable(
                    f"cannot reach NATS at {redact_url(url)} ({redact_url(str(exc)) or type(exc).__name__}); "
                    "is `tradetape up` running?"
                ) from exc

        return cls(await open_connection(), timeout=timeout, owns_connection=True, reopen=open_connection)

    async def _connection(self) -> Client:
        """`nc`, opened again if the server closed it: nats-py never reconnects after a server's `-ERR`, and a
        long-lived client (the MCP server) must outlive whatever one request or one server restart did to it."""
        async with self._reopening:
            if self.nc.is_closed and self._reopen is not None:
                logger.warning("nats connection closed, opening a new one", extra={"error": repr(self.nc.last_error)})
                self.nc = await self._reopen()
        return self.nc

    async def query(self, method: str, symbol: str, /, **fields: Any) -> Any:
        """Ask `method` about `symbol` with request `fields`; the method's reply model, or `ClientQueryError`."""
        reply, _ = await self._ask(method, symbol, **fields)
        return reply

    async def _ask(self, method: str, symbol: str, /, **fields: Any) -> tuple[Any, str | None]:
        """`query`, with the view the reply read (`VIEW_HEADER`; None when it read more than one state)."""
        try:
            spec = registered_method(method)
        except KeyError:
            known = list(methods())
            message = f"unknown query method {method!r}; known: {', '.join(known)}"
            raise ClientQueryError("invalid_request", message, {"method": method, "known": known}) from None
        try:
            request = spec.parse_request(fields)
        except QueryError as exc:
            raise ClientQueryError(exc.code, exc.message, exc.details, status=exc.status) from None
        symbol = checked_instrument(symbol)
        subject = query_subject(method, symbol)
        body = orjson.dumps(request.model_dump(mode="json", exclude_unset=True))
        nc = await self._connection()
        if len(body) > nc.max_payload:
            message = f"the request is {len(body)} bytes, above the server's max payload of {nc.max_payload}"
            raise ClientQueryError("invalid_request", message, status=400)
        try:
            msg = await nc.request(subject, body, timeout=self.timeout)
        except NoRespondersError:
            raise await self._unserved(subject, method, symbol) from None
        except NatsTimeoutError:
            raise TapeUnavailable(f"no reply on {subject} within {self.timeout}s") from None
        except NatsError as exc:
            raise TapeUnavailable(f"{subject}: {exc}") from None
        headers = msg.headers or {}
        if headers.get(ERROR_CODE_HEADER):
            error = error_of(msg.data, headers)
            if error.code == UNSERVED:
                raise await self._unserved(subject, method, symbol) from error
            raise error
        try:
            reply = spec.reply.model_validate_json(msg.data)
        except ValidationError as exc:  # a broken or hostile responder: a worker fault, as a silent one is
            problem = exc.errors()[0]["msg"] if exc.errors() else str(exc)
            raise TapeUnavailable(f"{subject}: the reply is not a {spec.reply.__name__} ({problem})") from None
        return reply, headers.get(VIEW_HEADER)

    async def _unserved(self, subject: str, method: str, symbol: str) -> TapeUnavailable:
        """Nobody answers `subject`: the error naming what is served."""
        try:
            served = await self.served()
        except TapeUnavailable as exc:
            return TapeUnavailable(f"no analytics worker serves {subject}; what is served is unknown: {exc}")
        return TapeUnavailable(
            f"no analytics worker serves {subject}: {describe_served(served, method, symbol)}", served
        )

    async def served(self) -> dict[str, list[str]]:
        """Instrument → the methods some analytics shard answers for it, from the served lists each shard keeps in
        NATS KV (`tradetape.bus.served`; names that are no symbol left out, as no query could be sent for them)."""
        nc = await self._connection()
        try:
            return served_methods(await read_served(nc.jetstream()))
        except ConnectionClosedError:  # a client used after `close()`: the caller's mistake, not unavailability
            raise
        except (NatsError, TimeoutError) as exc:
            raise TapeUnavailable(f"the served lists in NATS KV cannot be read: {exc!r}") from None

    async def close(self) -> None:
        """Close the connection if this client opened it, for good; safe to call twice."""
        self._reopen = None
        if self._owns_connection and not self.nc.is_closed:
            await self.nc.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def checked_instrument(symbol: str) -> str:
    """The instrument a caller typed (`btcusdt`, `um:BTCUSDT`), or `invalid_request` before anything is sent."""
    try:
        return instrument_from_input(symbol)
    except SymbolError as exc:
        raise ClientQueryError("invalid_request", str(exc), status=400) from None
