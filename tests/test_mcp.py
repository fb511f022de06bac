"""`tradetape mcp` driven by the `mcp` package's own client over stdio, against the real services."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.harness import replay_pipeline, request, wait_until_stored

pytestmark = pytest.mark.timeout(90)


async def test_assistant_lists_described_tools_and_gets_the_nats_replies(nats_url: str, tmp_path: Path) -> None:
    async with replay_pipeline(nats_url, tmp_path) as (_, running, raw):
        coverage = await wait_until_stored(raw, "BTCUSDT", 5000, running=running)
        server = StdioServerParameters(
            command=sys.executable,
            args=["-m", "tradetape.cli", "mcp"],
            env={**os.environ, "NATS_URL": nats_url, "TRADETAPE_LOG_LEVEL": "WARNING"},
        )
        with (tmp_path / "mcp.log").open("w") as errlog:
            async with stdio_client(server, errlog=errlog) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
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
