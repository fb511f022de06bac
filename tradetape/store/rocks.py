"""Opening a shard's RocksDB: the one set of options every writer and reader uses.

Raw mode (byte keys and values) is passed on every open: rocksdict does not detect it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from rocksdict import DBCompressionType, Options, Rdict, RdictIter, ReadOptions

from tradetape.errors import TradetapeError


class StoreError(TradetapeError, RuntimeError):
    """The store cannot do what was asked (its subclasses, drawn in `tradetape.errors`, say how).

    As itself: RocksDB refused a read or write (I/O error, full disk, corruption), and nothing was written.
    """


class StoreNotFoundError(StoreError, FileNotFoundError):
    """No database exists yet in the shard directory (persist has not written it)."""


@contextlib.contextmanager
def rocksdb_errors(path: Path) -> Iterator[None]:
    """Translate RocksDB's failures into `StoreError` (the one boundary where that happens).

    rocksdict raises a bare `Exception` for a RocksDB status error; its subclasses and every
    other exception type are bugs or closed handles, and pass through unchanged.
    """
    try:
        yield
    except Exception as exc:
        if type(exc) is not Exception:
            raise
        raise StoreError(f"RocksDB at {path}: {exc}") from exc


def store_options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_compression_type(DBCompressionType.zstd())
    options.set_max_background_jobs(2)
    options.set_keep_log_file_num(3)
    return options


def open_primary(path: Path) -> Rdict:
    path.mkdir(parents=True, exist_ok=True)
    return Rdict(str(path), store_options())


def bounded(lower: bytes, upper: bytes) -> ReadOptions:
    """Read options that keep an iterator within ``[lower, upper)``. Why: unbounded, a seek that finds nothing in its
    range steps on over every deleted entry after it (the young windows' summaries range-deleted by roll-ups, sorted
    after every window key: 183 µs a seek once a few hours were rolled up).

    RocksDB keeps pointers into `lower` and `upper`, not copies (rocksdict hands it the bytes' own buffers): they
    must outlive the iterator. Every function here holds them as its arguments while it reads; `walk` for a
    caller that reads one key at a time."""
    options = ReadOptions()
    options.set_iterate_lower_bound(lower)
    options.set_iterate_upper_bound(upper)
    return options


def walk(db: Rdict, lower: bytes, upper: bytes) -> Iterator[RdictIter]:
    """The iterator at each key of ``[lower, upper)`` in turn, in key order, holding the bounds while it walks: an
    iterator over ``bounded(prefix, prefix_end(prefix))`` outlived its upper bound, whose bytes were then reused
    (a walk stopped after 2 of 50 keys, or went on past its range)."""
    it = db.iter(bounded(lower, upper))
    it.seek(lower)
    while it.valid():
        yield it
        it.next()


def scan(db: Rdict, lower: bytes, upper: bytes) -> list[tuple[bytes, bytes]]:
    """Every key and value in ``[lower, upper)``, in key order (one seek, then `next`)."""
    return [(it.key(), it.value()) for it in walk(db, lower, upper)]


def last_before(db: Rdict, lower: bytes, upper: bytes) -> tuple[bytes, bytes] | None:
    """The last key and value in ``[lower, upper)``, if any (one seek)."""
    it = db.iter(bounded(lower, upper))
    it.seek_for_prev(upper)  # the bound is exclusive: a key equal to `upper` is never found
    if it.valid():
        return it.key(), it.value()
    return None


def scan_first(db: Rdict, lower: bytes, upper: bytes) -> tuple[bytes, bytes] | None:
    """The first key in ``[lower, upper)`` and its value, if any (one seek)."""
    it = db.iter(bounded(lower, upper))
    it.seek(lower)
    if it.valid():
        return it.key(), it.value()
    return None
