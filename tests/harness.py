"""Running the real services in-process for a test, each with its own NATS connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import orjson
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from tradetape.bus.auth import NatsAuth
from tradetape.bus.connect import connect
from tradetape.bus.subjects import query_subject
from tradetape.client import SyncTapeClient, TapeError, TapeUnavailable
from tradetape.ground.url_files import read_url_file
from tradetape.services.analytics.service import AnalyticsService
from tradetape.services.exchange import BUNDLED_REPLAY, Exchange, ExchangeConfig, FaultConfig
from tradetape.services.ingest.service import IngestService
from tradetape.services.persist.service import PersistService
from tradetape.settings import Settings
from tradetape.testing import simulator_settings

KINDS: dict[str, Any] = {"ingest": IngestService, "persist": PersistService, "analytics": AnalyticsService}


class Running:
    def __init__(self) -> None:
        self.services: dict[str, Any] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def check(self) -> None:
        """Fail the test at once if a service died."""
        for name, task in self.tasks.items():
            if task.done():
                raise AssertionError(f"{name} stopped: {task.exception()!r}")


@contextlib.asynccontextmanager
async def run_services(settings: Settings, *kinds: str, **options: Any) -> AsyncIterator[Running]:
    stop = asyncio.Event()
    running = Running()
    connections: list[Client] = []
    try:
        for kind in kinds:
            assert settings.nats_url is not None
            nc = await connect(settings.nats_url, f"test-{kind}", auth=NatsAuth.from_settings(settings))
            connections.append(nc)
            service = KINDS[kind](settings, nc, **options.get(kind, {}))
            running.services[kind] = service
            running.tasks[kind] = asyncio.create_task(service.run(stop), name=f"test-{kind}")
        yield running
    finally:
        stop.set()
        results = await asyncio.wait_for(asyncio.gather(*running.tasks.values(), return_exceptions=True), 30)
        for nc in connections:
            await nc.close()
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]


async def request(
    nc: Client, subject: str, body: dict[str, Any] | bytes, timeout: float = 10.0
) -> tuple[dict[str, Any], dict[str, str]]:
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    msg = await nc.request(subject, payload, timeout=timeout)
    return orjson.loads(msg.data), dict(msg.headers or {})


async def wait_for(predicate: Any, timeout: float, interval: float = 0.2, running: Running | None = None) -> Any:
    """Poll an async predicate until it returns something truthy (a service not up yet, or not yet saying what it
    serves, is falsy)."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        if running is not None:
            running.check()
        try:
            last = await predicate()
        except (NoRespondersError, NatsTimeoutError, TapeUnavailable) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value {last!r}")


async def coverage_of(client: Client, symbol: str) -> dict[str, Any]:
    reply, _ = await request(client, query_subject("coverage", symbol), {})
    return reply


def coverage_in(data_dir: Path, symbol: str) -> dict[str, Any] | None:
    """What `tradetape query coverage SYMBOL --json` prints beside the `up` of `data_dir` (found by its `nats.url`, as
    the command finds it), asked by the client in this process: a `tradetape` process a poll costs ~0.7 s of CPU
    beside the `up` it waits for. None while no coverage is answered (no server yet, unserved)."""
    url = read_url_file(data_dir / "nats.url")
    if url is None:
        return None
    try:
        with SyncTapeClient.connect(url=url, timeout=10) as tape:
            reply: dict[str, Any] = tape.query("coverage", symbol).model_dump(mode="json")
    except TapeError:
        return None
    return reply


async def wait_until_stored(
    client: Client, symbol: str, count: int, *, timeout: float = 60, running: Running | None = None
) -> dict[str, Any]:
    """The coverage reply once exactly `count` trades without gaps are queryable."""

    async def stored() -> dict[str, Any] | None:
        reply = await coverage_of(client, symbol)
        return reply if reply.get("trade_count") == count and not reply.get("gaps") else None

    result: dict[str, Any] = await wait_for(stored, timeout, running=running)
    return result


@contextlib.asynccontextmanager
async def replay_pipeline(
    nats_url: str, data_dir: Path, *, faults: FaultConfig | None = None, speed: float | None = None
) -> AsyncIterator[tuple[Exchange, Running, Client]]:
    """The bundled BTCUSDT file replayed through ingest, persist and analytics, and a plain client."""
    config = ExchangeConfig(
        symbols=("BTCUSDT",), replay=(BUNDLED_REPLAY,), rate=0, speed=speed, faults=faults or FaultConfig()
    )
    async with Exchange(config) as exchange:
        settings = simulator_settings(exchange, nats_url, data_dir, "BTCUSDT")
        async with run_services(settings, "persist", "analytics", "ingest") as running:
            client = await nats.connect(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
            try:
                yield exchange, running, client
            finally:
                await client.close()
