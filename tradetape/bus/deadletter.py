"""Dead letters: a message that fails validation is kept with its reason, never dropped.

They go to their own stream (`TAPE_DEADLETTER`, subjects `tape.deadletter.<source>.<symbol>`)
with the reason in the `Tradetape-Reason` header, so they can be counted and inspected.
A dead letter always fits the server's max payload: the body is cut to what is left after
the headers (which say the original size), since a message above it is refused and
nats-py then drops the connection.
"""

from __future__ import annotations

import asyncio
import logging

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck

from tradetape.bus.subjects import (
    DEADLETTER_STREAM,
    ORIGINAL_SIZE_HEADER,
    REASON_HEADER,
    TRUNCATED_HEADER,
    deadletter_subject,
)
from tradetape.ground.backoff import Backoff

logger = logging.getLogger(__name__)

RETRY_DELAY_MAX_S = 10.0
DEFAULT_MAX_PAYLOAD = 1024 * 1024
"""nats-server's default; pass the connection's `nc.max_payload` where it may differ."""
MAX_REASON_BYTES = 1000
_HEADER_MARGIN = 128
"""Room for the protocol line's framing beyond the header block itself."""


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


def deadletter_message(payload: bytes, reason: str, max_payload: int) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a dead letter: the reason kept (ASCII, one line, capped) and the body cut to fit."""
    line = " ".join(reason.split()).encode("ascii", "backslashreplace")[:MAX_REASON_BYTES].decode("ascii")
    headers = {REASON_HEADER: line or "unknown", ORIGINAL_SIZE_HEADER: str(len(payload))}
    header_bytes = sum(len(k) + len(v) + 4 for k, v in headers.items()) + len(TRUNCATED_HEADER) + 32
    budget = max(max_payload - header_bytes - _HEADER_MARGIN, 0)
    if len(payload) > budget:
        headers[TRUNCATED_HEADER] = "true"
        payload = payload[:budget]
    return payload, headers


async def publish_deadletter(
    js: JetStreamContext,
    source: str,
    symbol: str | None,
    payload: bytes,
    reason: str,
    *,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    log: bool = True,
) -> None:
    """Keep a rejected message with its reason, truncated to fit `max_payload`, until the stream acks it.

    `log=False` for a caller that logs one line for a whole batch of them.
    """
    subject = deadletter_subject(source, symbol)
    body, headers = deadletter_message(payload, reason, max_payload)
    await publish_until_acked(js, subject, body, headers, stream=DEADLETTER_STREAM)
    if not log:
        return
    logger.warning(
        "dead-lettered",
        extra={
            "source": source,
            "symbol": symbol or "unknown",
            "reason": headers[REASON_HEADER][:200],
            "size": len(payload),
        },
    )
