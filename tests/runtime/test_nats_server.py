"""The embedded nats-server reports success only for the server it started itself."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tradetape.ground.url_files import read_url_file, remove_url_file, write_url_file
from tradetape.runtime.nats_server import EmbeddedNatsServer, NatsPortInUse
from tradetape.runtime.supervisor import start_embedded_nats
from tradetape.settings import Settings

pytestmark = pytest.mark.timeout(60)


async def _server_name(url: str) -> str:
    """The name in the INFO line a NATS server greets every client with."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
        await writer.wait_closed()
    assert line.startswith(b"INFO ")
    return str(json.loads(line[5:])["server_name"])


async def test_free_port_in_its_own_session(tmp_path: Path) -> None:
    async with EmbeddedNatsServer(tmp_path / "nats") as server:
        assert server.port != 0 and server.pid is not None
        assert os.getsid(server.pid) == server.pid != os.getsid(0)
        assert await _server_name(server.url) == server.name
    assert server.pid is None


async def test_an_occupied_port_is_refused(tmp_path: Path) -> None:
    squatter = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = squatter.sockets[0].getsockname()[1]
    try:
        server = EmbeddedNatsServer(tmp_path / "nats", port=port)
        with pytest.raises(NatsPortInUse):
            await server.start()
        assert server.pid is None
    finally:
        squatter.close()
        await squatter.wait_closed()


async def test_a_port_held_by_another_nats_server_is_refused(tmp_path: Path) -> None:
    async with EmbeddedNatsServer(tmp_path / "first") as first:
        second = EmbeddedNatsServer(tmp_path / "second", port=first.port)
        with pytest.raises(NatsPortInUse):
            await second.start()
        assert await _server_name(first.url) == first.name


async def test_up_falls_back_to_a_free_port_of_its_own(tmp_path: Path) -> None:
    async with EmbeddedNatsServer(tmp_path / "other") as other:
        settings = Settings(data_dir=tmp_path / "data")
        server = await start_embedded_nats(settings, port=other.port)
        try:
            assert server.port != other.port
            assert server.url != other.url
            assert await _server_name(server.url) == server.name != other.name
        finally:
            await server.stop()


def test_url_file_removed_only_while_it_holds_our_url(tmp_path: Path) -> None:
    path = tmp_path / "nats.url"
    write_url_file(path, "nats://127.0.0.1:1")
    assert not remove_url_file(path, "nats://127.0.0.1:2")
    assert read_url_file(path) == "nats://127.0.0.1:1"
    assert remove_url_file(path, "nats://127.0.0.1:1")
    assert not path.exists()
    assert not remove_url_file(path, "nats://127.0.0.1:1")
