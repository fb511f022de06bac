"""Running a service until SIGINT or SIGTERM, then letting it finish its in-flight work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.errors import Error as NatsError

from tradetape.bus.auth import NatsAuth
from tradetape.bus.connect import connect
from tradetape.ground.backoff import Backoff
from tradetape.ground.redaction import redact_url

logger = logging.getLogger(__name__)


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set `stop` on SIGINT/SIGTERM; a second signal no longer waits for a graceful end."""
    loop = asyncio.get_running_loop()

    def _stop(signum: int) -> None:
        if stop.is_set():
            logger.warning("second signal, exiting now", extra={"signal": signal.Signals(signum).name})
            raise SystemExit(130)
        logger.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _stop, signum)


async def connect_until_stopped(
    url: str, name: str, stop: asyncio.Event, auth: NatsAuth | None = None
) -> Client | None:
    """Connect, waiting out a NATS server that is not up yet; None if stopped first."""
    backoff = Backoff(0.5, 10.0)
    while not stop.is_set():
        try:
            return await connect(url, name, auth=auth)
        except (NatsError, OSError, TimeoutError) as exc:
            delay = backoff.next_delay()
            logger.warning(
                "nats unreachable, retrying",
                extra={"url": redact_url(url), "error": repr(exc) or type(exc).__name__, "delay_s": round(delay, 1)},
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
    return None


async def run_with_nats(
    url: str,
    name: str,
    service: Callable[[Client, asyncio.Event], Awaitable[None]],
    auth: NatsAuth | None = None,
) -> None:
    """Connect, run `service(nc, stop)` until a signal, then drain and close the connection."""
    stop = asyncio.Event()
    stop_on_signals(stop)
    nc = await connect_until_stopped(url, name, stop, auth)
    if nc is None:
        return
    try:
        await service(nc, stop)
    finally:
        # A server that went first (an external NATS stopped before us) must not turn a
        # clean stop into a traceback: what is in flight is redelivered or re-fetched.
        with contextlib.suppress(NatsError, OSError, TimeoutError):
            await nc.drain()
        with contextlib.suppress(NatsError, OSError, TimeoutError):
            if not nc.is_closed:
                await nc.close()
