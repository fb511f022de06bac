"""Shards: which database an instrument lives in, and the lock that keeps one writer per shard.

A persist shard owns a set of instruments (an explicit list, or with `ALL`, `um:ALL`,
`cm:ALL` what each market's exchangeInfo lists at its start; all of them, or shard i of N
by a stable hash of the instrument's name, `tradetape.settings.shard_of`: the market is
part of the hash, and spot's bare name hashes as it always did) and writes
`<data dir>/shards/<shard>/` alone. The lock (`flock` on a file in that directory,
released by the kernel even after `kill -9`) stops a second process from acting as the
same shard before it touches the consumer; the manifest beside it (`shard.json`) names
the shard's symbols, so analytics workers and tools find which directory serves which
symbol (`find_shards`), and the store's id: made once, when the manifest is first written,
and kept by every later write, so that a worker can tell this store from another data
directory's store of the same shard (`tradetape.bus.shard_stores`).
Only instrument names (`tradetape.domain.instruments`: `BTCUSDT`, `um:BTCUSDT`) are written
to a manifest or read from one: whatever else a manifest holds is left out, with a warning,
so no other name reaches a subject, a key, a path or the web page.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

from tradetape.domain.instruments import check_instrument, is_instrument
from tradetape.ground.lock import DataDirLock, DataDirLocked
from tradetape.store.rocks import StoreError

logger = logging.getLogger(__name__)

LOCK_FILE = "writer.lock"
MANIFEST_FILE = "shard.json"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
"""Far above the ~40 KB of every symbol Binance lists; a larger manifest is not one persist wrote."""


class ShardLockedError(StoreError):
    """Another process is already the writer of this shard."""


class ShardLock:
    """Held by the one writer of a shard directory; `release()` is safe twice."""

    def __init__(self, shard_dir: Path) -> None:
        self._lock = DataDirLock(shard_dir / LOCK_FILE)

    def acquire(self) -> None:
        try:
            self._lock.acquire()
        except DataDirLocked as exc:
            pid = exc.holder.pid if exc.holder.pid is not None else "unknown"
            raise ShardLockedError(f"shard {exc.path.parent} is already written by pid {pid}") from None

    def release(self) -> None:
        self._lock.release()


def write_manifest(shard_dir: Path, shard: str, symbols: tuple[str, ...]) -> str:
    """Record the shard's symbols (keeping its store id, made on the first write); returns the store id.

    Warns about another shard that claims one of the symbols.
    """
    for symbol in symbols:
        check_instrument(symbol)
    for other, other_symbols in find_shards(shard_dir.parent).items():
        shared = sorted(set(other_symbols) & set(symbols))
        if other != shard and shared:
            logger.warning("symbols in two shards", extra={"shard": shard, "other": other, "symbols": ",".join(shared)})
    shard_dir.mkdir(parents=True, exist_ok=True)
    identity = store_id(shard_dir) or uuid.uuid4().hex
    path = shard_dir / MANIFEST_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"shard": shard, "symbols": list(symbols), "store_id": identity}) + "\n")
    temporary.replace(path)
    return identity


def store_id(shard_dir: Path) -> str | None:
    """The id of the store in `shard_dir` (from its manifest), None where no persist or import wrote one."""
    try:
        value = json.loads((shard_dir / MANIFEST_FILE).read_text()).get("store_id")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError):
        logger.warning("unreadable shard manifest", extra={"path": str(shard_dir / MANIFEST_FILE)})
        return None
    return value if isinstance(value, str) and value else None


def find_shards(shards_root: Path) -> dict[str, tuple[str, ...]]:
    """Every shard under `<data dir>/shards` with a manifest naming its own directory, and its symbols."""
    found: dict[str, tuple[str, ...]] = {}
    for manifest in sorted(shards_root.glob(f"*/{MANIFEST_FILE}")):
        try:
            if manifest.stat().st_size > MAX_MANIFEST_BYTES:
                raise ValueError(f"larger than {MAX_MANIFEST_BYTES} bytes")
            body = json.loads(manifest.read_text())
            if body["shard"] != manifest.parent.name:
                raise ValueError("the manifest names another shard than its directory")
            names = list(body["symbols"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("unreadable shard manifest", extra={"path": str(manifest), "error": str(exc)[:200]})
            continue
        symbols = tuple(name for name in names if is_instrument(name))
        if len(symbols) < len(names):
            logger.warning(
                "shard manifest names that are no instrument left out",
                extra={"path": str(manifest), "left_out": len(names) - len(symbols)},
            )
        found[manifest.parent.name] = symbols
    return found
