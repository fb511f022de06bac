"""The Python client: any registered query method over NATS, replies as typed models.

    async with await TapeClient.connect() as tape:
        profile = await tape.query("volume_profile", "BTCUSDT", last="1h")
        rows = profile.to_polars()

It finds the server as the CLI does (`NATS_URL`, else `<data dir>/nats.url`), checks a
request against the method's model before sending it, and raises:

    TapeError
    ├── QueryError        an error reply (`code`, `message`, `details`), from `tradetape.api.errors`
    └── TapeUnavailable   NATS unreachable, nobody serving the method and symbol, or no reply in time

`SyncTapeClient` is the same for code that is not async (scripts, notebooks).
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Self

import orjson
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from pydantic import ValidationError

from tradetape.api.errors import QueryError
from tradetape.api.models import ErrorReply
from tradetape.api.registry import method as registered_method
from tradetape.bus.connect import connect, resolve_nats_url
from tradetape.bus.subjects import ANALYTICS_SERVICE, query_subject
from tradetape.settings import Settings

DEFAULT_TIMEOUT_S = 30.0
ERROR_CODE_HEADER = "Nats-Service-Error-Code"


class TapeError(Exception):
    """Anything the client raises."""


class TapeUnavailable(TapeError):
    """NATS cannot be reached, no analytics worker serves the subject, or none answered in time."""


class ClientQueryError(QueryError, TapeError):
    """An error reply from the analytics service."""


class TapeClient:
    def __init__(self, nc: Client, *, timeout: float = DEFAULT_TIMEOUT_S, owns_connection: bool = False) -> None:
        self.nc = nc
        self.timeout = timeout
        self._owns_connection = owns_connection

    @classmethod
    async def connect(
        cls, settings: Settings | None = None, *, url: str | None = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> TapeClient:
        """Connect to `url`, or to the server `settings` (default: from the environment) point at."""
        url = url or resolve_nats_url(settings or Settings())
        try:
            nc = await connect(url, "tradetape-client", retry=False, connect_timeout=3)
        except (NatsError, OSError, TimeoutError) as exc:
            raise TapeUnavailable(
                f"cannot reach NATS at {url} ({type(exc).__name__}); is `tradetape up` running?"
            ) from exc
        return cls(nc, timeout=timeout, owns_connection=True)

    async def query(self, method: str, symbol: str, /, **fields: Any) -> Any:
        """Ask `method` about `symbol` with request `fields`; the method's reply model, or `ClientQueryError`."""
        spec = registered_method(method)
        try:
            request = spec.parse_request(fields)
        except QueryError as exc:
            raise ClientQueryError(exc.code, exc.message, exc.details, status=exc.status) from None
        subject = query_subject(method, symbol.upper())
        body = orjson.dumps(request.model_dump(mode="json", exclude_unset=True))
        try:
            msg = await self.nc.request(subject, body, timeout=self.timeout)
        except NoRespondersError:
            raise TapeUnavailable(f"no analytics worker serves {subject}") from None
        except NatsTimeoutError:
            raise TapeUnavailable(f"no reply on {subject} within {self.timeout}s") from None
        headers = msg.headers or {}
        if headers.get(ERROR_CODE_HEADER):
            raise _error_of(msg.data, headers)
        return spec.reply.model_validate_json(msg.data)

    async def served(self) -> dict[str, list[str]]:
        """Symbol → the methods some analytics worker answers for it (from `$SRV.INFO`)."""
        inbox = self.nc.new_inbox()
        subscription = await self.nc.subscribe(inbox)
        served: dict[str, set[str]] = {}
        try:
            await self.nc.publish(f"$SRV.INFO.{ANALYTICS_SERVICE}", b"", reply=inbox)
            while True:
                try:
                    msg = await subscription.next_msg(timeout=0.5)
                except NatsTimeoutError:
                    break
                if not msg.data:  # the server's "no responders" status: nobody is running
                    break
                for endpoint in orjson.loads(msg.data).get("endpoints") or []:
                    meta = endpoint.get("metadata") or {}
                    if "symbol" in meta and "method" in meta:
                        served.setdefault(meta["symbol"], set()).add(meta["method"])
        finally:
            await subscription.unsubscribe()
        return {symbol: sorted(names) for symbol, names in sorted(served.items())}

    async def close(self) -> None:
        """Close the connection if this client opened it; safe to call twice."""
        if self._owns_connection and not self.nc.is_closed:
            await self.nc.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def _error_of(data: bytes, headers: dict[str, str]) -> ClientQueryError:
    status = int(headers.get(ERROR_CODE_HEADER) or 500)
    try:
        reply = ErrorReply.model_validate_json(data)
    except ValidationError:
        return ClientQueryError("internal", headers.get("Nats-Service-Error") or "error without a body", status=status)
    error = reply.error
    return ClientQueryError(error.code, error.message, error.details, status=status)


class SyncTapeClient:
    """`TapeClient` for code that is not async: each call runs on the client's own event loop.

        with SyncTapeClient.connect() as tape:
            bars = tape.query("coverage", "BTCUSDT")
    """

    def __init__(self, runner: asyncio.Runner, client: TapeClient) -> None:
        self._runner = runner
        self._client = client
        self._closed = False

    @classmethod
    def connect(
        cls, settings: Settings | None = None, *, url: str | None = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> SyncTapeClient:
        runner = asyncio.Runner()
        try:
            client = runner.run(TapeClient.connect(settings, url=url, timeout=timeout))
        except BaseException:
            runner.close()
            raise
        return cls(runner, client)

    def query(self, method: str, symbol: str, /, **fields: Any) -> Any:
        return self._runner.run(self._client.query(method, symbol, **fields))

    def served(self) -> dict[str, list[str]]:
        return self._runner.run(self._client.served())

    def close(self) -> None:
        """Close the connection and the event loop; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._runner.run(self._client.close())
        finally:
            self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

