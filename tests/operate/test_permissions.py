"""Least privilege: every service runs under its own user of `deploy/nats/auth.conf` with exactly its permissions.

The real nats-server is started with the shipped file itself, so the roles tested are the
roles deployed. One running system (simulator, ingest, persist, analytics, each a process
under its own user and inbox prefix) is shared by the module: every role is refused every
action it does not need, directly and through each responder's reply (a request whose reply
subject aims at trades, the ledger, live subjects or the JetStream API), and the responders
count what they dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NotFoundError

from tests.cluster.topology import free_ports, http_get
from tests.harness import wait_until_stored
from tests.processes import ServiceProcesses, service_env
from tradetape.bus.subjects import TRADES_STREAM
from tradetape.runtime.nats_server import EmbeddedNatsServer, find_nats_server
from tradetape.services.exchange import BUNDLED_REPLAY, Exchange, ExchangeConfig
from tradetape.settings import Settings
from tradetape.testing import simulator_settings

pytestmark = pytest.mark.timeout(180)
SHARED = pytest.mark.asyncio(loop_scope="module")
"""The tests on the one running system of the module."""

ROOT = Path(__file__).resolve().parents[2]
AUTH_CONF = ROOT / "deploy" / "nats" / "auth.conf"
ROLES = ("ingest", "persist", "analytics", "query", "importer", "monitor", "admin")
SERVICES = ("persist", "analytics", "ingest")
CLIENT_ROLES = ROLES[:-1]
INBOX = {role: f"_INBOX_{role.upper()}" for role in CLIENT_ROLES} | {"admin": "_INBOX"}
"""Each role's inbox prefix, as a deployment sets it (`TRADETAPE_NATS_INBOX_PREFIX`, `--inbox-prefix`)."""
LEDGER = "KV_TAPE_INGEST_LEDGER"

# What a role might try to publish, and which roles may (every other role must be refused). What
# is allowed goes through: it names a symbol and a consumer the running system does not have.
PUBLISH: dict[str, tuple[str, ...]] = {
    "tape.trades.binance.PROBEUSDT": ("ingest",),
    "$KV.TAPE_INGEST_LEDGER.binance.PROBEUSDT": ("ingest",),
    "tape.deadletter.ingest.PROBEUSDT": ("ingest",),
    "tape.live.profile.PROBEUSDT": ("persist",),
    "tape.deadletter.persist.PROBEUSDT": ("persist",),
    f"$JS.ACK.{TRADES_STREAM}.probe.1.1.1.1.0": ("persist",),
    f"$JS.API.STREAM.DELETE.{TRADES_STREAM}": (),
    f"$JS.API.STREAM.PURGE.{TRADES_STREAM}": (),
    f"$JS.API.STREAM.MSG.DELETE.{TRADES_STREAM}": (),
    f"$JS.API.STREAM.DELETE.{LEDGER}": (),
    f"$JS.API.STREAM.PURGE.{LEDGER}": (),
    "$JS.API.STREAM.DELETE.TAPE_DEADLETTER": (),
    f"$JS.API.CONSUMER.DELETE.{TRADES_STREAM}.persist-main": (),
    "tape.persist.import.PROBEUSDT": ("importer",),
    "tape.ingest.stats": ("monitor",),
    "$SRV.PING": ("monitor",),
    "$SRV.STATS.tradetape-ingest": ("monitor",),
    "$SRV.INFO.tradetape-analytics": ("query", "monitor"),
    "tape.query.coverage.BTCUSDT": ("query", "monitor"),
    "tape.replay.open.BTCUSDT": ("query",),
    "tape.replay.flow.probe": ("query",),
    # replies: a responder answers the inboxes of the roles that ask it, no one spoofs a service's replies
    "_INBOX.spoof": ("ingest", "persist", "analytics"),
    "_INBOX_QUERY.spoof": ("analytics",),
    "_INBOX_MONITOR.spoof": ("ingest", "persist", "analytics"),
    "_INBOX_IMPORTER.spoof": ("persist",),
    "_INBOX_INGEST.spoof": (),
    "_INBOX_PERSIST.spoof": (),
    "_INBOX_ANALYTICS.spoof": (),
}
# What a role might try to subscribe to, and which roles may.
SUBSCRIBE: dict[str, tuple[str, ...]] = {
    **{f"{INBOX[role]}.>": (role,) for role in CLIENT_ROLES},
    "_INBOX.>": (),
    ">": (),
    "tape.>": (),
    "tape.trades.>": (),
    "$KV.>": (),
    "$JS.API.>": (),
    "$SRV.>": (),
    "tape.live.>": ("query",),
    "tape.query.>": ("analytics",),
    "tape.replay.>": ("analytics",),
    "tape.persist.import.*": ("persist",),
    "tape.ingest.stats": ("ingest",),
}


@contextlib.asynccontextmanager
async def secured_server(directory: Path) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """nats-server with the shipped users; the passwords only in the server's own environment."""
    passwords = {role: "p" + secrets.token_hex(16) for role in ROLES}  # as deploy/make-env makes them
    server = EmbeddedNatsServer(directory / "nats", config_file=AUTH_CONF)
    with pytest.MonkeyPatch.context() as env:
        for role, password in passwords.items():
            env.setenv(f"TRADETAPE_{role.upper()}_PASSWORD", password)
        await server.start()
    try:
        yield server.url, passwords
    finally:
        await server.stop()


@dataclass
class System:
    url: str
    passwords: dict[str, str]
    directory: Path
    base: Settings
    metrics_ports: dict[str, int]
    admin: Client

    async def connect(self, role: str) -> Client:
        """A plain client of `role` with its role's inbox prefix."""
        return await nats.connect(
            self.url,
            user=role,
            password=self.passwords[role],
            inbox_prefix=INBOX[role],
            name=f"probe-{role}",
            allow_reconnect=False,
        )

    def settings(self, role: str) -> Settings:
        own = {"nats_user": role, "nats_password": self.passwords[role], "nats_inbox_prefix": INBOX[role]}
        return Settings(**{**self.base.model_dump(), **own})

    def dropped(self, service: str) -> int:
        """The service's `dropped_reply_subject` count, read from its metrics as an operator would."""
        status, body = http_get(f"http://127.0.0.1:{self.metrics_ports[service]}/metrics")
        assert status == 200, body
        labels = {'code="dropped_reply_subject"', f'service="{service}"'}
        for line in body.splitlines():
            found = re.fullmatch(r"tradetape_errors_total\{(.*)\} (\S+)", line)
            if found and set(found[1].split(",")) == labels:
                return int(float(found[2]))
        return 0

    def violations(self, client: str | None = None) -> list[str]:
        """The server's permission violations of one client, or of the services (not of the probes, nor of
        the answer `test_a_reply_into_another_roles_inbox_is_refused_by_the_server` provokes)."""
        log = (self.directory / "nats" / "nats-server.log").read_text()
        found = [line for line in log.splitlines() if "violation" in line.lower()]
        if client is not None:
            return [line for line in found if client in line]
        return [line for line in found if "probe-" not in line and ".spoofed" not in line]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def system(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[System]:
    directory = tmp_path_factory.mktemp("permissions")
    processes = ServiceProcesses(directory)
    async with contextlib.AsyncExitStack() as stack:
        url, passwords = await stack.enter_async_context(secured_server(directory))
        config = ExchangeConfig(symbols=("BTCUSDT", "ETHUSDT"), replay=(BUNDLED_REPLAY,), rate=0)
        exchange = await stack.enter_async_context(Exchange(config))
        base = simulator_settings(exchange, url, directory / "data", "BTCUSDT", "ETHUSDT")
        ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
        stack.callback(processes.stop_all)
        for role in SERVICES:
            own = Settings(**{**base.model_dump(), "nats_user": role, "nats_password": passwords[role]})
            env = service_env(own)  # the prefix as the environment a deployment sets (compose does)
            env |= {"TRADETAPE_NATS_INBOX_PREFIX": INBOX[role], "TRADETAPE_METRICS_PORT": str(ports[role])}
            processes.start([role], env)
        admin = await nats.connect(url, user="admin", password=passwords["admin"], name="probe-admin")
        stack.push_async_callback(admin.close)
        query = await nats.connect(url, user="query", password=passwords["query"], inbox_prefix=INBOX["query"])
        stack.push_async_callback(query.close)
        await wait_until_stored(query, "BTCUSDT", 5000, timeout=90)
        yield System(url, passwords, directory, base, ports, admin)


SENTINEL = "tradetape.probe.nobody-may"
"""A subject no role may publish to or subscribe to: its refusal comes after all the others asked before it."""


class Probe:
    """A client of one role that records the server's permission errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc = Client()

    async def connect(self, system: System, role: str) -> Probe:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        await self.nc.connect(
            system.url,
            user=role,
            password=system.passwords[role],
            inbox_prefix=INBOX[role],
            name=f"probe-{role}",
            error_cb=on_error,
            allow_reconnect=False,
        )
        return self

    async def refused(self, kind: str, subjects: list[str]) -> set[str]:
        """Which of `subjects` the server refused to let this role `kind` ("publish" or "subscription").

        A subject no role may use goes last: the server answers in order, so once its refusal is
        in, every earlier one is (waiting a fixed 3 s instead cost 6 s a role).
        """
        for subject in (*subjects, SENTINEL):
            if kind == "publish":
                await self.nc.publish(subject, b"{}")
            else:
                await self.nc.subscribe(subject)
        await self.nc.flush(timeout=5)
        # nats-py lowers the case of the server's message
        wanted = {f'violation for {kind} to "{subject.lower()}"': subject for subject in (*subjects, SENTINEL)}

        def seen() -> set[str]:
            return {wanted[w] for w in wanted if any(w in error for error in self.errors)}

        deadline = asyncio.get_running_loop().time() + 30
        while SENTINEL not in seen():
            assert asyncio.get_running_loop().time() < deadline, f"no refusal of {SENTINEL} for {kind}: {self.errors}"
            await asyncio.sleep(0.05)
        return seen() - {SENTINEL}


@pytest.mark.slow
@SHARED
@pytest.mark.parametrize("role", CLIENT_ROLES)
async def test_a_role_is_refused_every_publish_and_subscription_it_does_not_need(system: System, role: str) -> None:
    probe = await Probe().connect(system, role)
    try:
        published = await probe.refused("publish", list(PUBLISH))
        subscribed = await probe.refused("subscription", list(SUBSCRIBE))
    finally:
        await probe.nc.close()
    assert {s for s, roles in PUBLISH.items() if role not in roles} == published
    assert {s for s, roles in SUBSCRIBE.items() if role not in roles} == subscribed
    assert system.violations(f"probe-{role}"), "the server logs each refusal with the client's name"
    stream = await system.admin.jetstream().stream_info(TRADES_STREAM)
    assert stream.state.messages >= 5000, "no role but admin deletes or purges the stream"


@pytest.mark.slow
@SHARED
async def test_each_service_runs_end_to_end_with_only_its_own_user(system: System) -> None:
    from tradetape.cli.status import read_status
    from tradetape.client import TapeClient

    async with await TapeClient.connect(system.settings("query")) as tape:
        assert tape.nc.new_inbox().startswith("_INBOX_QUERY.")
        profile = await tape.query("volume_profile", "BTCUSDT", last="30d", row_size="10")
        assert profile.trade_count == 5000
        assert "coverage" in (await tape.served())["BTCUSDT"]  # $SRV.INFO as the query user
        now_ms = int(time.time() * 1000)
        replayed = [frame async for frame in tape.replay("BTCUSDT", start=now_ms - 30 * 86_400_000, end=now_ms)]
        assert sum(len(frame) for frame in replayed) == 5000  # asked, streamed and acked as the query user
    status = await read_status(system.settings("monitor"))  # `tradetape status` needs no more than the monitor role
    stream = await system.admin.jetstream().stream_info(TRADES_STREAM)
    assert status.stream is not None and status.stream.messages == stream.state.messages >= 5000
    assert [consumer.name for consumer in status.stream.consumers] == ["persist-main"]
    assert {s.name for s in status.services} >= {f"tradetape-{service}" for service in SERVICES}
    assert not [problem for problem in status.problems if "not readable" in problem]
    assert status.tail_probe is not None and status.tail_probe.symbols >= 1, "ingest's stats, as the monitor"
    assert system.violations() == []


# The reproductions of issue 17, as found on main: the query user (every browser's role) aims a
# responder's reply at ingest's ledger, at the trades stream and at the live subjects.


@pytest.mark.slow
@SHARED
async def test_analytics_never_writes_its_reply_into_the_ingest_ledger(system: System) -> None:
    target = "$KV.TAPE_INGEST_LEDGER.binance.ETHUSDT"
    before = await _ledger_revision(system.admin, "ETHUSDT")
    watch = await system.admin.subscribe(target)
    await system.admin.flush()
    query = await system.connect("query")
    try:
        await query.publish("tape.query.coverage.ETHUSDT", b"{}", reply=target)
        await query.flush()
        await _nothing_arrives(watch)
    finally:
        await query.close()
    assert await _ledger_revision(system.admin, "ETHUSDT") == before


@pytest.mark.slow
@SHARED
async def test_persist_never_appends_its_ping_reply_to_the_trades_stream(system: System) -> None:
    target = "tape.trades.binance.ETHUSDT"
    before = await _stored(system.admin, target)
    query = await system.connect("query")
    try:
        await query.publish("$SRV.PING.tradetape-persist", b"", reply=target)
        await query.flush()
        await asyncio.sleep(1)
    finally:
        await query.close()
    assert await _stored(system.admin, target) == before


@pytest.mark.slow
@SHARED
async def test_no_service_sends_a_fake_live_message(system: System) -> None:
    target = "tape.live.profile.BTCUSDT"
    watch = await system.admin.subscribe(target)
    await system.admin.flush()
    query = await system.connect("query")
    try:
        await query.publish("$SRV.PING", b"", reply=target)
        await query.flush()
        await _nothing_arrives(watch, lambda data: b"io.nats.micro" in data)
    finally:
        await query.close()


# Every responder, asked by a role that may ask it, with reply subjects aimed at what no
# responder may write: nothing arrives, nothing is stored, the responder counts the drops.
TARGETS = (
    "tape.trades.binance.ZZ{n}USDT",
    "$KV.TAPE_INGEST_LEDGER.binance.ZZ{n}USDT",
    "tape.live.profile.ZZ{n}USDT",
    "$JS.API.STREAM.PURGE.TAPE_DEADLETTER",
)
REQUESTS = [
    ("query", "tape.query.coverage.BTCUSDT", ("analytics",)),
    ("monitor", "tape.query.volume_profile.BTCUSDT", ("analytics",)),
    ("query", "tape.schema", ("analytics",)),
    ("monitor", "tape.ingest.stats", ("ingest",)),
    ("importer", "tape.persist.import.BTCUSDT", ("persist",)),
    *[("monitor", f"$SRV.{verb}", SERVICES) for verb in ("PING", "INFO", "STATS")],
    *[("monitor", f"$SRV.{verb}.tradetape-{s}", (s,)) for verb in ("PING", "INFO", "STATS") for s in SERVICES],
    *[("monitor", f"$SRV.{verb}.tradetape-{s}.{{id}}", (s,)) for verb in ("PING", "INFO", "STATS") for s in SERVICES],
]


@pytest.mark.slow
@SHARED
@pytest.mark.parametrize(("role", "subject", "responders"), REQUESTS, ids=[r[1] for r in REQUESTS])
async def test_no_responder_answers_outside_the_inboxes(
    system: System, role: str, subject: str, responders: tuple[str, ...]
) -> None:
    if "{id}" in subject:
        service = responders[0]
        ping = await system.admin.request(f"$SRV.PING.tradetape-{service}", b"", timeout=5)
        subject = subject.format(id=orjson.loads(ping.data)["id"])
    n = secrets.randbelow(10**6)
    targets = [target.format(n=n) for target in TARGETS]
    watches = [await system.admin.subscribe(target) for target in targets]
    await system.admin.flush()
    deadletters = (await system.admin.jetstream().stream_info("TAPE_DEADLETTER")).state.messages
    stored = (await system.admin.jetstream().stream_info(TRADES_STREAM)).state.messages
    before = {service: system.dropped(service) for service in responders}
    client = await system.connect(role)
    try:
        for target in targets:
            await client.publish(subject, b"{}", reply=target)
        await client.flush()
        for watch in watches:
            await _nothing_arrives(watch, wait=0.3)
    finally:
        await client.close()

    async def counted() -> bool:
        return all(system.dropped(s) >= before[s] + len(targets) for s in responders)

    deadline = asyncio.get_running_loop().time() + 10
    while not await counted() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    assert {s: system.dropped(s) - before[s] for s in responders} == {s: len(targets) for s in responders}
    js = system.admin.jetstream()
    assert (await js.stream_info("TAPE_DEADLETTER")).state.messages == deadletters
    assert (await js.stream_info(TRADES_STREAM)).state.messages == stored
    with pytest.raises(NotFoundError):
        await (await js.key_value("TAPE_INGEST_LEDGER")).get(f"binance.ZZ{n}USDT")


@pytest.mark.slow
@SHARED
async def test_a_reply_into_another_roles_inbox_is_refused_by_the_server(system: System) -> None:
    spy = await system.connect("ingest")  # ingest's own inbox: it may read, and no one else may write
    try:
        watch = await spy.subscribe(f"{INBOX['ingest']}.spoofed")
        await spy.flush()
        query = await system.connect("query")
        try:
            await query.publish("tape.query.coverage.BTCUSDT", b"{}", reply=f"{INBOX['ingest']}.spoofed")
            await query.flush()
            await _nothing_arrives(watch)
        finally:
            await query.close()
    finally:
        await spy.close()


async def _nothing_arrives(watch: Any, forged: Any = None, wait: float = 1.0) -> None:
    """Fail if a message (one `forged` recognises, when given) arrives on `watch` within `wait` seconds."""
    deadline = asyncio.get_running_loop().time() + wait
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            msg = await watch.next_msg(timeout=left)
        except NatsTimeoutError:
            break
        assert forged is not None and not forged(msg.data), f"a reply reached {msg.subject}: {msg.data[:120]!r}"
    await watch.unsubscribe()


async def _ledger_revision(admin: Client, symbol: str) -> int | None:
    kv = await admin.jetstream().key_value("TAPE_INGEST_LEDGER")
    try:
        return (await kv.get(f"binance.{symbol}")).revision
    except NotFoundError:
        return None


async def _stored(admin: Client, subject: str) -> int:
    info = await admin.jetstream().stream_info(TRADES_STREAM, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


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


@pytest.mark.slow
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
        assert env["TRADETAPE_NATS_INBOX_PREFIX"] == INBOX[role]
        assert services[role]["depends_on"]["nats"]["condition"] == "service_healthy"
    assert all("healthcheck" in service for service in services.values())
    nats_env = services["nats"]["environment"]
    assert nats_env == passwords, "the NATS container gets the passwords of every user, nothing else"
    mounts = {volume["target"]: volume for volume in services["nats"]["volumes"]}
    assert Path(mounts["/etc/nats"]["source"]) == AUTH_CONF.parent and mounts["/etc/nats"]["read_only"]
