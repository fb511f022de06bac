"""nats-py's internals that tradetape uses: one module, checked loudly, and still what a real client and service have.

The fakes here are plain objects fed to the checker (no NATS is mocked): the real client and micro
service are checked against a real nats-server.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.metadata
import re
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from nats.aio.msg import Msg

from tradetape.bus.nats_internals import (
    NATS_PY_VERSION,
    EndpointCounters,
    MicroClient,
    NatsInternalsError,
    OutgoingBuffer,
    check_version,
    supported_range,
)
from tradetape.bus.replies import GuardedService, ReplyGuard

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
INTERNALS_MODULE = ROOT / "tradetape" / "bus" / "nats_internals.py"


def test_the_installed_nats_py_is_read_and_supported() -> None:
    assert importlib.metadata.version("nats-py") == NATS_PY_VERSION
    check_version(NATS_PY_VERSION)


@pytest.mark.parametrize("version", ["2.9.0", "2.12", "2.16.0", "2.16.3"])
def test_releases_in_the_range_are_accepted(version: str) -> None:
    check_version(version)


@pytest.mark.parametrize("version", ["2.8.0", "2.17.0", "3.0.0", "1.16.0", "2.16.1rc1", "2.16.0.dev3", "unknown"])
def test_releases_outside_the_range_are_refused_naming_both(version: str) -> None:
    with pytest.raises(NatsInternalsError) as raised:
        check_version(version)
    assert f"nats-py {version} is installed" in str(raised.value)
    assert supported_range() in str(raised.value)


async def _send_command(cmd: bytes, priority: bool = False) -> None:
    pass


async def _flush_pending(force_flush: bool = False) -> None:
    pass


class _Nuid:
    def next(self) -> bytearray:
        return bytearray(b"x")


class _FakeClient:
    """What `OutgoingBuffer` and `MicroClient` read, as instance attributes a test deletes or breaks in turn."""

    def __init__(self) -> None:
        self._flush_queue: object = None
        self._send_command: object = _send_command
        self._flush_pending: object = _flush_pending
        self._nuid: object = _Nuid()


def _without(name: str) -> _FakeClient:
    client = _FakeClient()
    delattr(client, name)
    return client


def test_the_fake_client_passes_so_each_failure_below_is_the_one_internal() -> None:
    OutgoingBuffer(_FakeClient())  # type: ignore[arg-type]
    MicroClient(_FakeClient(), lambda cb: cb)  # type: ignore[arg-type]
    client = _FakeClient()
    client._flush_queue = asyncio.Queue()
    OutgoingBuffer(client)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["_send_command", "_flush_pending", "_flush_queue"])
def test_a_client_missing_a_buffer_internal_is_refused_by_name(name: str) -> None:
    with pytest.raises(NatsInternalsError, match=rf"nats-py {re.escape(NATS_PY_VERSION)}: Client\.{name} is missing"):
        OutgoingBuffer(_without(name))  # type: ignore[arg-type]


def test_a_client_whose_internal_changed_shape_is_refused() -> None:
    client = _FakeClient()
    client._send_command = lambda cmd: None  # no longer awaitable: the hot path would fail on it
    with pytest.raises(NatsInternalsError, match=r"Client\._send_command is a function, not a coroutine function"):
        OutgoingBuffer(client)  # type: ignore[arg-type]
    client = _FakeClient()
    client._flush_queue = []
    with pytest.raises(NatsInternalsError, match=r"Client\._flush_queue is a list, not None or an asyncio.Queue"):
        OutgoingBuffer(client)  # type: ignore[arg-type]


def test_a_client_without_a_nuid_generator_is_refused_for_micro() -> None:
    with pytest.raises(NatsInternalsError, match=r"Client\._nuid is missing"):
        MicroClient(_without("_nuid"), lambda cb: cb)  # type: ignore[arg-type]
    client = _FakeClient()
    client._nuid = object()
    with pytest.raises(NatsInternalsError, match=r"Client\._nuid is a object, not a NUID generator"):
        MicroClient(client, lambda cb: cb)  # type: ignore[arg-type]


class _Endpoint:
    def __init__(self, subject: str) -> None:
        self._subject = subject
        self._num_requests = 1
        self._num_errors = 0
        self._processing_time = 0
        self._average_processing_time = 0
        self._last_error: str | None = None


class _Service:
    def __init__(self, *endpoints: object) -> None:
        self._endpoints = list(endpoints)


@pytest.mark.parametrize(
    "name", ["_subject", "_num_requests", "_num_errors", "_processing_time", "_average_processing_time", "_last_error"]
)
def test_an_endpoint_missing_a_counter_is_refused_by_name(name: str) -> None:
    endpoint = _Endpoint("a")
    delattr(endpoint, name)
    with pytest.raises(NatsInternalsError, match=rf"nats-py {re.escape(NATS_PY_VERSION)}: Endpoint\.{name} is missing"):
        EndpointCounters(_Service(_Endpoint("b"), endpoint))  # type: ignore[arg-type]


def test_a_service_whose_endpoints_changed_shape_is_refused() -> None:
    service = _Service()
    service._endpoints = {}  # type: ignore[assignment]
    with pytest.raises(NatsInternalsError, match=r"Service\._endpoints is a dict, not a list"):
        EndpointCounters(service)  # type: ignore[arg-type]
    endpoint = _Endpoint("a")
    endpoint._num_errors = 0.0  # type: ignore[assignment]
    with pytest.raises(NatsInternalsError, match=r"Endpoint\._num_errors is a float, not an int"):
        EndpointCounters(_Service(endpoint))  # type: ignore[arg-type]


async def test_a_real_client_and_micro_service_have_every_internal_and_it_works(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        got: asyncio.Queue[Msg] = asyncio.Queue()

        async def receive(msg: Msg) -> None:
            got.put_nowait(msg)

        await nc.subscribe("internals.raw", cb=receive)
        await nc.flush()
        await OutgoingBuffer(nc).append(b"PUB internals.raw 2\r\nhi\r\nPUB internals.raw 3\r\nyou\r\n")
        assert [(await asyncio.wait_for(got.get(), 5)).data for _ in range(2)] == [b"hi", b"you"]

        async def answer(request: Any) -> None:
            await request.respond(b"ok")

        service = await GuardedService.start(nc, ReplyGuard("test"), name="internals", version="1.0.0")
        try:
            await service.add_endpoint(name="ask", subject="internals.ask", handler=answer)
            await service.add_endpoint(name="other", subject="internals.other", handler=answer)
            counters = EndpointCounters(service.service)
            assert (await nc.request("internals.ask", b"", timeout=5)).data == b"ok"
            counters.error("internals.ask", "refused later")
            counters.processed("internals.ask", 2.0)
            counters.processed("internals.other", 2.0)  # never asked: nothing to average over
            counters.error("internals.none", "no such endpoint")
            stats = orjson.loads((await nc.request("$SRV.STATS.internals", b"", timeout=5)).data)
        finally:
            await service.stop()
        by_subject = {endpoint["subject"]: endpoint for endpoint in stats["endpoints"]}
        ask, other = by_subject["internals.ask"], by_subject["internals.other"]
        assert (ask["num_requests"], ask["num_errors"], ask["last_error"]) == (1, 1, "refused later")
        assert ask["processing_time"] >= 2_000_000_000
        assert ask["average_processing_time"] == ask["processing_time"]
        assert (other["num_requests"], other["num_errors"], other["processing_time"]) == (0, 0, 0)
    finally:
        await nc.close()


def _nats_private_names() -> set[str]:
    """Every private attribute and method nats-py's own source defines."""
    names: set[str] = set()
    for path in Path(nats.__file__).parent.rglob("*.py"):
        text = path.read_text()
        names |= set(re.findall(r"self\.(_[a-z]\w*)", text)) | set(re.findall(r"def (_[a-z]\w*)", text))
    return names


def _private_uses(path: Path, private: set[str]) -> list[str]:
    """`x.<name>` on anything but self/cls, and getattr/hasattr/setattr(x, "<name>"), for nats-py's private names."""
    uses = []
    for node in ast.walk(ast.parse(path.read_text())):
        name: object = None
        if isinstance(node, ast.Attribute):
            if not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}):
                name = node.attr
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "hasattr", "setattr", "delattr"}
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
        ):
            name = node.args[1].value
        if isinstance(name, str) and name in private:
            uses.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)} {name}")
    return uses


@pytest.mark.slow
def test_no_other_module_reaches_into_nats_py() -> None:
    private = _nats_private_names()
    assert {"_send_command", "_flush_pending", "_nuid", "_num_errors", "_endpoints"} <= private
    modules = [path for top in ("tradetape", "services", "bench") for path in (ROOT / top).rglob("*.py")]
    assert INTERNALS_MODULE in modules
    uses = [use for path in modules if path != INTERNALS_MODULE for use in _private_uses(path, private)]
    assert uses == [], "nats-py internals used outside tradetape.bus.nats_internals"
    assert _private_uses(INTERNALS_MODULE, private), "the scan no longer sees the uses it is meant to find"
