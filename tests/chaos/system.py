"""The whole tape as separate processes, for chaos scenarios: every part can be killed and restarted.

`System` runs nats-server (one node with a file store, or the 3-node `NatsCluster`), the
simulator generating several symbols at a steady rate, persist, two analytics replicas
and ingest, each a `python -m tradetape.cli` child. It kills (`SIGKILL`) and restarts any
of them, stops and restarts nats-server on the same port and store, and sets the
simulator's faults over its `/control/faults` endpoint. Everything it started is stopped
when the `async with` block ends, whatever happened inside.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import nats
import orjson
import pytest
from nats.aio.client import Client

from tests.cluster.topology import NatsCluster, child_env, exchange_urls, http_get, start_exchange
from tests.harness import wait_for
from tests.processes import ServiceProcesses
from tradetape.bus.provision import ensure_streams
from tradetape.runtime.nats_server import EmbeddedNatsServer
from tradetape.services.exchange.faults import FaultConfig
from tradetape.settings import Settings

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT")
RATE = 60.0
"""Generated trades/s per symbol: 240/s over the four, modest enough for a loaded 2-core machine."""
WARM_UP_TRADES = 100
"""Trades of every symbol stored before a scenario starts: the system is flowing end to end."""
ANALYTICS_REPLICAS = 2
SERVICES = ("persist", *(f"analytics-{i}" for i in range(ANALYTICS_REPLICAS)), "ingest")
"""Start order: the writer first, then its readers, then the feed."""


def chaos_settings(root: Path, nats_url: str, **overrides: Any) -> Settings:
    """Settings that make faults show within seconds: frequent roll-ups, quick silence and gap retries."""
    base: dict[str, Any] = {
        "nats_url": nats_url,
        "data_dir": root / "data",
        "symbols": SYMBOLS,
        "rollup_age_s": 1.0,
        "ingest_silence_timeout_s": 3.0,
        "ingest_gap_retry_max_s": 2.0,
        "ingest_stats_interval_s": 5.0,
        "log_level": "INFO",
    }
    return Settings(**{**base, **overrides})


class System:
    """`async with System(root) as system:` — the tape running, warmed up, torn down at exit."""

    def __init__(self, root: Path, *, cluster: bool = False, rate: float = RATE, **settings: Any) -> None:
        self.root = root
        self.rate = rate
        self._overrides = settings
        self._cluster: NatsCluster | None = NatsCluster(root / "nats") if cluster else None
        self._server: EmbeddedNatsServer | None = None
        log_dir = root / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.processes = ServiceProcesses(log_dir)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, list[int]] = {}
        self.settings: Settings | None = None
        self.client: Client | None = None
        self.rest_url = ""
        self.first_ids: dict[str, int] = {}
        """The first agg id stored of each symbol once warmed up: every later check starts there."""

    @property
    def symbols(self) -> tuple[str, ...]:
        assert self.settings is not None
        return self.settings.symbols

    @property
    def nats(self) -> Client:
        assert self.client is not None, "the system is not started"
        return self.client

    @property
    def cluster(self) -> NatsCluster:
        assert self._cluster is not None, "not a cluster system"
        return self._cluster

    async def __aenter__(self) -> System:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._cluster is not None:
            await self._cluster.start()
            url = self._cluster.url
            replicas = {"stream_replicas": 3}
        else:
            self._server = EmbeddedNatsServer(self.root / "nats")
            await self._server.start()
            url = self._server.url
            replicas = {}
        settings = chaos_settings(self.root, url, **{**replicas, **self._overrides})
        urls = url.split(",")
        self.client = await nats.connect(urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2, name="chaos")
        await ensure_streams(self.client.jetstream(), settings)
        ready = self.root / "exchange.json"
        _, self.rest_url = start_exchange(self.processes, child_env(settings), ready, "--rate", str(self.rate))
        self.procs["exchange"] = self.processes.started[-1]
        self.settings = Settings(**{**settings.model_dump(), **exchange_urls(ready)})  # every market's URLs
        for name in SERVICES:
            self.start_service(name)
        await wait_for(self._warmed_up, 90, interval=0.5)
        print(f"system up: {len(self.symbols)} instruments at {self.rate:g}/s each, first ids {self.first_ids}")

    async def _warmed_up(self) -> bool:
        from tests.chaos.invariant import coverage

        replies = [await coverage(self.nats, symbol) for symbol in self.symbols]
        if not all(r.get("trade_count", 0) >= WARM_UP_TRADES for r in replies):
            return False
        self.first_ids = {r["symbol"]: r["first_id"] for r in replies}
        return True

    def start_service(self, name: str) -> subprocess.Popen[bytes]:
        """Start `persist`, `ingest` or `analytics-<n>` (again), as its own process."""
        assert self.settings is not None
        self.check_alive(exclude=name)
        command = name.split("-", 1)[0]
        proc = self.processes.start([command], child_env(self.settings))
        self.procs[name] = proc
        self.logs.setdefault(name, []).append(len(self.processes.started) - 1)
        return proc

    def kill(self, name: str) -> None:
        """`kill -9` of one service, waited for."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def log(self, name: str) -> str:
        """Every log line the service's processes wrote, oldest process first."""
        return "".join(self.processes.log_of(index) for index in self.logs.get(name, []))

    def check_alive(self, exclude: str = "") -> None:
        """Fail at once if a process died that nobody killed."""
        for name, proc in self.procs.items():
            if name != exclude and proc.returncode is None and proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}")

    async def stop_nats(self) -> None:
        """Stop the single nats-server (its file store stays)."""
        assert self._server is not None, "a cluster system stops nodes with `cluster.stop_node`"
        await self._server.stop()

    async def start_nats(self) -> None:
        """The single nats-server again, on its port and its store."""
        assert self._server is not None
        self._server = EmbeddedNatsServer(self.root / "nats", port=self._server.port)
        await self._server.start()

    async def set_faults(self, **faults: Any) -> FaultConfig:
        """Change the simulator's faults (only those named); returns the faults in force."""
        query = urllib.parse.urlencode({name: str(value) for name, value in faults.items()})
        status, body = await asyncio.to_thread(http_get, f"{self.rest_url}/control/faults?{query}")
        assert status == 200, f"the simulator refused faults {faults}: {body}"
        return FaultConfig(**orjson.loads(body))

    async def heal(self) -> None:
        """Every fault off."""
        await self.set_faults(**dataclasses.asdict(FaultConfig()))

    async def stop(self) -> None:
        self.processes.stop_all()
        if self.client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.close(), 5)
        if self._server is not None:
            await self._server.stop()
        if self._cluster is not None:
            self._cluster.stop()


@contextlib.contextmanager
def small_volume(path: Path, size_mb: int) -> Iterator[None]:
    """A tmpfs of `size_mb` mounted at `path` (root only), unmounted at exit whatever happened."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a {size_mb} MB tmpfs for the full-disk scenario: {mounted.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path) -> int:
    """Write `path` until the volume is full; the bytes written."""
    written = 0
    chunk = b"\0" * (1 << 16)
    with path.open("wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            written += handle.write(chunk) or 0
    return written
