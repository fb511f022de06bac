"""`tradetape mcp` driven by the `mcp` package's own client over stdio, against the real services.

The module's tests only read: they share one tape (the bundled replay stored through the real services),
each with its own MCP server process.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from nats.aio.client import Client

from tests.harness import replay_pipeline, request, wait_until_stored
from tests.processes import ServiceProcesses
from tradetape.mcp_server import ERROR_CODES, MAX_TOOL_TEXT
from tradetape.testing import nats_server

pytestmark = pytest.mark.timeout(90)
SHARED = pytest.mark.asyncio(loop_scope="module")
"""The tests on the module's one tape."""


@dataclass(frozen=True)
class Tape:
    nats_url: str
    raw: Client
    coverage: dict[str, Any]
    """BTCUSDT's coverage reply once all 5000 trades were stored."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tape(tmp_path_factory: pytest.TempPathFactory, docker_available: bool) -> AsyncIterator[Tape]:
    root = tmp_path_factory.mktemp("mcp")
    async with (
        nats_server(root / "nats", docker=docker_available) as url,
        replay_pipeline(url, root / "data") as (_, running, raw),
    ):
        yield Tape(url, raw, await wait_until_stored(raw, "BTCUSDT", 5000, running=running))


@asynccontextmanager
async def stdio_session(tape: Tape, directory: Path) -> AsyncIterator[ClientSession]:
    """`tradetape mcp` on stdio, as an assistant's configuration starts it, and an initialized session with it."""
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "tradetape.cli", "mcp"],
        env={**os.environ, "NATS_URL": tape.nats_url, "TRADETAPE_LOG_LEVEL": "WARNING"},
    )
    with (directory / "mcp.log").open("w") as errlog:
        async with stdio_client(server, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


@pytest.mark.slow
@SHARED
async def test_assistant_lists_described_tools_and_gets_the_nats_replies(tape: Tape, tmp_path: Path) -> None:
    coverage, raw = tape.coverage, tape.raw
    async with stdio_session(tape, tmp_path) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert len(tools) >= 9 and {"volume_profile", "liquidity_vacuums", "list_symbols"} <= set(tools)
        profile_tool = tools["volume_profile"]
        assert profile_tool.description and "ISO-8601" in profile_tool.description
        assert "row_size" in profile_tool.input_schema["properties"]
        assert profile_tool.input_schema["required"] == ["symbol"]

        span = {"start": coverage["first_time"], "end": coverage["last_time"] + 1, "row_size": "10"}
        result = await session.call_tool("volume_profile", {"symbol": "BTCUSDT", **span})
        assert not result.is_error
        wire, _ = await request(raw, "tape.query.volume_profile.BTCUSDT", span)
        assert json.loads(result.content[0].text) == wire

        listed = await session.call_tool("list_symbols", {})
        symbols = json.loads(listed.content[0].text)["symbols"]
        assert symbols[0]["symbol"] == "BTCUSDT" and symbols[0]["trade_count"] == 5000

        failed = await session.call_tool("volume_profile", {"symbol": "BTCUSDT", **span, "min_trades": 9000})
        assert failed.is_error
        error = json.loads(failed.content[0].text)["error"]
        assert error["code"] == "insufficient_trades" and error["details"]["found"] == 5000

        invalid = await session.call_tool("bars", {"symbol": "BTCUSDT", "interval": "3d"})
        assert invalid.is_error and json.loads(invalid.content[0].text)["error"]["code"] == "invalid_request"


HOSTILE_SYMBOL = "A" * 5000
"""Above nats-server's 4 KiB control line as a subject: the server used to drop the MCP server's connection."""


async def _refused_then_served(hostile: ClientSession, normal: ClientSession) -> None:
    refused = await hostile.call_tool("coverage", {"symbol": HOSTILE_SYMBOL})
    for _ in range(2):  # every later call used to fail "nats: connection closed" until a restart
        served = await normal.call_tool("coverage", {"symbol": "btcusdt"})
        assert not served.is_error, served.content
        assert json.loads(served.content[0].text)["trade_count"] == 5000
    assert refused.is_error
    error = json.loads(refused.content[0].text)["error"]
    assert error["code"] == "invalid_request" and "is not a Binance symbol" in error["message"]
    assert len(refused.content[0].text) < 500


@pytest.mark.slow
@SHARED
async def test_a_hostile_symbol_is_refused_and_the_stdio_server_keeps_serving(tape: Tape, tmp_path: Path) -> None:
    async with stdio_session(tape, tmp_path) as session:
        await _refused_then_served(session, session)


@pytest.mark.slow
@SHARED
async def test_one_assistants_hostile_symbol_leaves_the_http_server_serving_the_others(
    tape: Tape, tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    processes = ServiceProcesses(tmp_path)
    env = {**os.environ, "NATS_URL": tape.nats_url, "TRADETAPE_LOG_LEVEL": "WARNING"}
    try:
        mcp = processes.start(["mcp", "--http", "--mcp-host", "127.0.0.1", "--mcp-port", str(port)], env)
        await _wait_listening(port, mcp)
        url = f"http://127.0.0.1:{port}/mcp"
        async with _session(url) as first, _session(url) as second:  # two assistants, one NATS connection
            await _refused_then_served(first, second)
            await _refused_then_served(second, first)
    finally:
        processes.stop_all()


async def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        assert proc.poll() is None, "the MCP server exited"
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError("the MCP server did not listen within 30 s")


@asynccontextmanager
async def _session(url: str) -> AsyncIterator[ClientSession]:
    """An initialized MCP client session over streamable HTTP."""
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


@pytest.mark.slow
@SHARED
async def test_replies_fit_an_assistant_and_errors_name_what_there_is(tape: Tape, tmp_path: Path) -> None:
    """`trades` with limit 5000 handed an assistant 584 KB; an unknown tool's message left out list_symbols."""
    async with stdio_session(tape, tmp_path) as session:
        tools = [tool.name for tool in (await session.list_tools()).tools]

        unknown = await session.call_tool("volume_profiles", {"symbol": "BTCUSDT"})
        error = json.loads(unknown.content[0].text)["error"]
        assert unknown.is_error and error["code"] == "invalid_request"
        assert all(name in error["message"] for name in tools) and "list_symbols" in error["message"]

        unserved = await session.call_tool("coverage", {"symbol": "SOLUSDT"})
        error = json.loads(unserved.content[0].text)["error"]
        assert error["code"] == "unavailable" and "served symbols: BTCUSDT" in error["message"]

        # a page cut to fit continues, by its next_cursor, right after its last trade shown
        ids: list[int] = []
        arguments: dict[str, object] = {"symbol": "BTCUSDT", "last": "24h", "limit": 5000}
        while True:
            page = await session.call_tool("trades", arguments)
            assert not page.is_error and len(page.content[0].text) <= MAX_TOOL_TEXT
            body = json.loads(page.content[0].text)
            ids += [trade["a"] for trade in body["trades"]]
            if body["next_cursor"] is None:
                break
            assert body["truncated"]["trades"] == {"shown": len(body["trades"]), "of": 5000 - len(ids)
                                                   + len(body["trades"])}
            assert "cursor" in body["truncated"]["how_to_get_more"]
            arguments = {"symbol": "BTCUSDT", "cursor": body["next_cursor"], "limit": 5000}
        assert ids == list(range(ids[0], ids[0] + 5000)) and len(ids) > 5000 // 200

        profile = await session.call_tool("volume_profile", {"symbol": "BTCUSDT", "last": "24h", "rows": 2000})
        body = json.loads(profile.content[0].text)
        assert len(profile.content[0].text) <= MAX_TOOL_TEXT and body["poc"] and body["trade_count"] == 5000
        assert body["truncated"]["rows"]["shown"] == len(body["rows"]) < body["truncated"]["rows"]["of"]
        assert "ask for fewer rows or a larger row_size" in body["truncated"]["how_to_get_more"]


def test_every_error_code_a_tool_can_carry_is_in_the_mcp_docs() -> None:
    """The MCP section named no code at all (`unavailable`, the MCP server's own, was documented nowhere)."""
    section = (Path(__file__).parents[1] / "docs" / "mcp.md").read_text()
    source = (Path(__file__).parents[1] / "tradetape" / "api" / "errors.py").read_text()
    made = set(re.findall(r'QueryError\(\s*"(\w+)"', source))
    assert len(made) >= 6 and made <= set(ERROR_CODES), made - set(ERROR_CODES)
    for code in ERROR_CODES:
        assert f"`{code}`" in section, code
