"""Which store serves each persist shard, in NATS KV: a worker from another data directory cannot answer for it.

An analytics worker reads a shard's RocksDB as a secondary, so it must read the one persist
writes. Persist records its store's id (made once, in the shard's `shard.json`) at start;
an analytics worker compares its own directory's id with the record before it joins the
shard's queue group, and refuses to start on a mismatch, naming both directories. Layout:

- bucket `TAPE_SHARD_STORES` (file storage, one revision kept per key);
- key: the shard's name (`TRADETAPE_SHARD`, letters, digits, `_` and `-`);
- value: JSON `{"v": 1, "shard", "store_id", "host", "dir", "since_ms"}` (`ShardStore`).

No record (no persist has run against this NATS with this version) contradicts nothing: the
worker starts, and says so in its log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from pydantic import BaseModel, ValidationError

from tradetape.bus.provision import kv_bucket_config
from tradetape.errors import ConfigError

SHARD_STORES_BUCKET = "TAPE_SHARD_STORES"


class ForeignStoreError(ConfigError, RuntimeError):
    """This worker's data directory does not hold the store the shard's persist writes."""


class ShardStore(BaseModel):
    """The store that serves a shard, as its persist recorded it."""

    v: Literal[1] = 1
    shard: str
    store_id: str
    host: str
    dir: str
    since_ms: int

    @property
    def place(self) -> str:
        return f"{self.host}:{self.dir}"


async def record_shard_store(js: JetStreamContext, record: ShardStore, *, replicas: int = 1) -> ShardStore | None:
    """Record the store that serves `record.shard` now; returns the record it replaces (None if none or unreadable)."""
    about = "the store (id, host, directory) each persist shard writes"
    kv = await js.create_key_value(kv_bucket_config(SHARD_STORES_BUCKET, about, replicas))
    previous: ShardStore | None = None
    try:
        entry = await kv.get(record.shard)
        previous = ShardStore.model_validate_json(entry.value or b"")
    except (KeyNotFoundError, ValidationError):
        previous = None
    await kv.put(record.shard, record.model_dump_json().encode())
    return previous


async def read_shard_store(js: JetStreamContext, shard: str) -> ShardStore | None:
    """The recorded store of `shard`, None if none was recorded; `ForeignStoreError` if the record is not one."""
    try:
        kv = await js.key_value(SHARD_STORES_BUCKET)
        entry = await kv.get(shard)
    except (BucketNotFoundError, KeyNotFoundError):
        return None
    try:
        return ShardStore.model_validate_json(entry.value or b"")
    except ValidationError as exc:
        raise ForeignStoreError(f"the record of shard {shard}'s store is unreadable: {exc}") from None


def check_same_store(record: ShardStore | None, own_id: str | None, own_dir: Path) -> None:
    """`ForeignStoreError`, naming both directories, unless `own_dir` holds the recorded store."""
    if record is None or record.store_id == own_id:
        return
    own = f"store {own_id}" if own_id is not None else "no store of this shard"
    raise ForeignStoreError(
        f"shard {record.shard} is written by persist at {record.place} (store {record.store_id}), "
        f"but this worker's {own_dir.resolve()} holds {own}: it would answer for the shard from another "
        "store; start it with the data directory persist writes (or a copy shared with it)"
    )
