"""The analytics service: a NATS micro service answering `tape.query.<method>.<SYMBOL>`.

It serves the symbols of one shard, reading that shard's RocksDB as a secondary
instance and catching up with the writer before every answer. Each registered method ×
symbol is one endpoint in the shard's queue group, so replicas share the load and NATS
routes a query to a worker of the shard that owns its symbol. `$SRV.PING|INFO|STATS`
discover it; error replies count in `$SRV.STATS` as errors.

Protection: a request without a reply subject is dropped before any work; at most
`query_concurrency` queries compute at once (in threads, so the event loop keeps
answering) and at most `query_max_pending` wait, the rest are answered `overloaded`;
ranges are capped at `query_max_range_days`; a reply above the connection's max payload
is the error `reply_too_large`, never a failed publish.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import sys
import time
from typing import Any

import orjson
from nats.aio.client import Client
from nats.micro import add_service
from nats.micro.request import Request, ServiceError

from tradetape import __version__
from tradetape.api.errors import (
    QueryError,
    internal_error,
    invalid_request,
    overloaded,
    range_too_large,
    reply_too_large,
)
from tradetape.api.registry import QueryMethod, api_schema, methods
from tradetape.bus.subjects import ANALYTICS_SERVICE, SCHEMA_SUBJECT, analytics_queue_group, query_subject, symbol_of
from tradetape.settings import Settings
from tradetape.store.reader import ShardReader

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
HEAP_KEEP_BYTES = 256 * 1024 * 1024


def keep_heap(max_bytes: int = HEAP_KEEP_BYTES) -> bool:
    """Ask glibc to keep freed query arrays (up to `max_bytes`) for the next query.

    Measured in bench/query.py: by default glibc returns each answer's large numpy
    temporaries to the kernel and faults them back in on the next query (about 6,000 page
    faults, half of a 1 h profile's 40 ms). True when set (glibc only).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, max_bytes)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 4 * max_bytes))
    except (OSError, AttributeError):
        return False


class AnalyticsService:
    def __init__(self, settings: Settings, nc: Client) -> None:
        self._settings = settings
        self._nc = nc
        self._reader = ShardReader(settings.shard_dir)
        self._max_range_ms = int(settings.query_max_range_days * DAY_MS)
        self._computing = asyncio.Semaphore(settings.query_concurrency)
        self._pending = 0
        self.dropped_without_reply = 0

    async def run(self, stop: asyncio.Event) -> None:
        keep_heap()
        queue_group = analytics_queue_group(self._settings.shard)
        service = await add_service(
            self._nc,
            name=ANALYTICS_SERVICE,
            version=__version__,
            description="Market-microstructure queries over the trade tape",
            queue_group=queue_group,
            metadata={"shard": self._settings.shard, "symbols": ",".join(self._settings.shard_symbols)},
        )
        try:
            for name, method in methods().items():
                for symbol in self._settings.shard_symbols:
                    await service.add_endpoint(
                        name=f"{name}-{symbol}",
                        subject=query_subject(name, symbol),
                        handler=functools.partial(self._handle, method),
                        metadata={"method": name, "symbol": symbol, "schema": SCHEMA_SUBJECT},
                    )
            schema = orjson.dumps(api_schema())
            await service.add_endpoint(
                name="schema", subject=SCHEMA_SUBJECT, handler=functools.partial(_respond, schema), metadata={}
            )
            logger.info(
                "analytics started",
                extra={
                    "shard": self._settings.shard,
                    "queue_group": queue_group,
                    "symbols": ",".join(self._settings.shard_symbols),
                    "methods": ",".join(methods()),
                },
            )
            await stop.wait()
        finally:
            await service.stop()
            self._reader.close()
            logger.info(
                "analytics stopped", extra={"shard": self._settings.shard, "dropped": self.dropped_without_reply}
            )

    async def _handle(self, method: QueryMethod[Any, Any], request: Request) -> None:
        # nats micro's Request exposes no reply subject; without one nobody would read the answer.
        if not request._msg.reply:
            self.dropped_without_reply += 1
            return
        started = time.perf_counter()
        symbol = symbol_of(request.subject)
        try:
            body = await self._compute(method, symbol, request.data)
        except QueryError as exc:
            logger.info("query rejected", extra={"method": method.name, "symbol": symbol, "code": exc.code})
            raise _error_reply(request, exc) from None
        await request.respond(body)
        logger.debug(
            "query answered",
            extra={"method": method.name, "symbol": symbol, "ms": round((time.perf_counter() - started) * 1000, 1)},
        )

    async def _compute(self, method: QueryMethod[Any, Any], symbol: str, data: bytes) -> bytes:
        if self._pending >= self._settings.query_max_pending:
            raise overloaded(self._pending)
        self._pending += 1
        try:
            async with self._computing:
                return await asyncio.to_thread(self.answer, method, symbol, data)
        finally:
            self._pending -= 1

    def answer(self, method: QueryMethod[Any, Any], symbol: str, data: bytes) -> bytes:
        """The reply body for one request; raises `QueryError` for anything a client must hear about."""
        request = method.parse_request(data)
        now_ms = int(time.time() * 1000)
        if method.bounded_range:
            self._check_range(request.time_range(now_ms))
        try:
            reply = method.handler(self._reader, symbol, request, now_ms)
        except QueryError:
            raise
        except ValueError as exc:
            raise invalid_request(str(exc)) from exc
        except Exception as exc:  # the one boundary: a failed query is a reply, never a dead worker
            logger.exception("query failed", extra={"method": method.name, "symbol": symbol})
            raise internal_error(exc) from exc
        body: bytes = reply.model_dump_json().encode()
        if len(body) > self._nc.max_payload:
            raise reply_too_large(len(body), self._nc.max_payload, method.reply_hint)
        return body

    def _check_range(self, time_range: tuple[int, int] | None) -> None:
        if time_range is not None and time_range[1] - time_range[0] > self._max_range_ms:
            days = (time_range[1] - time_range[0]) / DAY_MS
            raise range_too_large(
                f"the range spans {days:.1f} days; at most {self._settings.query_max_range_days:g} are allowed",
                start=time_range[0],
                end=time_range[1],
                max_days=self._settings.query_max_range_days,
            )


async def _respond(body: bytes, request: Request) -> None:
    await request.respond(body)


def _error_reply(request: Request, exc: QueryError) -> ServiceError:
    """The `ServiceError` nats micro answers with (and counts in `$SRV.STATS`), carrying our JSON body.

    Micro counts an error only when the handler raises, and then replies with headers and
    no body; the JSON error body goes into that same reply by binding it to this request.
    """
    request.respond_error = functools.partial(  # type: ignore[method-assign]
        request.respond_error, data=exc.reply().model_dump_json().encode()
    )
    return ServiceError(str(exc.status), exc.message)
