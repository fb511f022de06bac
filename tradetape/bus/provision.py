"""JetStream streams, consumers and KV buckets, created or updated idempotently at every start.

Every service provisions what it touches, so services can start in any order and a
changed setting (stream limits, symbols of a shard) updates the existing objects; persist
provisions again whenever its consumer or the stream disappears.

The trades stream is a buffer in front of the store, not a second tape: it keeps raw
messages for `stream_max_age_hours` (default 24 h, enough to ride out a persist outage)
and at most `stream_max_bytes`, S2-compressed. When it is full it refuses new publishes
(`DiscardPolicy.NEW`) instead of dropping the oldest unpersisted ones, so the publisher
sees every refusal (ingest keeps the refused ids as gaps and fetches them again). It allows
fast-ingest batches (ADR-50, nats-server ≥ 2.14), which ingest publishes trades in.
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
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
        allow_batched=True,
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


def kv_bucket_config(bucket: str, description: str, replicas: int = 1) -> KeyValueConfig:
    """A tradetape KV bucket: on disk, the newest value of each key only, `replicas` copies on a cluster."""
    return KeyValueConfig(
        bucket=bucket, description=description, history=1, storage=StorageType.FILE, replicas=replicas
    )


def persist_durable(shard: str) -> str:
    return f"persist-{shard}"


def persist_consumer_config(settings: Settings, symbols: tuple[str, ...] | None = None) -> ConsumerConfig:
    """The shard's durable consumer, filtered on the subjects of its `symbols` (default: `settings.shard_symbols`).

    With any market's `ALL` (`ALL`, `um:ALL`, `cm:ALL`) on a single shard it takes every trade subject
    (persist dead-letters an instrument it does not own): thousands of filter subjects
    would cost the server (nats-server 2.15 took 0.4 s to create a consumer with 2,000 and
    3 s with 5,000; nats-server#6046 proposes a hard limit of 1,000), and a symbol listed
    after the start is stored too. A shard with more than that many symbols is refused, and
    one with none (an empty filter would be every subject).
    """
    max_filter_subjects = 1000
    if settings.symbols_from_exchange and settings.shard_count == 1:
        filter_subjects = [TRADES_SUBJECTS]
    else:
        owned = settings.shard_symbols if symbols is None else symbols
        if not owned:  # no filter at all would be every subject
            raise ValueError(
                f"persist shard {settings.shard} ({settings.shard_index} of {settings.shard_count}) owns no symbol"
            )
        if len(owned) > max_filter_subjects:
            raise ValueError(
                f"persist shard {settings.shard} would filter {len(owned)} subjects, more than the "
                f"{max_filter_subjects} a JetStream consumer handles well: raise "
                f"{Settings.env_name('shard_count')} (now {settings.shard_count})"
            )
        filter_subjects = [trade_subject(symbol) for symbol in owned]
    return ConsumerConfig(
        durable_name=persist_durable(settings.shard),
        description=f"persist shard {settings.shard}",
        filter_subjects=filter_subjects,
        deliver_policy=DeliverPolicy.ALL,
        # Explicit, not ALL: after a crash the new process's first ack would otherwise also
        # ack the dead process's unwritten messages (the recovery test catches exactly that).
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=PERSIST_ACK_WAIT_S,
        max_ack_pending=PERSIST_MAX_ACK_PENDING,
        max_deliver=PERSIST_MAX_DELIVER,
    )


LISTED_CATCH_UP_INACTIVE_S = 60.0
"""A listing's catch-up consumer the server removes once persist stopped fetching from it this long."""


def listed_catch_up_config(settings: Settings, symbols: tuple[str, ...], sequence: int) -> ConsumerConfig:
    """A consumer of the stream's messages of `symbols` from the first: those a grown filter does not go back for.

    Persist's durable consumer takes a symbol listed while it runs from its delivered position
    on; this one (`persist-<shard>-listed-<n>`, removed by the server once unused) hands it the
    symbols' earlier messages, which the store keeps once whichever consumer brings them.
    """
    return ConsumerConfig(
        name=f"{persist_durable(settings.shard)}-listed-{sequence}",
        description=f"persist shard {settings.shard}: symbols listed while it ran, from their first message",
        filter_subjects=[trade_subject(symbol) for symbol in symbols],
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=PERSIST_ACK_WAIT_S,
        max_ack_pending=PERSIST_MAX_ACK_PENDING,
        max_deliver=PERSIST_MAX_DELIVER,
        inactive_threshold=LISTED_CATCH_UP_INACTIVE_S,
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


async def ensure_persist_consumer(
    js: JetStreamContext, settings: Settings, symbols: tuple[str, ...] | None = None
) -> str:
    config = persist_consumer_config(settings, symbols)
    await js.add_consumer(TRADES_STREAM, config)
    assert config.durable_name is not None
    return config.durable_name
