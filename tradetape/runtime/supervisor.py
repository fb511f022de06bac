"""`tradetape up`: the whole system on one machine.

An embedded nats-server (unless `NATS_URL` is set), optionally the exchange simulator,
and one process each for ingest, persist and analytics, so the services use both cores
and run exactly as they do apart. A child that dies is restarted; SIGINT/SIGTERM stops
ingest first (it flushes its publishes), then persist (it writes what it holds), then
analytics, then the simulator and nats-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field

from services.exchange import Exchange, ExchangeConfig
from tradetape.bus.connect import DEFAULT_URL
from tradetape.runtime.backoff import Backoff
from tradetape.runtime.lifecycle import stop_on_signals
from tradetape.runtime.nats_server import EmbeddedNatsServer, write_url_file
from tradetape.runtime.processes import die_with_parent
from tradetape.settings import Settings

logger = logging.getLogger(__name__)

SERVICES = ("ingest", "persist", "analytics")
STOP_TIMEOUT_S = 20.0
EMBEDDED_PORT = 4222


@dataclass
class Child:
    name: str
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    backoff: Backoff = field(default_factory=lambda: Backoff(1.0, 30.0))

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tradetape.cli",
            self.name,
            env=self.env,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent(),
            start_new_session=True,
        )
        logger.info("service started", extra={"service": self.name, "pid": self.process.pid})

    async def stop(self) -> int | None:
        process = self.process
        if process is None or process.returncode is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            logger.error("service did not stop, killing it", extra={"service": self.name})
            process.kill()
            code = await process.wait()
        logger.info("service stopped", extra={"service": self.name, "exit_code": code})
        return code


def child_env(settings: Settings, nats_url: str, ws_url: str, rest_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "NATS_URL": nats_url,
            "TRADETAPE_DATA_DIR": str(settings.data_dir.resolve()),
            "TRADETAPE_SYMBOLS": ",".join(settings.symbols),
            "TRADETAPE_BINANCE_WS_URL": ws_url,
            "TRADETAPE_BINANCE_REST_URL": rest_url,
            "TRADETAPE_RETENTION_DAYS": str(settings.retention_days),
            "TRADETAPE_SHARD": settings.shard,
            "TRADETAPE_LOG_LEVEL": settings.log_level,
        }
    )
    return env


async def start_embedded_nats(settings: Settings) -> EmbeddedNatsServer:
    """The standard port when it is free (so any client finds it), else any free port."""
    server = EmbeddedNatsServer(settings.nats_store_dir, port=EMBEDDED_PORT)
    try:
        await server.start()
    except Exception as exc:  # noqa: BLE001 - port taken or similar: fall back to a free port
        logger.warning("port 4222 unavailable, using a free port", extra={"error": str(exc)[:200]})
        server = EmbeddedNatsServer(settings.nats_store_dir, port=0)
        await server.start()
    return server


async def run_up(settings: Settings, exchange_config: ExchangeConfig | None) -> int:
    stop = asyncio.Event()
    stop_on_signals(stop)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        nats_url = settings.nats_url
        if nats_url is None:
            server = await start_embedded_nats(settings)
            stack.push_async_callback(server.stop)
            nats_url = server.url
        write_url_file(settings.nats_url_file, nats_url)
        ws_url, rest_url = settings.binance_ws_url, settings.binance_rest_url
        if exchange_config is not None:
            exchange = Exchange(exchange_config)
            await exchange.start()
            stack.push_async_callback(exchange.stop)
            ws_url, rest_url = exchange.ws_url, exchange.rest_url
        env = child_env(settings, nats_url, ws_url, rest_url)
        children = [Child(name, env) for name in SERVICES]
        for child in reversed(children):
            await child.start()
        logger.info(
            "tradetape up",
            extra={
                "nats_url": nats_url,
                "exchange": ws_url,
                "symbols": ",".join(settings.symbols),
                "data_dir": str(settings.data_dir),
            },
        )
        if nats_url != DEFAULT_URL:
            logger.info(
                "queries from another terminal find this server through the data dir",
                extra={"url_file": str(settings.nats_url_file)},
            )
        await supervise(children, stop)
        codes = [await child.stop() for child in children]
        with contextlib.suppress(FileNotFoundError):
            settings.nats_url_file.unlink()
    return 0 if all(code in (0, None) for code in codes) else 1


async def supervise(children: list[Child], stop: asyncio.Event) -> None:
    """Restart children that die, until `stop` is set."""
    while not stop.is_set():
        waits = {asyncio.ensure_future(c.process.wait()): c for c in children if c.process is not None}
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([stopper, *waits], return_when=asyncio.FIRST_COMPLETED)
        for task in [stopper, *waits]:
            if task not in done:
                task.cancel()
        if stop.is_set():
            return
        for task in done:
            child = waits.get(task)
            if child is None:
                continue
            delay = child.backoff.next_delay()
            child.restarts += 1
            logger.error(
                "service exited, restarting",
                extra={
                    "service": child.name,
                    "exit_code": task.result(),
                    "restarts": child.restarts,
                    "delay_s": round(delay, 1),
                },
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if not stop.is_set():
                await child.start()
