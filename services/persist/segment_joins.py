"""Closed hour segments joined into one body beside the store thread, not on it.

A live roll-up adds its 10 s to the hour segment as a block of its own; once the roll-up
mark passes the hour's end, the hour's blocks are joined into one body (it compresses and
decodes as one). Joining decodes and encodes the whole hour: at 2,000 trades/s ~2.2 s of
CPU once an hour (`bench/rollup.py`), and done on the store thread it held every live write
for that long. Here only the reading of the value and its put go to the store thread; the
join itself runs on a thread of its own, and is put only if the segment still holds what
was read (`ShardWriter.put_join`). A segment left in blocks (a stop before its join, a
store error) reads the same, only slower; nothing is lost either way.
"""

from __future__ import annotations

import asyncio
import logging

from tradetape.services.persist.store_thread import StoreThread
from tradetape.store import SegmentJoin, ShardWriter, StoreError

logger = logging.getLogger(__name__)


class SegmentJoins:
    """Joins the segments roll-ups left in blocks, one at a time, on a task of the event loop."""

    def __init__(self, store_thread: StoreThread) -> None:
        self._store_thread = store_thread
        self._pending: list[tuple[str, int]] = []
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.joined = 0
        self.errors = 0

    def start(self, store: ShardWriter, segments: list[tuple[str, int]]) -> None:
        """Join `segments` (symbol, start) after those in hand; from the event loop."""
        if self._closing:
            return
        self._pending += segments
        if self._pending and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._join_pending(store), name="persist-segment-joins")

    async def close(self) -> None:
        """Stop after the join in hand (a join's thread cannot be interrupted, and the store must outlive it)."""
        self._closing = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _join_pending(self, store: ShardWriter) -> None:
        while self._pending and not self._closing:
            symbol, start = self._pending.pop(0)
            try:
                found: SegmentJoin | None = await self._store_thread.run(store.segment_join, symbol, start)
                if found is not None:
                    joined = await asyncio.to_thread(found.joined)
                    self.joined += await self._store_thread.run(store.put_join, found, joined)
            except StoreError as exc:
                self.errors += 1
                logger.error("segment join failed, left in blocks", extra={"symbol": symbol, "error": str(exc)})
