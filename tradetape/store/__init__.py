"""The store: the one place that knows a shard's RocksDB layout, and its only face.

Everything outside this package uses what is named here, never a submodule, rocksdict or a
key (`tests/store/test_closed.py` checks it):

- `ShardWriter`: the one writer of a shard directory (persist, or an import that holds the
  shard): windows in, roll-ups, retention, bulk imports; `ShardWriter.tape` reads through it.
  `SegmentJoin`: a closed hour's blocks, joined into one body off the writer's thread.
- `ShardReader`: the analytics' reader of a shard while persist writes it (trades,
  coverage, price levels over any range, within a memory budget).
- `ShardView`: a tool's secondary view of a shard directory for one command; its `tape()`
  is a `StoredTape` (trades, voids, coverage, completeness index, import checks, gap times).
- Shards: `find_shards`, `write_manifest`, `store_id` (the manifest beside the database).
- Decoding on more than one thread: `decode_helpers` (`DECODE_HELPER_THREADS` of them), whose heaps a worker
  faults in before it serves.
- Layout facts: `window_start` (the 1-second window of a trade time), `assemble_windows`
  (a batch of rows into those windows, what `ShardWriter.write` takes), and the segment
  encoding a bulk-import batch carries (`encode_segment`, `decode_segment`); the segment
  span of a database is `StoredTape.segment_ms`.
- Errors (drawn in `tradetape.errors`): `StoreError` and its leaves, `ImportConflictError`,
  `SegmentFormatError`, `ReadTooLargeError`.

What the store computes with, but does not own, lives in the domain:
`tradetape.domain.price_levels.PriceLevels`, `tradetape.domain.id_runs.IdRuns`.
"""

from tradetape.store.budget import ReadBudget, ReadTooLargeError
from tradetape.store.conflicts import ImportConflictError
from tradetape.store.decoding import DECODE_HELPER_THREADS, decode_helpers
from tradetape.store.keys import window_start
from tradetape.store.layout import StoreLayoutError
from tradetape.store.reader import ShardReader, ShardView, StoreClosedError
from tradetape.store.rocks import StoreError, StoreNotFoundError
from tradetape.store.sealed import StoreCorruptError
from tradetape.store.segment_join import SegmentJoin
from tradetape.store.segments import SegmentFormatError, decode_segment, encode_segment
from tradetape.store.shards import ShardLockedError, find_shards, store_id, write_manifest
from tradetape.store.tape import StoredTape
from tradetape.store.windows import WindowId, assemble_windows
from tradetape.store.writer import ImportCounts, ShardWriter, Written

__all__ = [
    "DECODE_HELPER_THREADS",
    "ImportConflictError",
    "ImportCounts",
    "ReadBudget",
    "ReadTooLargeError",
    "SegmentFormatError",
    "SegmentJoin",
    "ShardLockedError",
    "ShardReader",
    "ShardView",
    "ShardWriter",
    "StoreClosedError",
    "StoreCorruptError",
    "StoreError",
    "StoreLayoutError",
    "StoreNotFoundError",
    "StoredTape",
    "WindowId",
    "Written",
    "assemble_windows",
    "decode_helpers",
    "decode_segment",
    "encode_segment",
    "find_shards",
    "store_id",
    "window_start",
    "write_manifest",
]
