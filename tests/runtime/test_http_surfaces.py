"""The HTTP surfaces as users start them (`tradetape web`, a service's metrics port, `tradetape mcp --http`),
probed over real sockets: who they answer, what they ask of a caller, how long a slow caller may hold them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.cluster.topology import free_ports
from tests.processes import ServiceProcesses

pytestmark = pytest.mark.timeout(120)

SURFACES = ("web", "metrics", "mcp")
PATHS = {"web": "/config.json", "metrics": "/healthz", "mcp": "/mcp"}
REFUSALS = (401, 403, 421)
TOKEN = "s3cret-token-of-the-mcp-server-0123456789"
BEARER = f"Authorization: Bearer {TOKEN}"


@asynccontextmanager
async def serving(
    surface: str, processes: ServiceProcesses, tmp_path: Path, nats_url: str, **env: str
) -> AsyncIterator[int]:
    """The surface's port once its process accepts connections; `env` adds TRADETAPE_* settings."""
    port = free_ports(1)[0]
    child = {**os.environ, "TRADETAPE_DATA_DIR": str(tmp_path / "data"), "TRADETAPE_LOG_LEVEL": "WARNING", **env}
    if surface == "web":
        command = ["web", "--web-port", str(port), "--web-nats-url", "ws://127.0.0.1:1"]
    elif surface == "metrics":  # analytics waiting for a NATS that is not there still serves /healthz
        command = ["analytics"]
        child |= {"NATS_URL": f"nats://127.0.0.1:{free_ports(1)[0]}", "TRADETAPE_METRICS_PORT": str(port)}
    else:  # on every address, as the exposed case is the one to guard (a token is then required)
        command = ["mcp", "--http"]
        child |= {"NATS_URL": nats_url, "TRADETAPE_MCP_PORT": str(port), "TRADETAPE_MCP_HOST": "0.0.0.0"}
        child |= {"TRADETAPE_MCP_TOKEN": TOKEN}
    proc = processes.start(command, child)
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, f"{surface} exited: {processes.log_of(len(processes.started) - 1)}"
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            assert time.monotonic() < deadline, f"{surface} not listening on {port}"
            await asyncio.sleep(0.1)
            continue
        writer.close()
        break
    yield port


async def status_of(port: int, path: str, *headers: str, host: str | None = None, bearer: bool = True) -> int:
    """The status a plain GET gets; `host` replaces the Host header (default: the address connected to).

    A request to `/mcp` carries the right token unless `bearer` is false or `headers` hold an Authorization.
    """
    if bearer and path == PATHS["mcp"] and not any(header.startswith("Authorization:") for header in headers):
        headers = (*headers, BEARER)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host or f'127.0.0.1:{port}'}",
            "Accept: application/json, text/event-stream",
            "Connection: close",
            *headers,
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        status_line = await asyncio.wait_for(reader.readline(), 10)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def drip(port: int, path: str, patience: float) -> float:
    """Seconds until the server drops a client sending one header byte a second (inf: not within `patience`).

    The header lines are four bytes (`x:` CRLF), so a server that times out each line, not the request, never
    drops it.
    """
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for byte in itertools.cycle(b"x:\r\n"):
                await asyncio.sleep(1)
                writer.write(bytes([byte]))
                await writer.drain()

    trickling = asyncio.create_task(trickle())
    try:
        await asyncio.wait_for(reader.read(), patience)
    except TimeoutError:
        return math.inf
    except ConnectionError:
        pass  # dropped with our bytes unread: a reset
    finally:
        trickling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trickling
        writer.close()
    return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize("surface", SURFACES)
async def test_a_wrong_host_or_an_evil_origin_is_refused(
    surface: str, processes: ServiceProcesses, tmp_path: Path, nats_url: str
) -> None:
    env = {"TRADETAPE_HTTP_ALLOWED_HOSTS": "tape.example, 10.1.2.3:9999"}
    async with serving(surface, processes, tmp_path, nats_url, **env) as port:
        path = PATHS[surface]
        assert await status_of(port, path, host=f"evil.example:{port}") == 421  # DNS rebinding
        assert await status_of(port, path, host="10.1.2.3:9998") == 421
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", "tape.example", "10.1.2.3:9999"):
            assert await status_of(port, path, host=host) not in REFUSALS, host

        assert await status_of(port, path, "Origin: http://evil.example") == 403
        assert await status_of(port, path, f"Origin: http://evil.example:{port}") == 403
        assert await status_of(port, path, "Origin: null") == 403
        assert await status_of(port, path, f"Origin: http://localhost:{port}") not in REFUSALS
        assert await status_of(port, path) not in REFUSALS


@pytest.mark.slow
@pytest.mark.parametrize("surface", SURFACES)
async def test_a_client_dripping_its_headers_is_cut_off(
    surface: str, processes: ServiceProcesses, tmp_path: Path, nats_url: str
) -> None:
    async with serving(surface, processes, tmp_path, nats_url, TRADETAPE_HTTP_REQUEST_TIMEOUT_S="2") as port:
        held = await drip(port, PATHS[surface], patience=12)
    assert 1.5 <= held <= 10, f"a dripping client held the {surface} server for {held:.1f} s (deadline 2 s)"


@pytest.mark.slow
@pytest.mark.parametrize("surface", SURFACES)
async def test_fifty_dripping_clients_do_not_stop_a_request(
    surface: str, processes: ServiceProcesses, tmp_path: Path, nats_url: str
) -> None:
    env = {"TRADETAPE_HTTP_REQUEST_TIMEOUT_S": "8"}
    async with serving(surface, processes, tmp_path, nats_url, **env) as port:
        path = PATHS[surface]
        drippers = [asyncio.create_task(drip(port, path, patience=25)) for _ in range(50)]
        await asyncio.sleep(1.5)
        started = time.monotonic()
        status = await status_of(port, path)
        served_in = time.monotonic() - started
        held = await asyncio.gather(*drippers)
    assert status not in REFUSALS and served_in < 5, (status, served_in)
    assert max(held) <= 14, f"dripping clients held the {surface} server for up to {max(held):.1f} s (deadline 8 s)"


@pytest.mark.slow
@pytest.mark.parametrize("surface", SURFACES)
async def test_connections_beyond_the_bound_are_closed_at_once(
    surface: str, processes: ServiceProcesses, tmp_path: Path, nats_url: str
) -> None:
    env = {"TRADETAPE_HTTP_MAX_CONNECTIONS": "4", "TRADETAPE_HTTP_REQUEST_TIMEOUT_S": "60"}
    async with serving(surface, processes, tmp_path, nats_url, **env) as port:
        await asyncio.sleep(0.5)  # the readiness probe's connection is gone
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            with contextlib.suppress(ConnectionError):
                assert await asyncio.wait_for(reader.read(), 2.5) == b""
        finally:
            writer.close()
            for _, held in idle:
                held.close()
        await asyncio.sleep(0.5)
        assert await status_of(port, PATHS[surface]) not in REFUSALS


@pytest.mark.slow
async def test_mcp_on_every_address_refuses_to_start_without_a_token(
    processes: ServiceProcesses, tmp_path: Path, nats_url: str
) -> None:
    port = free_ports(1)[0]
    env = {**os.environ, "NATS_URL": nats_url, "TRADETAPE_MCP_HOST": "0.0.0.0", "TRADETAPE_MCP_PORT": str(port)}
    env.pop("TRADETAPE_MCP_TOKEN", None)
    proc = processes.start(["mcp", "--http"], env)
    assert await asyncio.to_thread(proc.wait, 30) == 2
    said = processes.log_of(0).strip().splitlines()
    assert len(said) == 1 and "TRADETAPE_MCP_TOKEN" in said[0] and "0.0.0.0" in said[0], said


@pytest.mark.slow
async def test_mcp_checks_the_bearer_token_on_every_request(
    processes: ServiceProcesses, tmp_path: Path, nats_url: str
) -> None:
    async with serving("mcp", processes, tmp_path, nats_url) as port:
        assert await status_of(port, "/mcp", bearer=False) == 401
        assert await status_of(port, "/mcp", "Authorization: Bearer " + TOKEN[:-1] + "x") == 401
        assert await status_of(port, "/mcp", "Authorization: Basic " + TOKEN) == 401
        assert await status_of(port, "/mcp", BEARER) not in REFUSALS
        assert await status_of(port, "/other", "Authorization: Bearer nope") == 401

        http = create_mcp_http_client(headers={"Authorization": f"Bearer {TOKEN}"})
        async with (
            http,
            streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            tools = {tool.name for tool in (await session.list_tools()).tools}
        assert {"list_symbols", "volume_profile"} <= tools
