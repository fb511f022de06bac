"""Every use of nats-py's private parts, in one place, checked against the releases they were read from.

tradetape reaches past nats-py's public API in three places, each for a measured reason:

- `OutgoingBuffer`: the publisher hands a run of ready-made `HPUB`s to a client's outgoing
  buffer in one append and kicks its flusher, as `Client.publish` does for one message
  (`Client._send_command`, `_flush_pending`, `_flush_queue`; why: `tradetape.bus.publish.bulk`, and persist's
  acks of a whole write: `tradetape.bus.acks`).
- `MicroClient`: nats micro names a service with its client's NUID generator (`Client._nuid`)
  and subscribes through the client; the client micro gets wraps every callback, so that the
  reply guard (`tradetape.bus.replies`) sees every request.
- `EndpointCounters`: micro counts an endpoint's errors and processing time only around the
  handler; analytics answers from a task after the handler returned, so it adds to micro's own
  counters (`Service._endpoints`, `Endpoint._subject`, `_num_requests`, `_num_errors`,
  `_last_error`, `_processing_time`, `_average_processing_time`) to keep `$SRV.STATS` true.

At import the installed nats-py must lie in `SUPPORTED` and `Client`'s private methods must be
coroutine functions; each client, service and endpoint is checked when first handed here
(`require`). Anything else raises `NatsInternalsError` naming the internal and the version, so
a nats-py release that changed them stops a service at start instead of publishing nothing or
counting wrong. To adopt a new release: read these internals in its source, run
`tests/bus/test_nats_internals.py`, then widen `SUPPORTED` and the pin in pyproject.toml.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.micro.service import Service

from tradetape.errors import ConfigError

SUPPORTED = ((2, 9), (2, 17))
"""The nats-py releases whose source these internals were read from (2.9.0 to 2.16.0): from the first, below
the second."""
NATS_PY_VERSION = importlib.metadata.version("nats-py")

_Callback = Callable[[Msg], Awaitable[None]]
_RELEASE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


class NatsInternalsError(ConfigError, RuntimeError):
    """nats-py is not a release tradetape was written against, or one of its internals changed shape."""


@dataclass(frozen=True, slots=True)
class Shape:
    """What an internal must be: said in the error, checked by `fits`."""

    description: str
    fits: Callable[[Any], bool]


COROUTINE = Shape("a coroutine function", inspect.iscoroutinefunction)
FLUSH_QUEUE = Shape("None or an asyncio.Queue", lambda value: value is None or isinstance(value, asyncio.Queue))
NUID_GENERATOR = Shape("a NUID generator with next()", lambda value: callable(getattr(value, "next", None)))
ITEMS = Shape("a list", lambda value: isinstance(value, list))
TEXT = Shape("a str", lambda value: isinstance(value, str))
COUNT = Shape("an int", lambda value: type(value) is int)
PRESENT = Shape("an attribute", lambda value: True)

ENDPOINT_FIELDS = (
    ("_subject", TEXT),
    ("_num_requests", COUNT),
    ("_num_errors", COUNT),
    ("_processing_time", COUNT),
    ("_average_processing_time", PRESENT),
    ("_last_error", PRESENT),
)
"""What `EndpointCounters` reads and writes on each of micro's `Endpoint`s."""


def supported_range() -> str:
    (low_major, low_minor), (high_major, high_minor) = SUPPORTED
    return f">={low_major}.{low_minor},<{high_major}.{high_minor}"


def check_version(version: str) -> None:
    """Raise `NatsInternalsError` unless `version` is a plain release within `SUPPORTED`."""
    match = _RELEASE.fullmatch(version)
    release = (int(match[1]), int(match[2])) if match else None
    if release is None or not SUPPORTED[0] <= release < SUPPORTED[1]:
        raise NatsInternalsError(
            f"nats-py {version} is installed; tradetape.bus.nats_internals was written against nats-py "
            f"{supported_range()}: install a release in that range, or review the module for this one"
        )


def require(owner: object, name: str, shape: Shape, kind: str) -> Any:
    """`owner.<name>`, raising `NatsInternalsError` (naming `<kind>.<name>` and the version) unless it fits `shape`."""
    missing = object()
    value = getattr(owner, name, missing)
    if value is missing or not shape.fits(value):
        found = "missing" if value is missing else f"a {type(value).__name__}"
        raise NatsInternalsError(
            f"nats-py {NATS_PY_VERSION}: {kind}.{name} is {found}, not {shape.description}; "
            f"tradetape.bus.nats_internals was written against nats-py {supported_range()}: review it"
        )
    return value


check_version(NATS_PY_VERSION)
require(Client, "_send_command", COROUTINE, "Client")
require(Client, "_flush_pending", COROUTINE, "Client")


class OutgoingBuffer:
    """A client's outgoing buffer: protocol bytes appended and its flusher kicked, as `Client.publish` does.

    The caller has built the protocol itself and checked the connection and the max payload.
    """

    __slots__ = ("_flush_pending", "_nc", "_send_command")

    def __init__(self, nc: Client) -> None:
        require(nc, "_flush_queue", FLUSH_QUEUE, "Client")
        self._nc = nc
        self._send_command: Callable[[bytes], Awaitable[None]] = require(nc, "_send_command", COROUTINE, "Client")
        self._flush_pending: Callable[[], Awaitable[Any]] = require(nc, "_flush_pending", COROUTINE, "Client")

    async def append(self, command: bytes) -> None:
        await self._send_command(command)
        queue = self._nc._flush_queue
        if queue is not None and queue.empty():
            await self._flush_pending()


class MicroClient:
    """The part of nats-py's `Client` nats micro uses, every subscription callback wrapped by `wrap`.

    Micro names a service with the client's NUID generator, subscribes its verbs and endpoints
    with a callback and flushes; anything else it asked for would go around `wrap`, so it
    raises instead of being handed the real client.
    """

    def __init__(self, nc: Client, wrap: Callable[[_Callback], _Callback]) -> None:
        self._nuid = require(nc, "_nuid", NUID_GENERATOR, "Client")
        self._nc = nc
        self._wrap = wrap
        self.subscriptions = 0
        self.admit: Callable[[Msg], bool] | None = None
        """Set around one `add_endpoint`: that endpoint's messages reach micro only when it returns True."""

    async def subscribe(
        self, subject: str, queue: str = "", cb: _Callback | None = None, **kwargs: Any
    ) -> Subscription:
        if cb is None:
            raise RuntimeError(f"nats micro subscribed {subject} without a callback: the reply guard cannot check it")
        self.subscriptions += 1
        handler = cb if self.admit is None else _admitted(self.admit, cb)
        return await self._nc.subscribe(subject, queue=queue, cb=self._wrap(handler), **kwargs)

    async def flush(self, timeout: int = 10) -> None:
        await self._nc.flush(timeout)

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(
            f"nats micro used Client.{name}, which the reply guard does not cover: review tradetape.bus.nats_internals"
        )


class EndpointCounters:
    """Micro's own statistics of each endpoint of `service` (by subject), for answers given after the handler returned.

    `None`: a service not started yet, whose counts go nowhere.
    """

    def __init__(self, service: Service | None) -> None:
        self._by_subject: dict[str, Any] = {}
        if service is None:
            return
        for endpoint in require(service, "_endpoints", ITEMS, "Service"):
            for name, shape in ENDPOINT_FIELDS:
                require(endpoint, name, shape, "Endpoint")
            self._by_subject[endpoint._subject] = endpoint

    def error(self, subject: str, message: str) -> None:
        endpoint = self._by_subject.get(subject)
        if endpoint is not None:
            endpoint._num_errors += 1
            endpoint._last_error = message

    def processed(self, subject: str, seconds: float) -> None:
        endpoint = self._by_subject.get(subject)
        if endpoint is not None and endpoint._num_requests:
            endpoint._processing_time += int(seconds * 1e9)
            endpoint._average_processing_time = int(endpoint._processing_time / endpoint._num_requests)


def _admitted(admit: Callable[[Msg], bool], cb: _Callback) -> _Callback:
    """`cb`, called only for the messages `admit` lets through (micro counts only those)."""

    async def admitted(msg: Msg) -> None:
        if admit(msg):
            await cb(msg)

    return admitted
