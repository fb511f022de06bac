"""Metrics and health: each service process serves Prometheus text and `/healthz` on its metrics port.

The real system (the simulator replaying the bundled BTCUSDT file, ingest, persist and
analytics as processes) runs until the 5,000 trades are stored; then each service is
scraped over HTTP and parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.cluster.topology import child_env, free_ports, http_get, start_replay_system
from tests.harness import request, wait_for, wait_until_stored
from tests.processes import ServiceProcesses
from tradetape.runtime.http_access import HttpAccess
from tradetape.runtime.metrics import MetricsServer, ServiceMetrics, ServiceSnapshot
from tradetape.runtime.supervisor import metrics_env
from tradetape.settings import Settings

pytestmark = pytest.mark.timeout(90)


def samples(text: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value(found: Iterable[Sample], name: str, **labels: str) -> float:
    matching = [s.value for s in found if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matching) == 1, f"{name} {labels}: {matching}"
    return matching[0]


async def test_a_snapshot_becomes_parseable_metrics_and_health_follows_readiness() -> None:
    state = {"snapshot": ServiceSnapshot(ready=False, reason="consumer not bound")}

    async def source() -> ServiceSnapshot:
        return state["snapshot"]

    metrics = ServiceMetrics("persist", source)
    port = free_ports(1)[0]
    async with MetricsServer("127.0.0.1", port, HttpAccess.for_server(Settings(), "127.0.0.1", port)) as server:
        base = f"http://127.0.0.1:{port}"
        status, body = await asyncio.to_thread(http_get, f"{base}/healthz")
        assert (status, body) == (503, "not ready: waiting for NATS\n")
        server.attach(metrics)
        status, body = await asyncio.to_thread(http_get, f"{base}/healthz")
        assert (status, body) == (503, "not ready: consumer not bound\n")
        state["snapshot"] = ServiceSnapshot(
            ready=True,
            trades_in={"BTCUSDT": 7, "ETHUSDT": 3},
            trades_out={"BTCUSDT": 7},
            errors={"store_error": 2},
            stream_lag={"persist-main": 11},
            windows_written=4,
        )
        assert await asyncio.to_thread(http_get, f"{base}/healthz") == (200, "ok\n")
        metrics.observe_query("coverage", 0.003)
        status, text = await asyncio.to_thread(http_get, f"{base}/metrics")
        assert await asyncio.to_thread(http_get, f"{base}/other") == (404, "not found: try /metrics or /healthz\n")
    assert status == 200
    found = samples(text)
    assert value(found, "tradetape_ready", service="persist") == 1
    assert value(found, "tradetape_trades_in_total", symbol="ETHUSDT") == 3
    assert value(found, "tradetape_trades_out_total", symbol="BTCUSDT") == 7
    assert value(found, "tradetape_errors_total", code="store_error") == 2
    assert value(found, "tradetape_stream_lag", consumer="persist-main") == 11
    assert value(found, "tradetape_windows_written_total") == 4
    assert value(found, "tradetape_query_duration_seconds_count", method="coverage") == 1
    assert value(found, "tradetape_query_duration_seconds_bucket", method="coverage", le="0.005") == 1
    assert value(found, "tradetape_query_duration_seconds_bucket", method="coverage", le="0.0025") == 0
    assert value(found, "process_resident_memory_bytes") > 1_000_000


@pytest.mark.slow
async def test_every_service_process_serves_metrics_and_health(
    nats_url: str, tmp_path: Path, processes: ServiceProcesses
) -> None:
    ports = dict(zip(("ingest", "persist", "analytics", "waiting"), free_ports(4), strict=True))
    settings = Settings(nats_url=nats_url, data_dir=tmp_path / "data", symbols=("BTCUSDT",))
    dead_nats = Settings(nats_url=f"nats://127.0.0.1:{free_ports(1)[0]}", data_dir=tmp_path / "other")
    processes.start(["analytics"], child_env(dead_nats, metrics_port=ports["waiting"]))
    start_replay_system(processes, settings, ports)
    client = await nats.connect(nats_url)
    try:
        await wait_until_stored(client, "BTCUSDT", 5000, timeout=60)
        span = {"last": "7d", "row_size": "10"}
        profile, _ = await request(client, "tape.query.volume_profile.BTCUSDT", span)
        assert profile["trade_count"] == 5000
        bad, _ = await request(client, "tape.query.volume_profile.BTCUSDT", {"row_size": "-1"})
        assert bad["error"]["code"] == "invalid_request"

        async def scraped(name: str) -> list[Sample]:
            status, text = await asyncio.to_thread(http_get, f"http://127.0.0.1:{ports[name]}/metrics")
            assert status == 200
            return samples(text)

        async def persist_caught_up() -> list[Sample] | None:
            found = await scraped("persist")
            done = value(found, "tradetape_ack_pending", consumer="persist-main") == 0
            return found if done and value(found, "tradetape_stream_lag", consumer="persist-main") == 0 else None

        persist = await wait_for(persist_caught_up, 20)
        ingest = await scraped("ingest")
        analytics = await scraped("analytics")
    finally:
        await client.close()

    assert value(ingest, "tradetape_trades_in_total", service="ingest", symbol="BTCUSDT") == 5000
    assert value(ingest, "tradetape_trades_out_total", service="ingest", symbol="BTCUSDT") == 5000
    assert value(ingest, "tradetape_open_gaps", symbol="BTCUSDT") == 0
    assert value(persist, "tradetape_trades_out_total", service="persist", symbol="BTCUSDT") == 5000
    assert value(persist, "tradetape_windows_written_total") > 0
    assert value(persist, "tradetape_errors_total", code="store_error") == 0
    assert value(analytics, "tradetape_query_duration_seconds_count", method="volume_profile") == 2
    assert value(analytics, "tradetape_query_duration_seconds_count", method="coverage") >= 1
    assert value(analytics, "tradetape_errors_total", code="invalid_request") == 1
    for name, found in (("ingest", ingest), ("persist", persist), ("analytics", analytics)):
        assert value(found, "tradetape_ready", service=name) == 1
        assert value(found, "process_resident_memory_bytes") > 20_000_000
        assert await asyncio.to_thread(http_get, f"http://127.0.0.1:{ports[name]}/healthz") == (200, "ok\n")
    waiting = await asyncio.to_thread(http_get, f"http://127.0.0.1:{ports['waiting']}/healthz")
    assert waiting == (503, "not ready: waiting for NATS\n")


def test_up_gives_each_child_its_own_metrics_port_or_none() -> None:
    env = {"PATH": "/bin"}
    assert metrics_env(env, 0, "persist") is env
    ports = [metrics_env(env, 9100, name)["TRADETAPE_METRICS_PORT"] for name in ("ingest", "persist", "analytics")]
    assert ports == ["9100", "9101", "9102"]
