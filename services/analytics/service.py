"""The analytics service: a NATS micro service answering `tape.query.<method>.<SYMBOL>`.

It serves the symbols of one shard, reading that shard's RocksDB as a secondary
instance and catching up with the writer before every answer. Each method × symbol is
one endpoint in the shard's queue group, so replicas share the load and NATS routes a
query to a worker of the shard that owns its symbol. `$SRV.PING|INFO|STATS` discover it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time

import orjson
from nats.aio.client import Client
from nats.micro import add_service
from nats.micro.request import Request
from pydantic import ValidationError

from services.analytics.errors import QueryError, bad_request, internal_error
from services.analytics.handlers import HANDLERS
from services.analytics.queries import METHODS
from services.tape.columns import TradeColumns
from services.tape.settings import Settings
from services.tape.store import SecondaryStore, StoreNotFoundError, read_all_trades, read_trades
from services.tape.subjects import query_subject, symbol_of

logger = logging.getLogger(__name__)

SERVICE_NAME = "tradetape-analytics"
SERVICE_VERSION = "0.1.0"


class ShardReader:
    """The shard's trades, as of the writer's latest durable write."""

    def __init__(self, settings: Settings) -> None:
        self._store = SecondaryStore(settings.shard_dir)
        self._lock = threading.Lock()

    def trades(self, symbol: str, time_range: tuple[int, int] | None) -> TradeColumns:
        with self._lock:
            try:
                db = self._store.catch_up()
            except StoreNotFoundError:
                return TradeColumns.empty()
            if time_range is None:
                return read_all_trades(db, symbol)
            return read_trades(db, symbol, *time_range)

    def close(self) -> None:
        with self._lock:
            self._store.close()


class AnalyticsService:
    def __init__(self, settings: Settings, nc: Client) -> None:
        self._settings = settings
        self._nc = nc
        self._reader = ShardReader(settings)

    async def run(self, stop: asyncio.Event) -> None:
        queue_group = f"{SERVICE_NAME}-{self._settings.shard}"
        service = await add_service(
            self._nc,
            name=SERVICE_NAME,
            version=SERVICE_VERSION,
            description="Market-microstructure queries over the trade tape",
            queue_group=queue_group,
            metadata={"shard": self._settings.shard, "symbols": ",".join(self._settings.symbols)},
        )
        try:
            for method in METHODS:
                for symbol in self._settings.symbols:
                    await service.add_endpoint(
                        name=f"{method}-{symbol}",
                        subject=query_subject(method, symbol),
                        handler=functools.partial(self._handle, method),
                        metadata={"method": method, "symbol": symbol},
                    )
            logger.info(
                "analytics started",
                extra={
                    "shard": self._settings.shard,
                    "queue_group": queue_group,
                    "symbols": ",".join(self._settings.symbols),
                    "methods": ",".join(METHODS),
                },
            )
            await stop.wait()
        finally:
            await service.stop()
            self._reader.close()
            logger.info("analytics stopped", extra={"shard": self._settings.shard})

    async def _handle(self, method: str, request: Request) -> None:
        started = time.perf_counter()
        symbol = symbol_of(request.subject)
        try:
            body = await asyncio.to_thread(self.answer, method, symbol, request.data)
        except QueryError as exc:
            logger.info("query rejected", extra={"method": method, "symbol": symbol, "code": exc.code})
            await request.respond_error(str(exc.status), exc.message, data=orjson.dumps(exc.body()))
            return
        await request.respond(body)
        logger.debug(
            "query answered",
            extra={"method": method, "symbol": symbol, "ms": round((time.perf_counter() - started) * 1000, 1)},
        )

    def answer(self, method: str, symbol: str, data: bytes) -> bytes:
        """The reply body for one request; raises `QueryError` for anything a client must hear about."""
        request_model, _ = METHODS[method]
        try:
            request = request_model.model_validate_json(data or b"{}")
        except ValidationError as exc:
            raise bad_request(
                f"invalid {method} request: {exc.error_count()} problem(s)",
                errors=[{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()],
            ) from None
        try:
            reply = HANDLERS[method](self._reader, symbol, request, int(time.time() * 1000))
        except QueryError:
            raise
        except ValueError as exc:
            raise bad_request(str(exc)) from exc
        except Exception as exc:  # the one boundary: a failed query is a reply, never a dead worker
            logger.exception("query failed", extra={"method": method, "symbol": symbol})
            raise internal_error(exc) from exc
        return reply.model_dump_json().encode()
