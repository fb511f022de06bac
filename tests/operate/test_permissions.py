"""Least privilege: every service runs under its own user of `deploy/nats/auth.conf` with exactly its permissions.

The real nats-server is started with the shipped file itself, so the roles tested are the
roles deployed; a permission a service lacks would show as a violation in the server's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from services.exchange import BUNDLED_REPLAY, Exchange, ExchangeConfig
from tests.harness import settings_for, wait_until_stored
from tests.processes import ServiceProcesses, service_env
from tradetape.bus.provision import ensure_streams
from tradetape.bus.subjects import TRADES_STREAM, query_subject, trade_subject
from tradetape.cli.status import read_status
from tradetape.client import TapeClient
from tradetape.runtime.nats_server import EmbeddedNatsServer, find_nats_server
from tradetape.settings import Settings

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
AUTH_CONF = ROOT / "deploy" / "nats" / "auth.conf"
ROLES = ("ingest", "persist", "analytics", "query", "importer", "monitor", "admin")
SERVICES = ("persist", "analytics", "ingest")
DELETE_STREAM = f"$JS.API.STREAM.DELETE.{TRADES_STREAM}"


@contextlib.asynccontextmanager
async def secured_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """nats-server with the shipped users; the passwords only in the server's own environment."""
    passwords = {role: "p" + secrets.token_hex(16) for role in ROLES}  # as deploy/make-env makes them
    server = EmbeddedNatsServer(tmp_path / "nats", config_file=AUTH_CONF)
    with monkeypatch.context() as env:
        for role, password in passwords.items():
            env.setenv(f"TRADETAPE_{role.upper()}_PASSWORD", password)
        await server.start()
    try:
        yield server.url, passwords
    finally:
        await server.stop()


def violations(tmp_path: Path) -> list[str]:
    log = (tmp_path / "nats" / "nats-server.log").read_text()
    return [line for line in log.splitlines() if "violation" in line.lower()]


class Probe:
    """A raw client of one user that records the server's permission errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc = Client()

    async def connect(self, url: str, user: str, password: str) -> Probe:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        await self.nc.connect(url, user=user, password=password, error_cb=on_error, allow_reconnect=False)
        return self

    async def refused(self, subject: str) -> bool:
        """Publish to `subject`: True once the server's permissions violation for it arrives (it may trail a PONG)."""
        before = len(self.errors)
        await self.nc.publish(subject, b"{}")
        await self.nc.flush(timeout=5)
        for _ in range(100):
            # nats-py lowers the case of the server's message
            if any(f'violation for publish to "{subject.lower()}"' in error for error in self.errors[before:]):
                return True
            await asyncio.sleep(0.02)
        return False

    async def allowed(self, subject: str) -> bool:
        """Request on `subject`: an answer or the server's "no responders" shows the publish went through."""
        try:
            await self.nc.request(subject, b"{}", timeout=2)
        except NoRespondersError:
            return True
        except NatsTimeoutError:
            return False
        return True


async def test_each_service_runs_end_to_end_with_only_its_own_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processes: ServiceProcesses
) -> None:
    async with secured_server(tmp_path, monkeypatch) as (url, passwords):
        config = ExchangeConfig(symbols=("BTCUSDT",), replay=(BUNDLED_REPLAY,), rate=0)
        async with Exchange(config) as exchange:
            base = settings_for(url, tmp_path / "data", exchange, "BTCUSDT")
            for role in SERVICES:
                own = Settings(**{**base.model_dump(), "nats_user": role, "nats_password": passwords[role]})
                processes.start([role], service_env(own))
            query_user = Settings(nats_url=url, nats_user="query", nats_password=passwords["query"])
            async with await TapeClient.connect(query_user) as tape:
                coverage = await wait_until_stored(tape.nc, "BTCUSDT", 5000, timeout=60)
                assert coverage["missing_count"] == 0
                profile = await tape.query("volume_profile", "BTCUSDT", last="30d", row_size="10")
                assert profile.trade_count == 5000
                assert "coverage" in (await tape.served())["BTCUSDT"]  # $SRV.INFO as the query user
            monitor = Settings(**{**base.model_dump(), "nats_user": "monitor", "nats_password": passwords["monitor"]})
            status = await read_status(monitor)  # `tradetape status` needs no more than the monitor role
            assert status.stream is not None and status.stream.messages == 5000
            assert [consumer.name for consumer in status.stream.consumers] == ["persist-main"]
            assert status.tail_probe is not None and status.tail_probe.symbols == 1, "ingest's stats, as the monitor"
        processes.stop_all()
        assert violations(tmp_path) == []


async def test_only_ingest_publishes_trades_and_only_admin_deletes_the_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with secured_server(tmp_path, monkeypatch) as (url, passwords):
        admin = await nats.connect(url, user="admin", password=passwords["admin"])
        probes: dict[str, Probe] = {}
        try:
            await ensure_streams(admin.jetstream(), Settings(nats_url=url))
            for role in ROLES[:-1]:
                probes[role] = await Probe().connect(url, role, passwords[role])

            query = probes["query"]
            assert await query.refused(trade_subject("BTCUSDT"))
            assert await query.refused(DELETE_STREAM)
            assert await query.allowed(query_subject("coverage", "BTCUSDT"))
            assert await query.allowed("$SRV.PING")
            for role in ("persist", "analytics", "importer", "monitor"):
                assert await probes[role].refused(trade_subject("BTCUSDT")), role
            for role in ROLES[:-1]:
                assert await probes[role].refused(DELETE_STREAM), role
            assert await probes["ingest"].allowed(trade_subject("BTCUSDT"))  # answered by the stream's ack
            info = await probes["monitor"].nc.jetstream().stream_info(TRADES_STREAM)

            stream = await admin.jetstream().stream_info(TRADES_STREAM)
            assert stream.state.messages == info.state.messages == 1, "only ingest's publish was stored"
            await admin.jetstream().delete_stream(TRADES_STREAM)
        finally:
            for probe in probes.values():
                await probe.nc.close()
            await admin.close()


def make_env(tmp_path: Path) -> dict[str, str]:
    """Run `deploy/make-env` as a user would; the passwords it wrote."""
    target = tmp_path / ".env"
    subprocess.run([str(ROOT / "deploy" / "make-env"), str(target)], check=True, capture_output=True, timeout=30)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    again = subprocess.run([str(ROOT / "deploy" / "make-env"), str(target)], capture_output=True, timeout=30)
    assert again.returncode == 1, "an existing .env is never overwritten"
    return dict(line.split("=", 1) for line in target.read_text().splitlines())


def test_make_env_writes_a_password_for_every_user_the_compose_nats_config_accepts(tmp_path: Path) -> None:
    passwords = make_env(tmp_path)
    assert set(passwords) == {f"TRADETAPE_{role.upper()}_PASSWORD" for role in ROLES}
    assert len(set(passwords.values())) == len(ROLES)
    result = subprocess.run(
        [str(find_nats_server()), "-c", str(ROOT / "deploy" / "nats" / "tradetape.conf"), "-js", "-t"],
        env={**os.environ, **passwords},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def test_compose_publishes_on_loopback_only_and_runs_each_service_as_its_own_user(tmp_path: Path) -> None:
    passwords = make_env(tmp_path)
    compose = Path(sys.executable).parent / "docker-compose"
    result = subprocess.run(
        [str(compose), "-f", str(ROOT / "docker-compose.yml"), "--profile", "simulate", "config", "--format", "json"],
        env={**os.environ, **passwords},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published and all(port["host_ip"] == "127.0.0.1" for port in published)
    for role in SERVICES:
        env = services[role]["environment"]
        assert env["TRADETAPE_NATS_USER"] == role
        assert env["TRADETAPE_NATS_PASSWORD"] == passwords[f"TRADETAPE_{role.upper()}_PASSWORD"]
        assert services[role]["depends_on"]["nats"]["condition"] == "service_healthy"
    assert all("healthcheck" in service for service in services.values())
    nats_env = services["nats"]["environment"]
    assert nats_env == passwords, "the NATS container gets the passwords of every user, nothing else"
    mounts = {volume["target"]: volume for volume in services["nats"]["volumes"]}
    assert Path(mounts["/etc/nats"]["source"]) == AUTH_CONF.parent and mounts["/etc/nats"]["read_only"]
