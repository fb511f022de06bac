"""`tradetape web`'s HTTP side: the committed files, and a config that says where NATS is or why not."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.harness import wait_for
from tests.processes import ServiceProcesses
from tradetape.runtime.nats_users import query_credential
from tradetape.settings import Settings
from tradetape.store.shards import write_manifest
from tradetape.web.server import WebServer


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_page_files_and_config_with_the_query_user(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        symbols=("BTCUSDT", "ETHUSDT"),
        web_nats_url="ws://127.0.0.1:9999",
        web_nats_user="query",
        web_nats_password="secret",
    )
    with WebServer(settings, port=0) as web:
        status, kind, body = get(web.url)
        assert (status, kind) == (200, "text/html; charset=utf-8") and b'id="poc"' in body
        status, kind, body = get(web.url + "nats.js")
        assert (status, kind) == (200, "text/javascript; charset=utf-8") and b"export {" in body
        status, kind, body = get(web.url + "orderflow.js")
        assert (status, kind) == (200, "text/javascript; charset=utf-8") and b"export async function" in body
        status, _, body = get(web.url + "config.json")
        assert status == 200
        assert json.loads(body) == {
            "servers": "ws://127.0.0.1:9999",
            "symbols": ["BTCUSDT", "ETHUSDT"],
            "user": "query",
            "password": "secret",
            "inbox_prefix": "_INBOX_QUERY",
        }
        assert get(web.url + "../pyproject.toml")[0] == 404


def test_with_all_the_page_lists_what_the_shards_recorded(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, symbols="ALL", web_nats_url="ws://127.0.0.1:9999")
    with WebServer(settings, port=0) as web:
        status, _, body = get(web.url + "config.json")
        assert status == 503 and b"TRADETAPE_SYMBOLS=ALL" in body
        write_manifest(tmp_path / "shards" / "s0", "s0", ("SOLUSDT", "BTCUSDT"))
        write_manifest(tmp_path / "shards" / "s1", "s1", ("ETHUSDT",))
        status, _, body = get(web.url + "config.json")
        assert status == 200 and json.loads(body)["symbols"] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def test_only_symbols_reach_the_page_whatever_a_manifest_holds(tmp_path: Path) -> None:
    """A manifest holding `BTC.USDT`, `>` or `../../x` (as imports under ALL used to write) lists none of them."""
    settings = Settings(data_dir=tmp_path, symbols="ALL", web_nats_url="ws://127.0.0.1:9999")
    hostile = ["BTC.USDT", ">", "../../x", "<script>", "A" * 5000, 7, "ETHUSDT"]
    for shard, names in (("s0", hostile), ("s1", ["SOLUSDT"])):
        (tmp_path / "shards" / shard).mkdir(parents=True)
        (tmp_path / "shards" / shard / "shard.json").write_text(json.dumps({"shard": shard, "symbols": names}))
    elsewhere = tmp_path / "shards" / "s2"  # a manifest naming another directory than its own
    elsewhere.mkdir()
    (elsewhere / "shard.json").write_text(json.dumps({"shard": "../../etc", "symbols": ["BNBUSDT"]}))
    with WebServer(settings, port=0) as web:
        status, _, body = get(web.url + "config.json")
    assert status == 200 and json.loads(body)["symbols"] == ["ETHUSDT", "SOLUSDT"]
    with pytest.raises(ValueError, match="not a Binance symbol"):
        write_manifest(tmp_path / "shards" / "s3", "s3", ("BTCUSDT", "BTC.USDT"))
    assert not (tmp_path / "shards" / "s3").exists()


def test_config_follows_the_server_and_query_user_up_records_and_says_what_is_missing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with WebServer(settings, port=0) as web:
        status, _, body = get(web.url + "config.json")
        assert status == 503
        assert b"TRADETAPE_WEB_NATS_URL" in body and str(tmp_path).encode() in body
        settings.nats_ws_url_file.write_text("ws://127.0.0.1:4321\n")
        status, _, body = get(web.url + "config.json")
        assert status == 503 and str(settings.nats_ws_user_file).encode() in body
        credential = query_credential(settings.nats_ws_user_file)
        status, _, body = get(web.url + "config.json")
        assert status == 200
        assert json.loads(body) == {
            "servers": "ws://127.0.0.1:4321",
            "inbox_prefix": "_INBOX_QUERY",
            "symbols": ["BTCUSDT", "ETHUSDT"],
            "user": "query",
            "password": credential.password.get_secret_value(),
        }
        settings.nats_ws_user_file.chmod(0o644)  # no longer its owner's alone: not handed out
        assert get(web.url + "config.json")[0] == 503


def test_stop_is_safe_twice(tmp_path: Path) -> None:
    web = WebServer(Settings(data_dir=tmp_path), port=0)
    web.start()
    web.stop()
    web.stop()


@pytest.mark.slow
async def test_tradetape_web_serves_until_sigterm(tmp_path: Path, processes: ServiceProcesses) -> None:
    with socket.socket() as probe:  # a free port for the child
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "TRADETAPE_DATA_DIR": str(tmp_path), "TRADETAPE_SYMBOLS": "ETHUSDT"}
    web = processes.start(["web", "--web-port", str(port), "--web-nats-url", "ws://127.0.0.1:4223"], env)
    url = f"http://127.0.0.1:{port}/config.json"

    async def served() -> bytes | None:
        try:
            return get(url)[2]
        except OSError:
            return None

    body = await wait_for(served, timeout=30)
    assert json.loads(body)["servers"] == "ws://127.0.0.1:4223" and json.loads(body)["symbols"] == ["ETHUSDT"]
    web.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(web.wait, 10) == 0
    assert f"tradetape web: http://127.0.0.1:{port}/" in processes.log_of(0)
