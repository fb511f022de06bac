"""JetStream streams and consumers, created or updated idempotently at every start.

Every service provisions what it touches, so services can start in any order and a
changed setting (stream limits, symbols of a shard) updates the existing objects; persist
provisions again whenever its consumer or the stream disappears.

The trades stream is a buffer in front of the store, not a second tape: it keeps raw
messages for `stream_max_age_hours` (default 24 h, enough to ride out a persist outage)
and at most `stream_max_bytes`, S2-compressed. When it is full it refuses new publishes
(`DiscardPolicy.NEW`) instead of dropping the oldest unpersisted ones, so the publisher
sees every refusal (ingest keeps the refused ids as gaps and fetches them again).
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    StorageType,
    StoreCompression,
    StreamConfig,
)
from nats.js.errors import BadRequestError

from tradetape.bus.subjects import (
    DEADLETTER_PREFIX,
    DEADLETTER_STREAM,
    TRADES_STREAM,
    TRADES_SUBJECTS,
    trade_subject,
)
from tradetape.settings import Settings

logger = logging.getLogger(__name__)

DUPLICATE_WINDOW_S = 600.0
PERSIST_MAX_ACK_PENDING = 50_000
PERSIST_ACK_WAIT_S = 10.0
PERSIST_MAX_DELIVER = 10
"""A message not acked after this many deliveries is given up by the server and dead-lettered by persist."""
DEADLETTER_MAX_BYTES = 1024**3


def trades_stream_config(settings: Settings) -> StreamConfig:
    return StreamConfig(
        name=TRADES_STREAM,
        description="Raw Binance aggTrade objects, one subject per symbol",
        subjects=[TRADES_SUBJECTS],
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_S,
        max_age=settings.stream_max_age_hours * 3600,
        max_bytes=settings.stream_max_bytes,
        discard=DiscardPolicy.NEW,
        compression=StoreCompression.S2,
        allow_direct=True,
        num_replicas=settings.stream_replicas,
    )


def deadletter_stream_config(settings: Settings) -> StreamConfig:
    return StreamConfig(
        name=DEADLETTER_STREAM,
        description="Messages that failed validation, reason in the Tradetape-Reason header",
        subjects=[f"{DEADLETTER_PREFIX}.>"],
        storage=StorageType.FILE,
        max_age=settings.retention_days * 86_400,
        max_bytes=DEADLETTER_MAX_BYTES,
        discard=DiscardPolicy.OLD,
        compression=StoreCompression.S2,
        allow_direct=True,
        num_replicas=settings.stream_replicas,
    )


def persist_durable(shard: str) -> str:
    return f"persist-{shard}"


def persist_consumer_config(settings: Settings) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=persist_durable(settings.shard),
        description=f"persist shard {settings.shard}",
        filter_subjects=[trade_subject(symbol) for symbol in settings.shard_symbols],
        deliver_policy=DeliverPolicy.ALL,
        # Explicit, not ALL: after a crash the new process's first ack would otherwise also
        # ack the dead process's unwritten messages (the recovery test catches exactly that).
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=PERSIST_ACK_WAIT_S,
        max_ack_pending=PERSIST_MAX_ACK_PENDING,
        max_deliver=PERSIST_MAX_DELIVER,
    )


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)
        logger.info("stream updated", extra={"stream": config.name})


async def ensure_streams(js: JetStreamContext, settings: Settings) -> None:
    await ensure_stream(js, trades_stream_config(settings))
    await ensure_stream(js, deadletter_stream_config(settings))


async def ensure_persist_consumer(js: JetStreamContext, settings: Settings) -> str:
    config = persist_consumer_config(settings)
    await js.add_consumer(TRADES_STREAM, config)
    assert config.durable_name is not None
    return config.durable_name
