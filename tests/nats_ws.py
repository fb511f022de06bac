"""NATS over WebSocket in its raw protocol: exactly the lines a browser page can send, with the Origin it claims.

Used to show what the WebSocket listener lets a page do; it reads the server's replies
as they come (INFO, MSG, +OK, -ERR, PING answered with PONG), never trusting a frame to
hold exactly one of them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Origin

READ_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Op:
    """One operation the server sent: `kind` is INFO, MSG, HMSG, PONG, +OK or -ERR."""

    kind: str
    args: tuple[str, ...] = ()
    payload: bytes = b""

    @property
    def error(self) -> str:
        return " ".join(self.args) if self.kind == "-ERR" else ""


class NatsWebSocket:
    """One raw NATS connection over a WebSocket; see `open`."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._buffer = bytearray()
        self._sids = itertools.count(1)
        self._held: collections.deque[Op] = collections.deque()

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str, origin: str | None) -> AsyncIterator[NatsWebSocket]:
        """Upgrade with `origin` as the Origin header (None: none) and read the server's INFO."""
        async with websockets.connect(url, origin=Origin(origin) if origin else None, open_timeout=10) as ws:
            client = cls(ws)
            info = await client.read(skip_info=False)
            assert info.kind == "INFO", info
            yield client

    async def connect(self, user: str | None = None, password: str | None = None) -> Op:
        """CONNECT (with credentials if given) and PING: PONG when the server took us, else its -ERR."""
        options: dict[str, Any] = {"verbose": False, "pedantic": False, "protocol": 1, "headers": True}
        if user is not None:
            options.update(user=user, **{"pass": password})
        await self.send(f"CONNECT {json.dumps(options)}\r\nPING\r\n".encode())
        return await self.read()

    async def send(self, data: bytes) -> None:
        await self._ws.send(data)

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> Op:
        """PUB and PING: PONG if the server accepted the message, else the -ERR it answered."""
        line = " ".join(part for part in ("PUB", subject, reply, str(len(payload))) if part)
        await self.send(f"{line}\r\n".encode() + payload + b"\r\nPING\r\n")
        return await self._until_pong()

    async def subscribe(self, subject: str) -> tuple[str, Op]:
        """SUB and PING: the sid and PONG if the server accepted it, else the -ERR it answered."""
        sid = str(next(self._sids))
        await self.send(f"SUB {subject} {sid}\r\nPING\r\n".encode())
        return sid, await self._until_pong()

    async def _until_pong(self) -> Op:
        """Read up to the PONG: the first -ERR before it, else the PONG; messages are kept for `read`."""
        error: Op | None = None
        while True:
            op = await self._next()
            if op.kind == "PONG":
                return error or op
            if op.kind == "-ERR":
                error = error or op
            else:
                self._held.append(op)

    async def request(self, subject: str, body: dict[str, Any], inbox: str) -> Any:
        """Subscribe to `inbox`, publish `body` as JSON with it as the reply subject, return the decoded answer."""
        _, subscribed = await self.subscribe(inbox)
        assert subscribed.kind == "PONG", subscribed
        published = await self.publish(subject, json.dumps(body).encode(), reply=inbox)
        assert published.kind == "PONG", published
        answer = await self.read()
        assert answer.kind in ("MSG", "HMSG"), answer
        return json.loads(answer.payload)

    async def read(self, timeout: float = READ_TIMEOUT_S, *, skip_info: bool = True) -> Op:
        """The server's next operation (those `_until_pong` passed over first); INFO updates are skipped."""
        while True:
            op = self._held.popleft() if self._held else await self._next(timeout)
            if op.kind != "INFO" or not skip_info:
                return op

    async def _next(self, timeout: float = READ_TIMEOUT_S) -> Op:
        """The next operation off the wire; PINGs are answered on the way."""
        while True:
            op = self._take()
            if op is None:
                frame = await asyncio.wait_for(self._ws.recv(), timeout)
                self._buffer += frame if isinstance(frame, bytes) else frame.encode()
            elif op.kind == "PING":
                await self.send(b"PONG\r\n")
            else:
                return op

    def _take(self) -> Op | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            return None
        kind, _, rest = bytes(self._buffer[:end]).decode().partition(" ")
        args = tuple(rest.split(" ")) if rest else ()
        size = 0
        if kind in ("MSG", "HMSG"):
            size = int(args[-1]) + 2
            if len(self._buffer) < end + 2 + size:
                return None
        payload = bytes(self._buffer[end + 2 : end + size])
        del self._buffer[: end + 2 + size]
        if kind == "HMSG":
            payload = payload[int(args[-2]) :]
        return Op(kind.upper(), args, payload)
