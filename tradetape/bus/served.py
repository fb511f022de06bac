"""What each analytics shard serves, in NATS KV: discovery that stays small whatever the instrument count.

Analytics answers each method on one wildcard endpoint (`tape.query.<method>.>`), so `$SRV.INFO`
lists methods, not instruments (it outgrew NATS's 1 MiB max payload past ~600 symbols a shard
when it had an endpoint a symbol). Each shard's workers publish the instruments they serve here
instead, at start and whenever a listing adds some; every reader (the client's `served`, MCP's
`list_symbols`, `tradetape status`, the web page's picker) reads all shards' keys. Layout:

- bucket `TAPE_SERVED` (file storage, one revision kept per key, direct gets allowed: the web
  page reads it with two plain requests, `STREAM.INFO` for the keys and `DIRECT.GET` a key);
- key: the shard's name (`TRADETAPE_SHARD`);
- value: zlib-compressed JSON `{"v": 1, "shard", "shard_index", "shard_count", "methods",
  "symbols", "updated_ms"}` (`Served`).

Bounds: a value is refused above `MAX_SERVED_JSON` (4 MiB of JSON, ~110,000 instruments of the
longest names; Binance lists ~3,500 over its three markets) or above the connection's max
payload compressed (2,500 of the simulator's symbols make 30 KB of JSON, 6 KB compressed); a reader inflates
at most `MAX_SERVED_JSON` of a value and reads at most `MAX_SHARDS` keys. A value it cannot
read is left out with a warning, never an exception: discovery is most needed when something
is wrong.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import Literal

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyDeletedError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ValidationError

from tradetape.bus.provision import kv_bucket_config
from tradetape.domain.instruments import is_instrument
from tradetape.errors import FormatError

logger = logging.getLogger(__name__)

SERVED_BUCKET = "TAPE_SERVED"
SERVED_STREAM = f"KV_{SERVED_BUCKET}"
SERVED_KEYS = f"$KV.{SERVED_BUCKET}.>"
MAX_SERVED_JSON = 4 * 2**20
MAX_SHARDS = 1000
"""Keys read at most: far above any real shard count; a bucket with more is not one analytics wrote."""
READ_TIMEOUT_S = 2.0


class ServedFormatError(FormatError):
    """A served-instruments value that is not one: not zlib, too large inflated, or not the model."""


class Served(BaseModel):
    """The instruments and methods one shard's workers answer, as they published them."""

    v: Literal[1] = 1
    shard: str
    shard_index: int
    shard_count: int
    methods: list[str]
    symbols: list[str]
    updated_ms: int


def served_config(replicas: int = 1) -> KeyValueConfig:
    """Read by direct get (`$JS.API.DIRECT.GET`), the one read the QUERY and MONITOR roles may do."""
    config = kv_bucket_config(SERVED_BUCKET, "the instruments and methods each analytics shard serves", replicas)
    config.direct = True
    return config


def encode_served(served: Served) -> bytes:
    """The value for `served`; `ServedFormatError` above `MAX_SERVED_JSON` of JSON."""
    text = served.model_dump_json().encode()
    if len(text) > MAX_SERVED_JSON:
        raise ServedFormatError(
            f"shard {served.shard} serves {len(served.symbols)} instruments, {len(text)} bytes of JSON, above the "
            f"{MAX_SERVED_JSON} a served list may hold: split them over more shards (TRADETAPE_SHARD_COUNT)"
        )
    return zlib.compress(text, 6)


def decode_served(value: bytes) -> Served:
    """The `Served` a value holds, inflating at most `MAX_SERVED_JSON`; names that are no symbol left out."""
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(value, MAX_SERVED_JSON)
    except zlib.error as exc:
        raise ServedFormatError(f"not a zlib stream: {exc}") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise ServedFormatError(f"inflates past {MAX_SERVED_JSON} bytes, or is cut short")
    try:
        served = Served.model_validate_json(text)
    except ValidationError as exc:
        raise ServedFormatError(f"not a served list: {str(exc)[:200]}") from None
    served.symbols = [name for name in served.symbols if is_instrument(name)]
    return served


async def publish_served(js: JetStreamContext, served: Served, *, max_payload: int, replicas: int = 1) -> None:
    """Put `served` under its shard's key (the bucket made if missing); `ServedFormatError` if it cannot fit."""
    value = encode_served(served)
    if len(value) > max_payload:
        raise ServedFormatError(
            f"shard {served.shard}'s served list is {len(value)} bytes compressed, above the server's max payload "
            f"of {max_payload}: split its instruments over more shards (TRADETAPE_SHARD_COUNT)"
        )
    kv = await js.create_key_value(served_config(replicas))
    await kv.put(served.shard, value)


async def read_served(js: JetStreamContext) -> dict[str, Served]:
    """Every shard's served list, by shard; {} when no analytics worker ever published one."""
    try:
        info = await js.stream_info(SERVED_STREAM, subjects_filter=SERVED_KEYS)
        kv = await js.key_value(SERVED_BUCKET)
    except (NotFoundError, BucketNotFoundError):
        return {}
    prefix = SERVED_KEYS.removesuffix(">")
    keys = sorted(subject.removeprefix(prefix) for subject in (info.state.subjects or {}))
    if len(keys) > MAX_SHARDS:
        logger.warning("more served lists than are read", extra={"keys": len(keys), "read": MAX_SHARDS})
        keys = keys[:MAX_SHARDS]
    values = await asyncio.gather(*(_read_one(kv, key) for key in keys))
    return {key: value for key, value in zip(keys, values, strict=True) if value is not None}


async def _read_one(kv: KeyValue, key: str) -> Served | None:
    try:
        entry = await asyncio.wait_for(kv.get(key), READ_TIMEOUT_S)
        served = decode_served(entry.value or b"")
    except (KeyNotFoundError, KeyDeletedError):
        return None
    except (ServedFormatError, NatsError, TimeoutError) as exc:
        logger.warning("served list unreadable", extra={"shard": key[:80], "error": str(exc)[:200]})
        return None
    if served.shard != key:
        logger.warning("served list under another shard's key", extra={"key": key[:80], "shard": served.shard[:80]})
        return None
    return served


def served_methods(lists: dict[str, Served]) -> dict[str, list[str]]:
    """Instrument → the methods some shard answers for it, both sorted (what clients show)."""
    methods: dict[str, set[str]] = {}
    for served in lists.values():
        for symbol in served.symbols:
            methods.setdefault(symbol, set()).update(served.methods)
    return {symbol: sorted(names) for symbol, names in sorted(methods.items())}
