"""`tradetape status` against a real running system (every part a process), and against no NATS at all."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest

from tests.cli_in_process import Cli
from tests.cluster.topology import child_env, free_ports, start_replay_system
from tests.harness import wait_for, wait_until_stored
from tests.processes import ServiceProcesses
from tradetape.bus.replies import ReplyGuard
from tradetape.runtime.metrics import announce
from tradetape.settings import Settings
from tradetape.status import collect_status
from tradetape.store.shards import write_manifest

pytestmark = pytest.mark.timeout(90)


RunStatus = Callable[..., Awaitable[subprocess.CompletedProcess[str]]]


@pytest.fixture
def run_status(cli: Cli, tmp_path: Path) -> RunStatus:
    """`tradetape status *args` with `settings`, in this process on a thread (the test's loop keeps running)."""

    async def run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
        code, out, err = await asyncio.to_thread(cli, tmp_path, "status", *args, **settings.to_env())
        return subprocess.CompletedProcess(args, code, out, err)

    return run


@pytest.mark.slow
async def test_status_shows_stream_consumers_services_and_symbols(
    nats_url: str, tmp_path: Path, processes: ServiceProcesses, run_status: RunStatus
) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path / "data", symbols=("BTCUSDT",))
    start_replay_system(processes, settings, {})
    client = await nats.connect(nats_url)
    try:
        await wait_until_stored(client, "BTCUSDT", 5000, timeout=60)

        async def settled() -> dict[str, Any] | None:
            done = await run_status(settings, "--json")
            assert done.returncode == 0, done.stderr
            status: dict[str, Any] = orjson.loads(done.stdout)
            consumers = status["stream"]["consumers"] if status["stream"] else []
            quiet = consumers and all(c["pending"] == 0 and c["ack_pending"] == 0 for c in consumers)
            return status if quiet and len(status["services"]) == 3 else None

        status = await wait_for(settled, 30, interval=0.5)
    finally:
        await client.close()
    assert status["nats"]["reachable"] is True
    assert status["nats"]["url"] == nats_url
    assert status["stream"]["name"] == "TAPE_TRADES"
    assert status["stream"]["messages"] == 5000
    assert status["stream"]["bytes"] > 5000 * 200
    assert [c["name"] for c in status["stream"]["consumers"]] == ["persist-main"]
    services = {s["name"]: s for s in status["services"]}
    assert sorted(services) == ["tradetape-analytics", "tradetape-ingest", "tradetape-persist"]
    for service in services.values():
        assert service["version"] == "0.1.0"
        assert service["uptime_s"] > 0
    assert services["tradetape-persist"]["metadata"]["shard"] == "main"
    assert services["tradetape-analytics"]["requests"] >= 1  # the coverage queries: status's own among them
    [symbol] = status["symbols"]
    assert symbol["symbol"] == "BTCUSDT"
    assert symbol["shard"] == "main"
    assert symbol["trade_count"] == 5000
    assert symbol["stored_gaps"] == 0
    assert symbol["open_gaps"] == 0
    assert symbol["last_time"] > symbol["first_time"]
    assert symbol["disk_bytes"] > 0
    probe = status["tail_probe"]
    assert (probe["symbols"], probe["after_s"], probe["interval_s"]) == (1, 60.0, 0.4)
    assert probe["found_within_s"] == 60.4, "after_s + symbols x interval at the default budget"
    assert status["problems"] == []

    screen = await run_status(settings)
    assert screen.returncode == 0
    assert "TAPE_TRADES: 5000 messages" in screen.stdout
    assert "persist-main" in screen.stdout
    assert "tradetape-ingest" in screen.stdout
    assert "BTCUSDT   main      5000" in screen.stdout
    assert "ingest tail probe: a lost last trade is found within 1m00s (1 symbols" in screen.stdout


@pytest.mark.slow
async def test_status_without_nats_says_unreachable_and_exits_2(tmp_path: Path, run_status: RunStatus) -> None:
    settings = Settings(nats_url=f"nats://127.0.0.1:{free_ports(1)[0]}", data_dir=tmp_path / "data")
    done = await run_status(settings, "--json")
    assert done.returncode == 2
    status = orjson.loads(done.stdout)
    assert status["nats"]["reachable"] is False
    assert "cannot reach NATS" in status["nats"]["error"]
    assert status["services"] == [] and status["symbols"] == []


@pytest.mark.slow
def test_status_watch_refreshes_until_stopped(tmp_path: Path) -> None:
    settings = Settings(nats_url=f"nats://127.0.0.1:{free_ports(1)[0]}", data_dir=tmp_path / "data")
    command = [sys.executable, "-m", "tradetape.cli", "status", "--json", "--watch", "0.2"]
    proc = subprocess.Popen(command, env=child_env(settings), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    stamps = [orjson.loads(line)["collected_at"] for line in lines]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    assert proc.returncode == 0


@pytest.mark.slow
async def test_with_all_status_names_the_symbols_the_shards_recorded_never_all(nats_url: str, tmp_path: Path) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path / "data", symbols="ALL")
    client = await nats.connect(nats_url)
    presence = await announce(client, "persist", {"symbols": "ALL", "shard": "main"}, ReplyGuard("persist"))
    try:
        before = await collect_status(client, settings, nats_url)
        assert before.symbols == [] and any("TRADETAPE_SYMBOLS=ALL" in p for p in before.problems)
        assert before.tail_probe is None and not any("ingest stats" in p for p in before.problems), "no ingest runs"
        write_manifest(settings.shard_dir, "main", ("ETHUSDT", "BTCUSDT"))
        after = await collect_status(client, settings, nats_url)
        assert [(row.symbol, row.shard) for row in after.symbols] == [("BTCUSDT", "main"), ("ETHUSDT", "main")]
    finally:
        await presence.stop()
        await client.close()
