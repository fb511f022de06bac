"""Migrating a database of an older format to the current one: values sealed (formats 1, 2), then the aggregate layer.

Sealing (from format 1 or 2):

The writer runs it once, when it opens such a database, before anything else touches it:
one pass in key order seals each unsealed value (`tradetape.store.sealed`) in synced write
batches of `BATCH_BYTES`, logging its progress after each; the writer records format 3 only
after the last batch. A value is sealed only if it decodes as its kind once sealed, so the
checksum never vouches for bytes that were unreadable before; such a value is left as it
is and named in the log, and reading it is `store_corrupt`. A value sealed already is left
alone, so a migration cut short (a crash, a kill) resumes where it stopped. Readers refuse
an unmigrated database (`StoreLayoutError`) rather than read unchecked values.

Sealing checks each segment by decoding it (~2.5 ms for a busy hour): measured, 0.3 s for a
busy symbol-day (2.3M real-like trades, 75 values, 8.8 MB), so about 2 s a busy symbol-week.

The aggregate layer (from format 3, after sealing from older ones): at open too, before the
writer takes its first write, `build_layers` decodes every segment that has no layer yet and
writes its second bars and minute levels (`tradetape.store.layer`) in synced batches, with
progress logged; the layout says the current format after the last batch (formats 5, segment
values of several blocks, and 6, window tails, need nothing done to a format-4 or -5 store: its values read as they
are). A segment whose layer is there already is skipped, so an upgrade cut short resumes. Readers keep answering all the
while: they read format 3 and decode the trades of a segment with no layer yet, so every
answer is the same before, during and after (`tests/store/test_layer.py`).

Window summaries (format 7, from any older one): `summarize_windows` puts the summary of every window held
(`tradetape.store.window_writes`), after the layer; readers of an older format decode the windows instead, so
they answer the same until the layout says 7. A few young windows in a live store: milliseconds.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from rocksdict import Rdict, ReadOptions, WriteBatch, WriteOptions

from tradetape.errors import FormatError
from tradetape.store.codec import decode_window, decode_windows
from tradetape.store.index import decode_runs
from tradetape.store.keys import (
    HISTOGRAM,
    INDEX,
    MINUTE_LEVELS,
    RETAINED,
    ROLLED,
    SECOND_BARS,
    SEGMENT,
    SUMMARY,
    VOID,
    WINDOW,
    parse_window_key,
    prefix_end,
    timed_key,
    window_of,
    window_summary_key,
)
from tradetape.store.layer import decode_minute_levels, decode_second_bars, put_layer
from tradetape.store.meta import decode_mark
from tradetape.store.rocks import walk
from tradetape.store.sealed import decoded_together, is_sealed, seal
from tradetape.store.segments import SegmentSummary, decode_histogram, decode_stored_segment

logger = logging.getLogger(__name__)

BATCH_BYTES = 16 * 2**20
_DECODERS: dict[bytes, Callable[[bytes], object]] = {
    f"{WINDOW}:".encode(): decode_window,
    f"{VOID}:".encode(): decode_window,
    f"{SEGMENT}:".encode(): decode_stored_segment,
    f"{SUMMARY}:".encode(): SegmentSummary.decode,
    f"{HISTOGRAM}:".encode(): decode_histogram,
    f"{SECOND_BARS}:".encode(): decode_second_bars,
    f"{MINUTE_LEVELS}:".encode(): decode_minute_levels,
    f"{INDEX}:".encode(): decode_runs,
    f"{ROLLED}:".encode(): decode_mark,
    f"{RETAINED}:".encode(): decode_mark,
}
"""What each kind of key holds, by the prefix before its symbol; other keys (the layout) are not sealed here."""


def _decoder(key: bytes) -> Callable[[bytes], object] | None:
    return next((decode for prefix, decode in _DECODERS.items() if key.startswith(prefix)), None)


def seal_values(db: Rdict, path: Path, sync: WriteOptions, from_format: int) -> None:
    """Seal every unsealed value of a format-`from_format` database (see the module's docstring).

    Silent where there is nothing to seal (a new database, or a migration that had finished its batches).
    """
    started = time.monotonic()
    total = db.property_int_value("rocksdb.estimate-num-keys") or 0
    seen = sealed = unreadable = 0
    batch, pending = WriteBatch(raw_mode=True), 0
    it = db.iter(ReadOptions())
    it.seek_to_first()
    while it.valid():
        key, value = it.key(), it.value()
        it.next()
        seen += 1
        decode = _decoder(key)
        if decode is None or is_sealed(value):
            continue
        if sealed + unreadable == 0:
            extra = {"path": str(path), "from_format": from_format, "keys_estimated": total}
            logger.warning("store migration started: sealing every value", extra=extra)
        candidate = seal(value)
        try:
            decode(candidate)
        except FormatError as exc:
            unreadable += 1
            logger.error("stored value unreadable, left unsealed", extra={"key": key.decode(errors="replace"),
                                                                          "error": str(exc)[:200]})
            continue
        batch.put(key, candidate)
        sealed, pending = sealed + 1, pending + len(candidate)
        if pending >= BATCH_BYTES:
            db.write(batch, sync)
            batch, pending = WriteBatch(raw_mode=True), 0
            logger.info("store migration", extra={"keys_seen": seen, "keys_estimated": total, "sealed": sealed})
    if not batch.is_empty():
        db.write(batch, sync)
    if sealed + unreadable == 0:
        return
    logger.warning(
        "store migrated",
        extra={"path": str(path), "keys": seen, "sealed": sealed, "unreadable": unreadable,
               "seconds": round(time.monotonic() - started, 1)},
    )


def build_layers(db: Rdict, path: Path, sync: WriteOptions) -> None:
    """Write the aggregate layer of every segment that has none (see the module's docstring); quiet if all have one."""
    started = time.monotonic()
    prefix = f"{SEGMENT}:".encode()
    built = unreadable = seen = 0
    batch, pending = WriteBatch(raw_mode=True), 0
    for it in walk(db, prefix, prefix_end(prefix)):
        key = it.key()
        _, symbol, start_text = key.decode().split(":")
        start = int(start_text)
        seen += 1
        layer_keys = [timed_key(kind, symbol, start) for kind in (SECOND_BARS, MINUTE_LEVELS)]
        if any(db.get(layer_key) is None for layer_key in layer_keys):
            if built + unreadable == 0:
                logger.warning("store upgrade started: building the aggregate layer", extra={"path": str(path)})
            try:
                trades = decode_stored_segment(it.value())
            except FormatError as exc:
                unreadable += 1
                logger.error("segment unreadable, no layer built", extra={"key": key.decode(errors="replace"),
                                                                         "error": str(exc)[:200]})
            else:
                put_layer(batch, symbol, start, trades)
                built, pending = built + 1, pending + len(trades) * 8
        if pending >= BATCH_BYTES:
            db.write(batch, sync)
            batch, pending = WriteBatch(raw_mode=True), 0
            logger.info("store upgrade", extra={"segments_seen": seen, "layers_built": built})
    if not batch.is_empty():
        db.write(batch, sync)
    if built + unreadable:
        logger.warning(
            "store upgraded: aggregate layer built",
            extra={"path": str(path), "segments": seen, "layers_built": built, "unreadable": unreadable,
                   "seconds": round(time.monotonic() - started, 1)},
        )


def summarize_windows(db: Rdict, path: Path, sync: WriteOptions) -> None:
    """Put the summary of every window (its own value and its tail's trades together); quiet if there is none."""
    prefix = f"{WINDOW}:".encode()
    summarized = unreadable = 0
    batch, pending = WriteBatch(raw_mode=True), 0
    for window, items in itertools.groupby(_items(db, prefix), key=lambda item: window_of(item[0])):
        try:
            trades = decoded_together(list(items), decode_windows, decode_window)
        except FormatError as exc:
            unreadable += 1
            logger.error("window unreadable, no summary", extra={"key": window.decode(errors="replace"),
                                                                 "error": str(exc)[:200]})
            continue
        symbol, start = parse_window_key(window)
        batch.put(window_summary_key(symbol, start), SegmentSummary.of(start, trades).encode())
        summarized, pending = summarized + 1, pending + len(trades) * 8
        if pending >= BATCH_BYTES:
            db.write(batch, sync)
            batch, pending = WriteBatch(raw_mode=True), 0
    if not batch.is_empty():
        db.write(batch, sync)
    if summarized + unreadable:
        extra = {"path": str(path), "windows": summarized, "unreadable": unreadable}
        logger.warning("store upgraded: window summaries written", extra=extra)


def _items(db: Rdict, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every key and value under `prefix`, in key order, one at a time."""
    for it in walk(db, prefix, prefix_end(prefix)):
        yield it.key(), it.value()
