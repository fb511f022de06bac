"""Getting history into a shard's store: through its running persist, or directly when none runs.

RocksDB allows one writer per shard. If the shard's lock is free, the importer takes it
and writes with `ShardWriter.import_trades` itself; if a persist holds it, every batch
goes to that persist as a bulk request over NATS (`tradetape.history.bulk`), which calls
the same function. Either way a whole file is checked first (rows by the dump reader;
agg ids the store holds must come with the same contents, read from a secondary view),
then written in batches, the first and last chunks together, so an import cut short
shows as a gap in the completeness index and one that fails writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from tradetape.bus.auth import NatsAuth
from tradetape.bus.connect import connect, resolve_nats_url
from tradetape.bus.subjects import import_subject
from tradetape.domain.columns import TradeColumns
from tradetape.domain.id_runs import IdRuns
from tradetape.domain.instruments import check_instrument
from tradetape.history.bulk import BATCH_TRADES, ImportReply, batches, encode_batch
from tradetape.history.dumps import Dump, DumpError
from tradetape.settings import Settings
from tradetape.store import (
    ImportConflictError,
    ImportCounts,
    ShardLockedError,
    ShardView,
    ShardWriter,
    StoredTape,
    StoreError,
    find_shards,
    write_manifest,
)

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 120.0
DIRECT_BATCH_TRADES = 200_000
T = TypeVar("T")
Progress = Callable[[int], None]
"""Called with the number of trades of each batch written."""


class ImportTargetError(StoreError):
    """No shard can take the symbol, or the persist that holds its shard does not answer."""


@dataclass
class ImportResult:
    source: str
    symbol: str
    trades: int = 0
    added: int = 0
    duplicates: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)
    """Agg-id gaps the store still has between the first and last id imported."""
    route: str = ""
    """``direct`` (this process wrote the store) or ``persist`` (over NATS)."""
    beyond_retention: int = 0
    """Trades older than `Settings.retention_days`: persist's hourly retention will delete them."""
    voids: int = 0
    """Of `trades`, the void rows (ids Binance invalidated): stored as voids, counted by `coverage`."""


def shard_dir_of(settings: Settings, symbol: str) -> Path:
    """The shard directory that holds `symbol`: the shard whose manifest lists it, else this settings' shard."""
    check_instrument(symbol)
    root = settings.data_dir / "shards"
    for shard, symbols in find_shards(root).items():
        if symbol in symbols:
            return root / shard
    if settings.owns(symbol):
        return settings.shard_dir
    if settings.symbols_from_exchange:
        raise ImportTargetError(
            f"{symbol} is in no shard: no shard manifest under {root} lists it and by its hash it is not "
            f"shard {settings.shard_index} of {settings.shard_count}"
        )
    raise ImportTargetError(
        f"{symbol} is in no shard: no shard manifest under {root} lists it and it is not one of "
        f"{Settings.env_name('symbols')}={','.join(settings.symbols)}"
    )


class TapeImporter:
    """Imports into whichever shards the symbols live in; `async with TapeImporter(settings) as importer`."""

    def __init__(self, settings: Settings, *, persist_wait_s: float = 0.0) -> None:
        """`persist_wait_s` > 0: always go through persist, waiting that long for it to answer (`up`'s backfill)."""
        self._settings = settings
        self._persist_wait_s = persist_wait_s
        self._stores: dict[Path, ShardWriter] = {}
        self._persisted: set[Path] = set()
        self._nc: Client | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the stores this importer opened and its NATS connection; safe twice."""
        stores, self._stores = self._stores, {}
        for store in stores.values():
            store.close()
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            await nc.close()

    def _route(self, symbol: str) -> tuple[Path, ShardWriter | None]:
        """The shard of `symbol`, and its store if this process may write it (None: persist holds it)."""
        path = shard_dir_of(self._settings, symbol)
        if path in self._stores:
            self._list_in_manifest(path, symbol)
            return path, self._stores[path]
        if path in self._persisted or self._persist_wait_s > 0:
            return path, None
        try:
            store = ShardWriter(path)
        except ShardLockedError:
            self._persisted.add(path)
            return path, None
        self._stores[path] = store
        if path == self._settings.shard_dir and not (path / "shard.json").exists():
            listed = () if self._settings.symbols_from_exchange else self._settings.shard_symbols
            write_manifest(path, self._settings.shard, listed)
        self._list_in_manifest(path, symbol)
        return path, store

    def _list_in_manifest(self, path: Path, symbol: str) -> None:
        """With `ALL`, a symbol imported straight into this shard joins its manifest (persist lists the rest)."""
        if not self._settings.symbols_from_exchange or path != self._settings.shard_dir:
            return
        listed = find_shards(path.parent).get(self._settings.shard, ())
        if symbol not in listed:
            write_manifest(path, self._settings.shard, (*listed, symbol))

    async def import_dump(self, dump: Dump, progress: Progress | None = None) -> ImportResult:
        """One validated file into the store; `DumpError` (naming the line) if it conflicts with what is stored."""
        try:
            return await self.import_trades(dump.symbol, dump.source, dump.trades, progress)
        except ImportConflictError as exc:
            raise DumpError(dump.source, str(exc), dump.line_of(exc.agg_id)) from None

    async def import_trades(
        self, symbol: str, source: str, trades: TradeColumns, progress: Progress | None = None
    ) -> ImportResult:
        """Trades of one symbol (ascending by agg id, each once); `ImportConflictError` before anything is written."""
        path, store = self._route(symbol)
        result = ImportResult(source, symbol, len(trades), route="direct" if store is not None else "persist")
        if len(trades) == 0:
            return result
        result.voids = int(trades.voids().sum())
        cutoff = time.time() * 1000 - self._settings.retention_days * 86_400_000
        result.beyond_retention = int((trades.time < cutoff).sum())
        if store is not None:
            self._check(store.tape, symbol, trades, store.index(symbol))
            for batch in batches(trades, DIRECT_BATCH_TRADES):
                counts = store.import_trades(symbol, batch, roll_up_before_ms=self._roll_up_before())
                self._count(result, counts, len(batch), progress)
            runs = store.index(symbol)
        else:
            with ShardView(path) as view:
                tape = view.tape()
                if tape is not None:
                    self._check(tape, symbol, trades, tape.runs(symbol))
                for batch in batches(trades, BATCH_TRADES):
                    self._count(result, await self._send(symbol, source, batch), len(batch), progress)
                tape = view.tape()
                runs = tape.runs(symbol) if tape is not None else IdRuns.empty()
        result.gaps = runs.clip(int(trades.agg_id[0]), int(trades.agg_id[-1])).gaps()
        logger.info(
            "imported",
            extra={
                "symbol": symbol,
                "source": source,
                "trades": result.trades,
                "added": result.added,
                "duplicates": result.duplicates,
                "voids": result.voids,
                "gaps": len(result.gaps),
                "route": result.route,
            },
        )
        return result

    def stored_runs(self, symbol: str) -> IdRuns:
        """The agg ids the store holds for `symbol` (the completeness index)."""
        return self._reading(symbol, lambda tape: tape.runs(symbol), IdRuns.empty())

    def gaps(self, symbol: str, time_range: tuple[int, int] | None) -> list[tuple[int, int]]:
        """The index's gaps between the first and last id stored in the range (None: the whole tape)."""
        return self._reading(symbol, lambda tape: tape.coverage(symbol, time_range).gaps, [])

    def gap_times(self, symbol: str, from_id: int, to_id: int) -> tuple[int, int] | None:
        """The trade times of the stored neighbours of a gap (None if either is not stored)."""
        return self._reading(symbol, lambda tape: tape.gap_times(symbol, from_id, to_id), None)

    def _reading(self, symbol: str, read: Callable[[StoredTape], T], empty: T) -> T:
        """`read` on the store: through the writer if this process holds the shard, else a fresh secondary view."""
        path, store = self._route(symbol)
        if store is not None:
            return read(store.tape)
        with ShardView(path) as view:
            tape = view.tape()
            return read(tape) if tape is not None else empty

    @staticmethod
    def _check(tape: StoredTape, symbol: str, trades: TradeColumns, runs: IdRuns) -> None:
        if len(runs) == 0:
            return
        held = runs.contains(trades.agg_id)
        if bool(held.any()):
            tape.check_same(symbol, trades.take(held))

    def _roll_up_before(self) -> int:
        return int(time.time() * 1000 - self._settings.rollup_age_s * 1000)

    @staticmethod
    def _count(result: ImportResult, counts: ImportCounts, n: int, progress: Progress | None) -> None:
        result.added += counts.added
        result.duplicates += counts.duplicates
        if progress is not None:
            progress(n)

    async def _send(self, symbol: str, source: str, trades: TradeColumns) -> ImportCounts:
        if self._nc is None:
            url = resolve_nats_url(self._settings)
            try:
                auth = NatsAuth.from_settings(self._settings)
                self._nc = await connect(url, "tradetape-import", auth=auth, retry=False, connect_timeout=3)
            except (NatsError, OSError, TimeoutError) as exc:
                raise ImportTargetError(
                    f"the shard of {symbol} is held by a running persist, but NATS at {url} cannot be reached: {exc!r}"
                ) from None
        subject = import_subject(symbol)
        body = encode_batch(source, trades)
        if len(body) > self._nc.max_payload:
            half = len(trades) // 2
            first = await self._send(symbol, source, trades.take(slice(0, half)))
            second = await self._send(symbol, source, trades.take(slice(half, None)))
            return ImportCounts(first.added + second.added, first.duplicates + second.duplicates)
        deadline = time.monotonic() + self._persist_wait_s
        while True:
            try:
                msg = await self._nc.request(subject, body, timeout=REQUEST_TIMEOUT_S)
                break
            except NoRespondersError:
                if time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                    continue
                raise ImportTargetError(
                    f"the shard of {symbol} is held by a running persist, but nobody answers {subject}"
                ) from None
            except NatsTimeoutError:
                raise ImportTargetError(f"persist did not answer {subject} within {REQUEST_TIMEOUT_S:g} s") from None
        reply = ImportReply.model_validate_json(msg.data)
        if reply.error_code == "conflict" and reply.agg_id is not None:
            raise ImportConflictError(symbol, reply.agg_id, (reply.error or "").split(": ", 1)[-1].split(" than")[0])
        if reply.error_code is not None:
            raise ImportTargetError(f"persist refused a batch of {source}: {reply.error}")
        return ImportCounts(reply.added, reply.duplicates)
