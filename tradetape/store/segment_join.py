"""A closed hour's segment joined into one body, computed off the thread that writes the store.

A live roll-up adds its 10 s to the hour segment as a block of its own and grows the hour's
minute levels, written fast (`FAST_ZSTD_LEVEL`: the value is written again 10 s later). Once
the roll-up mark passes the hour's end, nothing adds to the hour any more: its blocks are
joined into one body (a quiet symbol's 360 blocks of 10 s are 3.28 bytes a trade and 64 ms
to decode, 2.61 and 6 ms as one) and its minute levels compressed as kept at rest. Decoding
and encoding an hour of 2,000 trades/s takes ~2 s of CPU (`bench/rollup.py`), during which a
store thread doing it stores no live trade; so the writer only reads the values
(`ShardWriter.segment_join`) and puts the joined ones if the store still holds what it read
(`ShardWriter.put_join`), and the join itself (`SegmentJoin.joined`) runs on any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from tradetape.store.layer import recompressed_minute_levels
from tradetape.store.sealed import decoded
from tradetape.store.segments import decode_stored_segment, encode_stored_segment


@dataclass(frozen=True, slots=True)
class SegmentJoin:
    """A segment value in blocks and its minute levels (None where none is kept), as the writer read them."""

    key: bytes
    stored: bytes
    levels_key: bytes
    levels: bytes | None

    def joined(self) -> tuple[bytes, bytes | None]:
        """The segment's trades as one body and its minute levels compressed as at rest (pure: any thread);
        `StoreCorruptError` if a value fails its checks."""
        body = decoded(self.key, self.stored, lambda stored: encode_stored_segment(decode_stored_segment(stored)))
        levels = None if self.levels is None else decoded(self.levels_key, self.levels, recompressed_minute_levels)
        return body, levels
