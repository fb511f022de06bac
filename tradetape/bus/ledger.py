"""The ingest gap ledger in NATS KV: per instrument, the confirmed watermark and the open gaps.

Ingest writes it, analytics (`coverage`) and operators read it. Layout:

- bucket `TAPE_INGEST_LEDGER` (file storage, one revision kept per key);
- key `binance.<INSTRUMENT>`, the instrument's token (`tradetape.domain.instruments`):
  `binance.BTCUSDT` for spot as ever, `binance.um.BTCUSDT` for USD-M, so markets never share an entry;
- value: JSON `{"v": 1, "symbol": NAME, "watermark": W, "last_id": L, "updated_ms": t, "gaps": [...]}`
  where every agg id `<= W` is confirmed stored in the trades stream, `L >= W` is the
  highest confirmed id, and each gap is `{"from_id", "to_id", "opened_ms", "attempts",
  "last_error"}`: ids (inclusive) missing or not yet confirmed. Ids in `(W, L]` outside
  the gaps are confirmed; gaps may also lie above `L` (seen missing, not yet fetched).

The codec and the read functions are pure of ingest's internals, so a reader needs only
this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from tradetape.bus.provision import kv_bucket_config
from tradetape.bus.subjects import EXCHANGE
from tradetape.domain.instruments import instrument_token
from tradetape.errors import FormatError

LEDGER_BUCKET = "TAPE_INGEST_LEDGER"
LEDGER_VERSION = 1
MAX_LEDGER_GAPS = 1000
"""Gaps kept per symbol: beyond it the newest are merged into one, so a value stays far below
the max payload (a refused publish makes nats-py close the connection)."""
MAX_ERROR_CHARS = 120


class LedgerFormatError(FormatError):
    """A ledger value that is not one this module wrote."""


@dataclass(frozen=True, slots=True)
class LedgerGap:
    from_id: int
    to_id: int
    opened_ms: int
    """When ingest first saw the ids missing (epoch ms); the age shown in logs and coverage."""
    attempts: int = 0
    """REST fetches tried so far."""
    last_error: str = ""

    def age_ms(self, now_ms: int) -> int:
        return max(0, now_ms - self.opened_ms)

    @property
    def count(self) -> int:
        return self.to_id - self.from_id + 1


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    symbol: str
    watermark: int
    last_id: int
    updated_ms: int
    gaps: tuple[LedgerGap, ...] = field(default=())

    @property
    def missing(self) -> int:
        return sum(gap.count for gap in self.gaps)


def ledger_key(symbol: str) -> str:
    return f"{EXCHANGE}.{instrument_token(symbol)}"


def encode_entry(entry: LedgerEntry) -> bytes:
    gaps = entry.gaps
    if len(gaps) > MAX_LEDGER_GAPS:
        tail = gaps[MAX_LEDGER_GAPS - 1 :]
        merged = LedgerGap(
            tail[0].from_id,
            tail[-1].to_id,
            min(g.opened_ms for g in tail),
            max(g.attempts for g in tail),
            "merged: too many gaps",
        )
        gaps = (*gaps[: MAX_LEDGER_GAPS - 1], merged)
    return orjson.dumps(
        {
            "v": LEDGER_VERSION,
            "symbol": entry.symbol,
            "watermark": entry.watermark,
            "last_id": entry.last_id,
            "updated_ms": entry.updated_ms,
            "gaps": [
                {
                    "from_id": g.from_id,
                    "to_id": g.to_id,
                    "opened_ms": g.opened_ms,
                    "attempts": g.attempts,
                    "last_error": g.last_error[:MAX_ERROR_CHARS],
                }
                for g in gaps
            ],
        }
    )


def decode_entry(data: bytes) -> LedgerEntry:
    """A stored value back into an entry; `LedgerFormatError` if it is not a valid one."""
    try:
        obj = orjson.loads(data)
        if not isinstance(obj, dict) or obj.get("v") != LEDGER_VERSION:
            raise LedgerFormatError(f"not a version {LEDGER_VERSION} ledger value")
        gaps = tuple(
            LedgerGap(
                _int(g["from_id"]), _int(g["to_id"]), _int(g["opened_ms"]), _int(g["attempts"]), str(g["last_error"])
            )
            for g in obj["gaps"]
        )
        entry = LedgerEntry(
            str(obj["symbol"]), _int(obj["watermark"]), _int(obj["last_id"]), _int(obj["updated_ms"]), gaps
        )
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise LedgerFormatError(f"malformed ledger value: {exc!r}") from exc
    if entry.last_id < entry.watermark:
        raise LedgerFormatError("last_id below watermark")
    previous = entry.watermark
    for gap in gaps:
        if not previous < gap.from_id <= gap.to_id:
            raise LedgerFormatError(f"gaps must ascend above the watermark, got {gap.from_id}..{gap.to_id}")
        previous = gap.to_id
    return entry


def _int(value: object) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {value!r}")
    return value


async def ledger_bucket(js: JetStreamContext, *, create: bool = False, replicas: int = 1) -> KeyValue | None:
    """The ledger bucket; created when `create` (with `replicas` on a cluster), else None if ingest never ran."""
    if create:
        about = "ingest gap ledger: confirmed watermark and open gaps per symbol"
        return await js.create_key_value(kv_bucket_config(LEDGER_BUCKET, about, replicas))
    try:
        return await js.key_value(LEDGER_BUCKET)
    except BucketNotFoundError:
        return None


async def read_entry(kv: KeyValue, symbol: str) -> LedgerEntry | None:
    try:
        stored = await kv.get(ledger_key(symbol))
    except KeyNotFoundError:
        return None
    return decode_entry(stored.value or b"")


async def write_entry(kv: KeyValue, entry: LedgerEntry) -> None:
    await kv.put(ledger_key(entry.symbol), encode_entry(entry))


async def open_gaps(js: JetStreamContext, symbol: str) -> list[LedgerGap]:
    """The gaps ingest still has open for `symbol` (for `coverage` and operators)."""
    kv = await ledger_bucket(js)
    entry = None if kv is None else await read_entry(kv, symbol)
    return [] if entry is None else list(entry.gaps)
