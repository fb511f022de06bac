"""What the flood and the fuzzer share: a client asking in the background while a scenario runs, and its report.

`async with` connects (reconnecting for ever: the server restarts under the scenario) and
starts the subclass's `_run` loop; leaving the block cancels the loop, closes the connection
and prints the report's summary. A request that gets no reply is counted as unanswered, not
failed; `reply_code` reads what a reply says, refusing one that breaks the reply contract.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Self

import nats
import orjson
from nats.aio.client import Client
from nats.errors import Error as NatsError


@dataclass
class ClientReport:
    sent: int = 0
    unanswered: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    """How many replies said each thing: `ok` for a result, else the error's code."""

    def summary(self) -> str:
        raise NotImplementedError


def reply_code(data: bytes) -> str:
    """The error code of a query reply, `ok` for a result; ValueError for a reply that is not a JSON object
    or an error without a code."""
    try:
        reply = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ValueError(f"not JSON: {data[:200]!r}") from None
    if not isinstance(reply, dict):
        raise ValueError(f"not a JSON object: {data[:200]!r}")
    error = reply.get("error")
    if error is None:
        return "ok"
    code = error.get("code") if isinstance(error, dict) else None
    if not isinstance(code, str) or not code:
        raise ValueError(f"an error without a code: {data[:200]!r}")
    return code


class HostileClient:
    """The base of a background client: subclasses set `name` and `report` and write `_run`."""

    name = "chaos-client"
    report: ClientReport

    def __init__(self, url: str) -> None:
        self._url = url
        self._nc: Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._nc = await nats.connect(
            self._url.split(","), max_reconnect_attempts=-1, reconnect_time_wait=0.2, name=self.name
        )
        self._task = asyncio.create_task(self._run(self._nc), name=self.name)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            # Python 3.11's wait_for (in nats-py's request) swallows a cancel that lands as the reply arrives:
            # the loop then goes on, and awaiting it after one cancel waited until the test's timeout.
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.close(), 5)
        print(self.report.summary())

    async def _run(self, nc: Client) -> None:
        raise NotImplementedError

    async def _request(self, nc: Client, subject: str, body: bytes, timeout: float) -> bytes | None:
        """The reply's bytes; None (counted as unanswered) when none came, as while NATS or a replica is down."""
        self.report.sent += 1
        try:
            msg = await nc.request(subject, body, timeout=timeout)
        except (NatsError, TimeoutError):
            self.report.unanswered += 1
            return None
        return msg.data
