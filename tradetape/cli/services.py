"""`tradetape ingest|persist|analytics`: one service with its metrics and presence until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import importlib
import sys

from tradetape.settings import Settings

SERVICE_CLASSES = {
    "ingest": ("tradetape.services.ingest.service", "IngestService"),
    "persist": ("tradetape.services.persist.service", "PersistService"),
    "analytics": ("tradetape.services.analytics.service", "AnalyticsService"),
}


async def run_service(name: str, settings: Settings) -> int:
    """One service until SIGINT/SIGTERM; the CLI sits on top of the services, so it imports them here."""
    import contextlib

    from nats.aio.client import Client
    from nats.errors import Error as NatsError

    from tradetape.bus.auth import NatsAuth
    from tradetape.bus.connect import resolve_nats_url
    from tradetape.runtime.collector import settle_after_start
    from tradetape.runtime.http_access import HttpAccess
    from tradetape.runtime.lifecycle import run_with_nats
    from tradetape.runtime.metrics import MetricsPortError, MetricsServer, announce

    module, class_name = SERVICE_CLASSES[name]
    service_class = getattr(importlib.import_module(module), class_name)

    async def serve(nc: Client, stop: asyncio.Event) -> None:
        service = service_class(settings, nc)
        metrics_server.attach(service.metrics)
        presence = None
        if name != "analytics":  # analytics is a micro service itself
            # With ALL the list is the exchange's, learned by the service itself: "ALL" says so
            # (status takes the symbols from the shard manifests and analytics instead).
            own = settings.symbols if name == "ingest" or settings.symbols_from_exchange else settings.shard_symbols
            metadata = {"symbols": ",".join(own)}
            if name == "persist":
                metadata["shard"] = settings.shard
            metadata["metrics_port"] = str(settings.metrics_port)
            presence = await announce(nc, name, metadata, service.replies)
        settle_after_start()
        try:
            await service.run(stop)
        finally:
            if presence is not None:
                with contextlib.suppress(NatsError, OSError, TimeoutError):
                    await presence.stop()

    host, port = settings.metrics_host, settings.metrics_port
    metrics_server = MetricsServer(host, port, HttpAccess.for_server(settings, host, port))
    try:
        await metrics_server.start()
    except MetricsPortError as exc:
        print(f"tradetape {name}: {exc} (--metrics-port, TRADETAPE_METRICS_PORT)", file=sys.stderr)
        return 1
    try:
        await run_with_nats(resolve_nats_url(settings), f"tradetape-{name}", serve, NatsAuth.from_settings(settings))
    finally:
        await metrics_server.stop()
    return 0
