"""Connecting to NATS the same way from every service and the CLI.

`NATS_URL` may list several servers of a cluster, comma-separated; credentials, TLS and
the role's inbox prefix come from the settings as a `NatsAuth` (`tradetape.bus.auth`), and
the URL is logged redacted. Every inbox the code makes comes from `nc.new_inbox()` (or
nats-py's `request`/JetStream, which use the same prefix), so all replies a client waits
for arrive under its role's prefix.
"""

from __future__ import annotations

import logging

from nats.aio.client import Client

from tradetape.bus.auth import NatsAuth
from tradetape.ground.redaction import redact_url
from tradetape.ground.url_files import read_url_file
from tradetape.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_URL = "nats://127.0.0.1:4222"


def resolve_nats_url(settings: Settings) -> str:
    """`NATS_URL` if set, else the server `tradetape up` recorded in the data dir, else 4222."""
    return settings.nats_url or read_url_file(settings.nats_url_file) or DEFAULT_URL


def server_list(url: str) -> list[str]:
    """The servers of a comma-separated `NATS_URL` (one URL is a list of one)."""
    return [part.strip() for part in url.split(",") if part.strip()]


async def connect(
    url: str, name: str, *, auth: NatsAuth | None = None, connect_timeout: int = 5, retry: bool = True
) -> Client:
    """A client that keeps reconnecting forever: a restarted server must not end a service."""
    nc = Client()
    auth = auth or NatsAuth()

    async def on_disconnected() -> None:
        if not (nc.is_closed or nc.is_draining):
            logger.warning("nats disconnected", extra={"client": name})

    async def on_reconnected() -> None:
        logger.info("nats reconnected", extra={"client": name, "url": redact_url(url)})

    async def on_error(exc: Exception) -> None:
        logger.warning("nats error", extra={"client": name, "error": repr(exc)})

    await nc.connect(
        server_list(url),
        name=name,
        connect_timeout=connect_timeout,
        allow_reconnect=retry,
        max_reconnect_attempts=1,
        reconnect_time_wait=1,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
        error_cb=on_error,
        pending_size=64 * 1024 * 1024,
        inbox_prefix=auth.inbox_prefix,
        **auth.connect_options(),
    )
    if retry:
        # Fail the first connect fast (callers retry it under their own stop signal), but
        # once connected never give up reconnecting.
        nc.options["max_reconnect_attempts"] = -1
    return nc
