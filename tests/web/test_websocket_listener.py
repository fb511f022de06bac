"""The embedded nats-server's WebSocket listener (what the page connects to), beside a config file."""

from __future__ import annotations

import json
from pathlib import Path

import websockets

from tradetape.runtime.nats_server import EmbeddedNatsServer


async def test_websocket_listener_greets_with_the_servers_info_and_keeps_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "limits.conf"
    config.parent.mkdir()
    config.write_text("max_payload: 2MB\n")
    async with EmbeddedNatsServer(tmp_path / "nats", config_file=config, websocket_port=0) as server:
        assert server.websocket_url == f"ws://127.0.0.1:{server.websocket_port}"
        async with websockets.connect(server.websocket_url) as ws:
            greeting = await ws.recv()
        assert isinstance(greeting, bytes) and greeting.startswith(b"INFO ")
        info = json.loads(greeting[5:])
        assert info["server_name"] == server.name
        assert info["max_payload"] == 2 * 1024 * 1024


async def test_no_listener_unless_asked(tmp_path: Path) -> None:
    async with EmbeddedNatsServer(tmp_path / "nats") as server:
        assert server.websocket_url is None
        assert not (tmp_path / "nats" / "server.conf").exists()
