"""The access rule (`tradetape.runtime.http_access`) on an ASGI app served by uvicorn.

Host, Origin and the token are checked by an ASGI middleware in front of the whole app, so
every path answers the same way. uvicorn itself waits for a request's headers and body as
long as a client keeps sending (its one timeout is between two requests of a kept-alive
connection), so its h11 protocol is extended: the clock starts at the first byte of a
request (or at the connection) and stops when the request is complete; when it runs out the
connection is closed. Connections beyond the bound are closed as they are accepted.
"""

from __future__ import annotations

import asyncio

import h11
import uvicorn
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from tradetape.runtime.http_access import ConnectionSlots, HttpAccess


class AccessMiddleware:
    """Answers a refused request itself (421, 403, 401); passes the others (and the lifespan) to `app`."""

    def __init__(self, app: ASGIApp, access: HttpAccess) -> None:
        self._app = app
        self._access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            refused = self._access.refusal(Headers(scope=scope).items())
            if refused is not None:
                response = PlainTextResponse(f"{refused.reason}\n", refused.status, headers=dict(refused.headers))
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


def guarded_h11(access: HttpAccess) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the request deadline and the connection bound of `access`."""
    slots = ConnectionSlots(access.max_connections)

    class GuardedH11Protocol(H11Protocol):
        _clock: asyncio.TimerHandle | None = None
        _slotted = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if not slots.take():
                transport.abort()
                return
            self._slotted = True
            self._start_clock()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):  # a request under way
                self._start_clock()
            else:
                self._stop_clock()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_clock()
            if self._slotted:
                self._slotted = False
                slots.give_back()
            super().connection_lost(exc)

        def _start_clock(self) -> None:
            if self._clock is None:
                self._clock = self.loop.call_later(access.request_timeout_s, self._time_is_up)

        def _stop_clock(self) -> None:
            if self._clock is not None:
                self._clock.cancel()
                self._clock = None

        def _time_is_up(self) -> None:
            self._clock = None
            self.transport.abort()

    return GuardedH11Protocol


def uvicorn_config(app: ASGIApp, host: str, port: int, access: HttpAccess) -> uvicorn.Config:
    """`app` behind the access rule on `host:port`, over h11 with the deadline; no WebSocket upgrades."""
    return uvicorn.Config(
        AccessMiddleware(app, access), host=host, port=port, http=guarded_h11(access), ws="none", log_level="warning"
    )
