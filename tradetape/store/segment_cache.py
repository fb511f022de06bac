"""Decoded segments, histograms and aggregate layers kept between queries, keyed by their summary.

Why: measured on a busy day (2M trades, `bench/query.py`), a 1 h profile spent most of
its time decoding the two hour segments it straddles, and a 24 h profile decoding 24
histograms, while dashboards ask for the same recent ranges every few seconds. Every
write to a segment (late trades merged in, retention cutting it) rewrites its summary
(count, ids, times, volume), so a key made of the summary never returns stale contents.
Cached arrays are read-only: a handler that tried to change one in place would raise
instead of corrupting the next answer. Least recently used entries go first once the
decoded arrays exceed `max_bytes`.

Replays read through the cache (`read_through`): a segment it holds is used, one it does not is
decoded for the replay alone, never added, and nothing is moved in the eviction order, so
streaming a week of hours back leaves the hours queries use where they were.

Thread safety: the analytics worker's query threads share one cache (and its read-through face). The entries, their
order and the counters change only under the lock; decoding happens outside it (two
threads missing the same segment both decode it, the second copy is not kept); what is
handed out is read-only, so sharing it needs no lock.

Young windows (`windows`): the windows not rolled up yet are kept decoded too, keyed by their
stored key and held only with the exact value they were decoded from: a window still growing is
decoded again (and replaces what was held), the others are not. Why: a dashboard polling the last
seconds decoded every one of them on every poll (py-spy at 2k/s: most of a worker's time), while
only the newest changes between two polls. They have their own least-recently-used order within an
eighth of `max_bytes` (`WINDOW_SHARE`): a window rolled up is never asked again, and those going
stale must push out each other, not the segments a worker warmed.

Warming (`warm`): a worker fills the cache with the newest segments before it serves
(`tradetape.store.warm_up`). Warmed entries go in behind everything held, first to go,
and one that does not fit is dropped at once: warming never evicts what is held, never
exceeds `max_bytes`, and is not counted in `hits` and `misses` (those count queries).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from rocksdict import Rdict

from tradetape.domain.aggregates import MinuteLevels, OhlcRows, SecondBars
from tradetape.domain.columns import TradeColumns
from tradetape.domain.price_levels import PriceLevels
from tradetape.store.codec import decode_window, decode_windows
from tradetape.store.decoding import decoded_all
from tradetape.store.keys import HISTOGRAM, SEGMENT, timed_key, window_key, window_summary_key
from tradetape.store.sealed import decoded, decoded_together
from tradetape.store.segments import SegmentSummary, decode_histogram, decode_stored_segment
from tradetape.store.window_reads import whole_window

Decoded = TradeColumns | PriceLevels | SecondBars | MinuteLevels | OhlcRows
Layer = TypeVar("Layer", SecondBars, MinuteLevels, OhlcRows)
Key = tuple[str, str, SegmentSummary]
WINDOW_SHARE = 8
"""Young windows hold at most `max_bytes` // this (the rest is the segments', layers' and histograms')."""


@dataclass(frozen=True)
class _Asked:
    """The values one lookup asks for: those of `kind` of `summaries`' segments, decoded by `decode` and cached
    under `kind` + `variant` (another decoding of the same stored values is cached apart)."""

    db: Rdict
    kind: str
    symbol: str
    summaries: Sequence[SegmentSummary]
    decode: Callable[[bytes], Decoded]
    variant: str = ""

    def key(self, i: int, variant: str | None = None) -> Key:
        return (self.kind + (self.variant if variant is None else variant), self.symbol, self.summaries[i])

    def keys(self) -> list[Key]:
        return [self.key(i) for i in range(len(self.summaries))]


def _frozen(decoded: Decoded) -> Decoded:
    for column in decoded.arrays():
        column.flags.writeable = False
    return decoded


def _nbytes(decoded: Decoded) -> int:
    return sum(int(np.asarray(column).nbytes) for column in decoded.arrays())


@dataclass(frozen=True)
class _HeldWindow:
    """A young window's trades, the stored value they were decoded from or the window's summary when they were read
    (what a hit is checked against), and the bytes both take."""

    stored: bytes | SegmentSummary
    trades: TradeColumns
    size: int


class _Entries:
    """What a cache and its read-through face share; changed only under `lock`."""

    def __init__(self) -> None:
        self.items: OrderedDict[Key, tuple[Decoded, int]] = OrderedDict()
        """Each entry with its size in bytes, counted once when it comes in."""
        self.bytes = 0
        self.windows: OrderedDict[tuple[str, bytes], _HeldWindow] = OrderedDict()
        """Young windows by symbol and stored key, least recently used first."""
        self.window_bytes = 0
        self.lock = threading.Lock()


class SegmentCache:
    def __init__(self, max_bytes: int, *, _shared: _Entries | None = None) -> None:
        self.max_bytes = max_bytes
        self._fills = _shared is None
        self._shared = _Entries() if _shared is None else _shared
        self.hits = 0
        self.misses = 0
        """This face's lookups: a read-through face counts its own."""
        self.derived = 0
        """Of the hits, those derived from another variant held (`layers`' `derive`): work a warmed variant saves."""

    def read_through(self) -> SegmentCache:
        """A face of this cache that uses what it holds but never adds to it or reorders it (counted apart)."""
        return SegmentCache(self.max_bytes, _shared=self._shared)

    @property
    def held_bytes(self) -> int:
        """The decoded arrays held (and young windows' stored values), at most `max_bytes` once a lookup has
        evicted."""
        return self._shared.bytes + self._shared.window_bytes

    def windows(self, symbol: str, items: Sequence[tuple[bytes, bytes]]) -> TradeColumns:
        """The trades of young windows (keys and values as scanned) as one set: each window whose value is the one
        held comes from the cache, the others are decoded (and held in place of what was, a read-through face
        excepted)."""
        if self.max_bytes <= 0:
            return decoded_together(items, decode_windows, decode_window) if items else TradeColumns.empty()
        held = self._held_windows(symbol, [key for key, _ in items])
        parts: list[TradeColumns] = []
        fresh: list[tuple[bytes, _HeldWindow]] = []
        for (key, value), window in zip(items, held, strict=True):
            if window is None or window.stored != value:
                trades = decoded(key, value, decode_window)
                _frozen(trades)
                window = _HeldWindow(value, trades, len(value) + _nbytes(trades))
                fresh.append((key, window))
            parts.append(window.trades)
        self._hold_windows(symbol, [key for key, _ in items], fresh)
        return TradeColumns.concat(parts)

    def summarized_windows(self, db: Rdict, symbol: str, summaries: Sequence[SegmentSummary]) -> TradeColumns:
        """The trades of young windows known by their summaries (a format-7 store's): a window held under the same
        summary comes from the cache unread, the others are read and decoded. Every write that adds to a window puts
        its summary again (count, ids, times, volume), and a window only ever gains trades while it is stored, so
        its summary stands for what it holds, as a segment's does."""
        keys = [window_summary_key(symbol, summary.start) for summary in summaries]
        held = self._held_windows(symbol, keys) if self.max_bytes > 0 else [None] * len(keys)
        parts: list[TradeColumns] = []
        fresh: list[tuple[bytes, _HeldWindow]] = []
        for key, summary, window in zip(keys, summaries, held, strict=True):
            if window is None or window.stored != summary:
                trades = whole_window(db, window_key(symbol, summary.start))
                _frozen(trades)
                window = _HeldWindow(summary, trades, _nbytes(trades))
                if len(trades) == summary.trade_count:  # else the writer added to it since the summary was read
                    fresh.append((key, window))
            parts.append(window.trades)
        if self.max_bytes > 0:
            self._hold_windows(symbol, keys, fresh)
        return TradeColumns.concat(parts)

    def _held_windows(self, symbol: str, keys: Sequence[bytes]) -> list[_HeldWindow | None]:
        with self._shared.lock:
            return [self._shared.windows.get((symbol, key)) for key in keys]

    def _hold_windows(self, symbol: str, keys: Sequence[bytes], fresh: Sequence[tuple[bytes, _HeldWindow]]) -> None:
        """`keys` were used (moved to the back), `fresh` replace what was held under their keys; the least recently
        used go past the windows' share (none of this for a read-through face)."""
        if not self._fills:
            return
        shared = self._shared
        with shared.lock:
            for key in keys:
                if (symbol, key) in shared.windows:
                    shared.windows.move_to_end((symbol, key))
            for key, window in fresh:
                replaced = shared.windows.pop((symbol, key), None)
                shared.windows[(symbol, key)] = window
                shared.window_bytes += window.size - (0 if replaced is None else replaced.size)
            while shared.window_bytes > self.max_bytes // WINDOW_SHARE and shared.windows:
                shared.window_bytes -= shared.windows.popitem(last=False)[1].size

    def bodies(self, db: Rdict, symbol: str, summaries: Sequence[SegmentSummary]) -> list[TradeColumns | None]:
        """The trades of each segment, None where it went since its summary was read."""
        found = self._lookup(_Asked(db, SEGMENT, symbol, summaries, decode_stored_segment))
        return [body if isinstance(body, TradeColumns) else None for body in found]

    def histograms(self, db: Rdict, symbol: str, summaries: Sequence[SegmentSummary]) -> list[PriceLevels | None]:
        """Each segment's histogram, None where none is stored (sums beyond int64: decode its trades)."""
        found = self._lookup(_Asked(db, HISTOGRAM, symbol, summaries, decode_histogram))
        return [levels if isinstance(levels, PriceLevels) else None for levels in found]

    def layers(
        self,
        db: Rdict,
        kind: str,
        symbol: str,
        summaries: Sequence[SegmentSummary],
        decode: Callable[[bytes], Layer],
        variant: str = "",
        derive: tuple[str, Callable[[Any], Layer]] | None = None,
    ) -> list[Layer | None]:
        """Each segment's layer of `kind` (`tradetape.store.layer`), None where none is stored; `variant` names
        another decoding of the same values (the normal quantity's), cached apart. With `derive` (a variant and
        how this one follows from it), a value missing here but held as that variant is derived from it, not read
        again (a footprint's bucketed levels from the minute levels a worker warmed, its minute bars from the second
        bars)."""
        found = self._lookup(_Asked(db, kind, symbol, summaries, decode, variant), derive)
        return found  # type: ignore[return-value]

    def _lookup(
        self, asked: _Asked, derive: tuple[str, Callable[[Decoded], Decoded]] | None = None
    ) -> list[Decoded | None]:
        keys = asked.keys()
        shared = self._shared
        with shared.lock:
            entries = [shared.items.get(key) for key in keys]
            for key, entry in zip(keys, entries, strict=True):
                if entry is not None and self._fills:
                    shared.items.move_to_end(key)
            found: list[Decoded | None] = [None if entry is None else entry[0] for entry in entries]
            missing = [i for i, hit in enumerate(found) if hit is None]
            bases = self._bases(asked, missing, derive)
            derived = sum(base is not None for base in bases)
            self.hits += len(keys) - len(missing) + derived
            self.derived += derived
            self.misses += len(missing) - derived
        _derive_into(found, missing, bases, derive)
        self._decode_missing(asked, found, missing, warming=False)
        return found

    def _bases(
        self, asked: _Asked, missing: list[int], derive: tuple[str, Callable[[Decoded], Decoded]] | None
    ) -> list[Decoded | None]:
        """Under the lock: what the cache holds as `derive`'s variant of each value `missing` (none without one)."""
        if derive is None:
            return []
        entries = [self._shared.items.get(asked.key(i, derive[0])) for i in missing]
        return [None if entry is None else entry[0] for entry in entries]

    def warm(
        self,
        db: Rdict,
        kind: str,
        symbol: str,
        summaries: Sequence[SegmentSummary],
        decode: Callable[[bytes], Decoded],
        variant: str = "",
        derive: tuple[str, Callable[[Any], Decoded]] | None = None,
    ) -> bool:
        """Decode and keep the values of `kind` of `summaries` not held yet, behind everything held; False once
        one did not fit (see the module's docstring). With `derive`, as `layers`: from that variant where held."""
        asked = _Asked(db, kind, symbol, summaries, decode, variant)
        keys = asked.keys()
        with self._shared.lock:
            missing = [i for i, key in enumerate(keys) if key not in self._shared.items]
            bases = self._bases(asked, missing, derive)
        found: list[Decoded | None] = [None] * len(keys)
        _derive_into(found, missing, bases, derive)
        return self._decode_missing(asked, found, missing, warming=True)

    def _decode_missing(self, asked: _Asked, found: list[Decoded | None], missing: list[int], *, warming: bool) -> bool:
        """Fill `found` at `missing` from the store (where not derived already; decoded on two threads:
        `tradetape.store.decoding`) and keep what fits (a read-through face keeps nothing); False if a warmed value
        did not fit."""
        if not missing:
            return True
        unread = [i for i in missing if found[i] is None]
        stored_keys = [timed_key(asked.kind, asked.symbol, asked.summaries[i].start) for i in unread]
        stored: list[bytes | None] = asked.db.get(stored_keys) if unread else []  # type: ignore[arg-type, assignment]
        pairs = zip(unread, stored_keys, stored, strict=True)
        present = [(i, key, value) for i, key, value in pairs if value is not None]
        decoded = decoded_all([(key, value) for _, key, value in present], asked.decode)
        for (i, _, _), value in zip(present, decoded, strict=True):
            found[i] = _frozen(value)
        if self.max_bytes <= 0 or not self._fills:
            return not warming
        keys = asked.keys()
        fitted = True
        shared = self._shared
        with shared.lock:
            for i in missing:
                decoded_entry = found[i]
                if decoded_entry is None or keys[i] in shared.items:
                    continue
                size = _nbytes(decoded_entry)
                if warming and shared.bytes + size > self.max_bytes:
                    fitted = False
                    continue
                shared.items[keys[i]] = (decoded_entry, size)
                shared.bytes += size
                if warming:
                    shared.items.move_to_end(keys[i], last=False)
            while shared.bytes + shared.window_bytes > self.max_bytes and shared.items:
                _, (_, size) = shared.items.popitem(last=False)
                shared.bytes -= size
        return fitted


def _derive_into(
    found: list[Decoded | None],
    missing: list[int],
    bases: list[Decoded | None],
    derive: tuple[str, Callable[[Decoded], Decoded]] | None,
) -> None:
    """Fill `found` at each of `missing` whose base (`SegmentCache._bases`) is held with the value derived from it."""
    if derive is None:
        return
    for i, base in zip(missing, bases, strict=True):
        if base is not None:
            found[i] = _frozen(derive[1](base))
