"""`tradetape up`: the whole system on one machine.

One `up` per data directory (it holds `<data dir>/tradetape.lock`). It runs an embedded
nats-server (unless `NATS_URL` is set), optionally the exchange simulator, and one
process each for ingest, persist and analytics, so the services use both cores and run
exactly as they do apart. Every child has its own session, so a terminal's Ctrl-C
reaches `up` alone, which then stops them in the order that loses nothing: ingest (it
flushes its publishes), persist (it writes what it holds), analytics, the simulator and
nats-server last, so no service drains against a server that is gone. A child that dies
is restarted with backoff. With `--simulate` the simulator's URL is kept in
`<data dir>/exchange.url` while it runs, for `fetch-history` and `repair` in other terminals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import orjson

from tradetape.errors import ConfigError
from tradetape.ground.backoff import Backoff
from tradetape.ground.lock import DataDirLock, DataDirLocked
from tradetape.ground.redaction import redact_url
from tradetape.ground.scratch import owned_tempdir, sweep
from tradetape.ground.url_files import remove_url_file, write_url_file
from tradetape.runtime.http_access import page_origins
from tradetape.runtime.lifecycle import stop_on_signals
from tradetape.runtime.nats_server import EmbeddedNatsServer, NatsPortInUse, NatsServerError
from tradetape.runtime.nats_users import INTERNAL_USER, Credential, EmbeddedUsers, query_credential
from tradetape.runtime.processes import die_with_parent, tradetape_command
from tradetape.settings import MARKET_URL_FIELDS, Settings

logger = logging.getLogger(__name__)

SERVICES = ("ingest", "persist", "analytics")
"""The stop order; they start in reverse."""
EMBEDDED_PORT = 4222
METRICS_PORT_OFFSETS = {"ingest": 0, "persist": 1, "analytics": 2}
STOP_TIMEOUT_S = 20.0
READY_TIMEOUT_S = 30.0
HEALTHY_RUN_S = 60.0
"""A child that ran this long before dying restarts after the initial delay again."""
EXIT_LOCKED = 2
CLEAN_EXIT_CODES = (0, None, -signal.SIGTERM)
"""Stopped, not running, or ended by our SIGTERM before it set its handlers (so with no work in flight)."""

T = TypeVar("T")


class StartupError(ConfigError, RuntimeError):
    """A part of `up` did not come up."""


@dataclass
class Child:
    """One `tradetape <args>` child process, in its own session."""

    name: str
    args: list[str]
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    backoff: Backoff = field(default_factory=lambda: Backoff(1.0, 30.0))

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *tradetape_command(*self.args),
            env=self.env,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent(),
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        logger.info("service started", extra={"service": self.name, "pid": self.process.pid})

    async def stop(self) -> int | None:
        """SIGTERM, SIGKILL if it lingers; its exit code, None if it was not running."""
        process = self.process
        if process is None or process.returncode is not None:
            return None
        process.terminate()
        try:
            code = await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            logger.error("service did not stop, killing it", extra={"service": self.name, "pid": process.pid})
            process.kill()
            code = await process.wait()
        logger.info("service stopped", extra={"service": self.name, "exit_code": code})
        return code


async def start_embedded_nats(settings: Settings, port: int = EMBEDDED_PORT) -> EmbeddedNatsServer:
    """`port` when it is free (4222, so any client finds it), else any free port.

    No anonymous client on either listener (`tradetape.runtime.nats_users`); the WebSocket
    listener lets in only pages served where `tradetape web` serves its own.
    """
    users = EmbeddedUsers(
        internal=Credential.generate(INTERNAL_USER), query=query_credential(settings.nats_ws_user_file)
    )

    def embedded(port: int) -> EmbeddedNatsServer:
        return EmbeddedNatsServer(
            settings.nats_store_dir,
            port=port,
            websocket_port=settings.websocket_port,
            users=users,
            allowed_origins=page_origins(settings.web_host, settings.web_port),
        )

    server = embedded(port)
    try:
        await server.start()
    except NatsPortInUse:
        logger.warning("nats port in use, taking a free port", extra={"port": port})
        server = embedded(0)
        await server.start()
    return server


async def run_up(settings: Settings, exchange_args: list[str] | None) -> int:
    """Run until SIGINT/SIGTERM: 0 after a clean stop, 1 on a failure, 2 if the data dir is taken.

    `exchange_args` (None: the real exchange) are the options of the `tradetape exchange` child.
    """
    lock = DataDirLock(settings.lock_file)
    try:
        lock.acquire()
    except DataDirLocked as exc:
        logger.error(str(exc))
        return EXIT_LOCKED
    except OSError as exc:
        logger.error("cannot lock the data directory", extra={"path": str(lock.path), "error": repr(exc)})
        return 1
    stop = asyncio.Event()
    stop_on_signals(stop)
    try:
        codes = await _run_locked(settings, exchange_args, lock, stop)
    except (NatsServerError, StartupError) as exc:
        logger.error("tradetape up could not start", extra={"error": str(exc)[:2000]})
        return 1
    finally:
        lock.release()
    return 0 if all(code in CLEAN_EXIT_CODES for code in codes) else 1


async def _run_locked(
    settings: Settings, exchange_args: list[str] | None, lock: DataDirLock, stop: asyncio.Event
) -> list[int | None]:
    """Start everything, supervise until `stop`, stop in order; the children's exit codes."""
    check_backfill(settings)
    codes: list[int | None] = []

    async def stop_in_order(children: list[Child]) -> None:
        for child in children:
            codes.append(await child.stop())

    async with contextlib.AsyncExitStack() as stack:
        nats_url = settings.nats_url
        if nats_url is None:
            server = await start_embedded_nats(settings)
            stack.push_async_callback(server.stop)
            nats_url = server.client_url
            if server.websocket_url is not None:  # for `tradetape web`
                write_url_file(settings.nats_ws_url_file, server.websocket_url)
                stack.callback(remove_url_file, settings.nats_ws_url_file, server.websocket_url)
        lock.record(redact_url(nats_url))
        write_url_file(settings.nats_url_file, nats_url)
        stack.callback(remove_url_file, settings.nats_url_file, nats_url)
        update = {"nats_url": nats_url}
        settings.exchange_url_file.unlink(missing_ok=True)  # a killed `up --simulate`'s: we hold the lock
        simulators: list[Child] = []
        if exchange_args is not None:
            simulator = Child("exchange", [], {**os.environ, **settings.to_env()})
            stack.push_async_callback(stop_in_order, [simulator])
            urls = await start_simulator(simulator, exchange_args, stop)
            if urls is None:
                return codes
            update.update(urls)
            update["history_url"] = urls["binance_rest_url"]  # the simulator serves its own dumps
            write_url_file(settings.exchange_url_file, urls["binance_rest_url"])  # for fetch-history and repair
            stack.callback(remove_url_file, settings.exchange_url_file, urls["binance_rest_url"])
            simulators.append(simulator)
        if stop.is_set():
            return codes
        env = {**os.environ, **settings.model_copy(update=update).to_env()}
        services = [Child(name, [name], metrics_env(env, settings.metrics_port, name)) for name in SERVICES]
        stack.push_async_callback(stop_in_order, services)
        for child in reversed(services):
            await child.start()
        backfill = backfill_child(settings, env)
        if backfill is not None:  # one-shot, not restarted; its exit code does not decide up's
            await backfill.start()
            stack.push_async_callback(backfill.stop)
        logger.info(
            "tradetape up",
            extra={
                "nats_url": redact_url(nats_url),
                "exchange": update.get("binance_ws_url", settings.binance_ws_url),
                "symbols": ",".join(settings.symbols),
                "data_dir": str(settings.data_dir),
                "url_file": str(settings.nats_url_file),
            },
        )
        await supervise([*services, *simulators], stop)
    return codes


def check_backfill(settings: Settings) -> None:
    """`StartupError` for a backfill of `ALL`: the dumps of every TRADING symbol, far more than anyone means."""
    if settings.backfill_days and settings.symbols_from_exchange:
        raise StartupError(
            f"{Settings.env_name('backfill_days')}={settings.backfill_days} needs a list of symbols, not "
            f"{Settings.env_name('symbols')}=ALL (it would download the dumps of every TRADING symbol); "
            f"run `tradetape fetch-history SYMBOL ...` for the ones wanted, or set it to 0"
        )


def backfill_child(settings: Settings, env: dict[str, str]) -> Child | None:
    """`fetch-history` of the last `backfill_days` whole days for every symbol, through persist (None: off).

    Days imported before are skipped (the history manifest), so only a first start downloads.
    """
    if not settings.backfill_days:
        return None
    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=settings.backfill_days), today - timedelta(days=1)
    args = ["fetch-history", *settings.symbols, "--from", first.isoformat(), "--to", last.isoformat()]
    return Child("backfill", [*args, "--wait-for-persist", str(READY_TIMEOUT_S)], env)


def metrics_env(env: dict[str, str], port: int, service: str) -> dict[str, str]:
    """Each child its own metrics port: ingest `port`, persist `port + 1`, analytics `port + 2` (0: all off)."""
    if not port:
        return env
    return {**env, Settings.env_name("metrics_port"): str(port + METRICS_PORT_OFFSETS[service])}


async def start_simulator(child: Child, exchange_args: list[str], stop: asyncio.Event) -> dict[str, str] | None:
    """Start the simulator on a free port; the settings pointing ingest at it (None if stopped first).

    A restart keeps the port, so the URLs ingest was given stay right.
    """
    sweep("tradetape-exchange-")  # those of runs killed before their clean-up
    ready_dir = owned_tempdir("tradetape-exchange-")
    ready_file = ready_dir / "ready.json"
    child.args = ["exchange", "--port", "0", "--ready-file", str(ready_file), *exchange_args]
    try:
        await child.start()
        urls = await _wait_ready(child, ready_file, stop)
    finally:
        shutil.rmtree(ready_dir, ignore_errors=True)
    if urls is None:
        return None
    child.args = ["exchange", "--port", str(urlsplit(urls["binance_ws_url"]).port), *exchange_args]
    return urls


async def _wait_ready(child: Child, ready_file: Path, stop: asyncio.Event) -> dict[str, str] | None:
    """The URL settings the simulator's ready file gives, every market's (`MARKET_URL_FIELDS`)."""
    assert child.process is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not stop.is_set():
        if child.process.returncode is not None:
            raise StartupError(f"the exchange simulator exited with code {child.process.returncode}")
        try:
            ready = orjson.loads(ready_file.read_bytes())
            return {field: str(ready[field]) for fields in MARKET_URL_FIELDS.values() for field in fields}
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
            pass
        if time.monotonic() > deadline:
            raise StartupError(f"the exchange simulator was not ready within {READY_TIMEOUT_S:.0f}s")
        await _wait_or_stop(asyncio.sleep(0.05), stop)
    return None


async def supervise(children: list[Child], stop: asyncio.Event) -> None:
    """Restart children that die, each with its own backoff, until `stop` is set."""
    async with asyncio.TaskGroup() as group:
        for child in children:
            group.create_task(_keep_running(child, stop), name=f"supervise-{child.name}")


async def _keep_running(child: Child, stop: asyncio.Event) -> None:
    while True:
        code: int | None = None
        if child.process is not None:
            exited, code = await _wait_or_stop(child.process.wait(), stop)
            if not exited:
                return
        if time.monotonic() - child.started_at >= HEALTHY_RUN_S:
            child.backoff.reset()
        delay = child.backoff.next_delay()
        child.restarts += 1
        logger.error(
            "service exited, restarting",
            extra={"service": child.name, "exit_code": code, "restarts": child.restarts, "delay_s": round(delay, 1)},
        )
        slept, _ = await _wait_or_stop(asyncio.sleep(delay), stop)
        if not slept:
            return
        try:
            await child.start()
        except OSError as exc:
            logger.error("service could not be started", extra={"service": child.name, "error": repr(exc)})
            child.process = None


async def _wait_or_stop(awaitable: Awaitable[T], stop: asyncio.Event) -> tuple[bool, T | None]:
    """(True, its result) if `awaitable` finishes first, (False, None) once `stop` is set."""
    if stop.is_set():
        if asyncio.iscoroutine(awaitable):
            awaitable.close()
        return False, None
    work = asyncio.ensure_future(awaitable)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work, stopped):
            task.cancel()
    if work.done() and not work.cancelled() and not stop.is_set():
        return True, work.result()
    return False, None
