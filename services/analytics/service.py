"""The analytics service: a NATS micro service answering `tape.query.<method>.<SYMBOL>`.

It serves the symbols of one shard, reading that shard's RocksDB as a secondary
instance and catching up with the writer before every answer. Each registered method ×
symbol is one endpoint in the shard's queue group, so replicas share the load and NATS
routes a query to a worker of the shard that owns its symbol. `$SRV.PING|INFO|STATS`
discover it; error replies count in `$SRV.STATS` as errors.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from nats.aio.client import Client
from nats.micro import add_service
from nats.micro.request import Request, ServiceError

from tradetape import __version__
from tradetape.api.errors import QueryError, bad_request, internal_error
from tradetape.api.registry import QueryMethod, methods
from tradetape.bus.subjects import ANALYTICS_SERVICE, analytics_queue_group, query_subject, symbol_of
from tradetape.settings import Settings
from tradetape.store.reader import ShardReader

logger = logging.getLogger(__name__)


class AnalyticsService:
    def __init__(self, settings: Settings, nc: Client) -> None:
        self._settings = settings
        self._nc = nc
        self._reader = ShardReader(settings.shard_dir)

    async def run(self, stop: asyncio.Event) -> None:
        queue_group = analytics_queue_group(self._settings.shard)
        service = await add_service(
            self._nc,
            name=ANALYTICS_SERVICE,
            version=__version__,
            description="Market-microstructure queries over the trade tape",
            queue_group=queue_group,
            metadata={"shard": self._settings.shard, "symbols": ",".join(self._settings.symbols)},
        )
        try:
            for name, method in methods().items():
                for symbol in self._settings.symbols:
                    await service.add_endpoint(
                        name=f"{name}-{symbol}",
                        subject=query_subject(name, symbol),
                        handler=functools.partial(self._handle, method),
                        metadata={"method": name, "symbol": symbol},
                    )
            logger.info(
                "analytics started",
                extra={
                    "shard": self._settings.shard,
                    "queue_group": queue_group,
                    "symbols": ",".join(self._settings.symbols),
                    "methods": ",".join(methods()),
                },
            )
            await stop.wait()
        finally:
            await service.stop()
            self._reader.close()
            logger.info("analytics stopped", extra={"shard": self._settings.shard})

    async def _handle(self, method: QueryMethod[Any, Any], request: Request) -> None:
        started = time.perf_counter()
        symbol = symbol_of(request.subject)
        try:
            body = await asyncio.to_thread(self.answer, method, symbol, request.data)
        except QueryError as exc:
            logger.info("query rejected", extra={"method": method.name, "symbol": symbol, "code": exc.code})
            raise _error_reply(request, exc) from None
        await request.respond(body)
        logger.debug(
            "query answered",
            extra={"method": method.name, "symbol": symbol, "ms": round((time.perf_counter() - started) * 1000, 1)},
        )

    def answer(self, method: QueryMethod[Any, Any], symbol: str, data: bytes) -> bytes:
        """The reply body for one request; raises `QueryError` for anything a client must hear about."""
        request = method.parse_request(data)
        try:
            reply = method.handler(self._reader, symbol, request, int(time.time() * 1000))
        except QueryError:
            raise
        except ValueError as exc:
            raise bad_request(str(exc)) from exc
        except Exception as exc:  # the one boundary: a failed query is a reply, never a dead worker
            logger.exception("query failed", extra={"method": method.name, "symbol": symbol})
            raise internal_error(exc) from exc
        body: bytes = reply.model_dump_json().encode()
        return body


def _error_reply(request: Request, exc: QueryError) -> ServiceError:
    """The `ServiceError` nats micro answers with (and counts in `$SRV.STATS`), carrying our JSON body.

    Micro counts an error only when the handler raises, and then replies with headers and
    no body; the JSON error body goes into that same reply by binding it to this request.
    """
    request.respond_error = functools.partial(  # type: ignore[method-assign]
        request.respond_error, data=exc.reply().model_dump_json().encode()
    )
    return ServiceError(str(exc.status), exc.message)
