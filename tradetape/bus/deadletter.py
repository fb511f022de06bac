"""Dead letters: a message that fails validation is kept with its reason, never dropped.

They go to their own stream (`TAPE_DEADLETTER`, subjects `tape.deadletter.<source>.<symbol>`)
with the reason in the `Tradetape-Reason` header, so they can be counted and inspected.
"""

from __future__ import annotations

import asyncio
import logging

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck

from tradetape.bus.subjects import DEADLETTER_STREAM, REASON_HEADER, deadletter_subject
from tradetape.runtime.backoff import Backoff

logger = logging.getLogger(__name__)

RETRY_DELAY_MAX_S = 10.0


async def publish_until_acked(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    headers: dict[str, str],
    *,
    stream: str,
    timeout: float = 5.0,
) -> PubAck:
    """Publish and wait for the stream's ack, retrying with capped backoff until it comes."""
    backoff = Backoff(0.1, RETRY_DELAY_MAX_S, jitter=0.5)
    while True:
        try:
            return await js.publish(subject, payload, timeout=timeout, stream=stream, headers=dict(headers))
        except (NatsError, TimeoutError) as exc:
            logger.warning("publish failed, retrying", extra={"subject": subject, "error": repr(exc)})
            await asyncio.sleep(backoff.next_delay())


async def publish_deadletter(
    js: JetStreamContext, source: str, symbol: str | None, payload: bytes, reason: str
) -> None:
    subject = deadletter_subject(source, symbol)
    await publish_until_acked(js, subject, payload, {REASON_HEADER: reason[:1000]}, stream=DEADLETTER_STREAM)
    logger.warning("dead-lettered", extra={"source": source, "symbol": symbol or "unknown", "reason": reason})
