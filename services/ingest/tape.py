"""One symbol's tape as ingest sees it: what was handed to JetStream, what is confirmed, what is missing.

Agg ids are consecutive, so every id between the watermark and the newest id seen is in
exactly one state: confirmed by a stream ack, handed to the publisher (in flight), or
missing. Missing ids belong to a `Gap` record (when it was seen, how often REST was
asked); a gap closes only when every one of its ids is confirmed. `offer` decides for
each trade (live or REST) whether it is new; `confirm` records an ack. Both are O(1) in
the usual in-order case; everything else happens in `normalize`, once a second. Pure: no
I/O, times passed in.
"""

from __future__ import annotations

import enum
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from tradetape.bus.ledger import LedgerEntry, LedgerGap
from tradetape.services.ingest.ranges import RangeSet

logger = logging.getLogger(__name__)

GAP_RETRY_INITIAL_S = 0.5
CONFIRM_WAIT_S = 5.0
"""After every id of a gap was handed over, wait this long for the acks before asking again."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Verdict(enum.Enum):
    NEW = "new"
    """Not handed over before: publish it."""
    DUPLICATE = "duplicate"
    """Already handed over (or confirmed): drop it."""
    IMPLAUSIBLE = "implausible"
    """Too far ahead of the newest id to believe: dead-letter it."""


@dataclass(slots=True)
class Gap:
    """Ids `from_id..to_id` once seen missing; mutable bookkeeping for retries."""

    from_id: int
    to_id: int
    opened_ms: int
    attempts: int = 0
    last_error: str = ""
    next_attempt: float = 0.0
    """Monotonic time of the next REST attempt."""

    def backoff(self, maximum: float) -> float:
        delay: float = min(GAP_RETRY_INITIAL_S * 2.0 ** max(self.attempts - 1, 0), maximum)
        return delay * random.uniform(0.8, 1.2)


@dataclass(slots=True)
class SymbolCounters:
    published: int = 0
    """Trades the stream stored (first acks)."""
    stream_duplicates: int = 0
    """Publishes the stream dropped by `Nats-Msg-Id` (already stored)."""
    duplicates: int = 0
    """Trades dropped before publishing because they were handed over already."""
    backfilled: int = 0
    gaps_opened: int = 0
    gaps_closed: int = 0
    gaps_abandoned: int = 0
    buffer_dropped: int = 0
    deadletters: Counter[str] = field(default_factory=Counter)


class SymbolTape:
    def __init__(
        self, symbol: str, *, max_id_jump: int, gap_retry_max: float = 60.0, clock: Callable[[], int] | None = None
    ) -> None:
        self.symbol = symbol
        self._clock = clock or _now_ms
        self.max_id_jump = max_id_jump
        self.gap_retry_max = gap_retry_max
        self.watermark: int | None = None
        """Every id at or below is confirmed (or given up past retention); None before the first trade."""
        self.head = -1
        """The newest id seen (handed over or known missing)."""
        self.handed = RangeSet()
        self.confirmed = RangeSet()
        self.gaps: list[Gap] = []
        self.believe_up_to = -1
        """An id REST showed to exist: live ids up to it plus the jump limit are believed."""
        self.counters = SymbolCounters()

    # -- per trade -------------------------------------------------------------------

    def offer(self, agg_id: int, *, live: bool = True) -> Verdict:
        """Whether a trade is new; a new one is counted as handed over at once."""
        head = self.head
        if agg_id == head + 1 and self.watermark is not None:
            self.head = agg_id
            self.handed.add(agg_id)
            return Verdict.NEW
        if self.watermark is None:
            self.watermark = self.head = agg_id - 1
            return self.offer(agg_id, live=live)
        if agg_id > head:
            if live and agg_id - max(head, self.believe_up_to) > self.max_id_jump:
                return Verdict.IMPLAUSIBLE
            self._open_gap(head + 1, agg_id - 1)
            self.head = agg_id
            self.handed.add(agg_id)
            return Verdict.NEW
        if agg_id <= self.watermark or agg_id in self.handed:
            self.counters.duplicates += 1
            return Verdict.DUPLICATE
        self.handed.add_range(agg_id, agg_id)
        return Verdict.NEW

    def confirm(self, agg_id: int, duplicate: bool) -> None:
        self.confirmed.add(agg_id)
        if duplicate:
            self.counters.stream_duplicates += 1
        else:
            self.counters.published += 1

    def dropped(self, agg_id: int) -> None:
        """A handed-over trade was dropped unsent (buffer full): it is missing again."""
        self.handed.remove_range(agg_id, agg_id)
        self.counters.buffer_dropped += 1
        last = self.gaps[-1] if self.gaps else None
        if last is not None and last.to_id + 1 == agg_id:
            last.to_id = agg_id
        elif last is not None and last.from_id <= agg_id <= last.to_id:
            return
        else:
            self._open_gap(agg_id, agg_id)

    # -- gap bookkeeping -------------------------------------------------------------

    def _open_gap(self, from_id: int, to_id: int) -> None:
        if from_id > to_id:
            return
        self.counters.gaps_opened += 1
        gap = Gap(from_id, to_id, self._clock())
        gaps = self.gaps
        if not gaps or gaps[-1].to_id < from_id:
            gaps.append(gap)
        else:
            gaps.append(gap)
            gaps.sort(key=lambda g: g.from_id)
            self._merge_overlaps()
        logger.info(
            "gap opened",
            extra={"symbol": self.symbol, "from_id": from_id, "to_id": to_id, "missing": to_id - from_id + 1},
        )

    def _merge_overlaps(self) -> None:
        merged: list[Gap] = []
        for gap in self.gaps:
            if merged and gap.from_id <= merged[-1].to_id + 1:
                last = merged[-1]
                last.to_id = max(last.to_id, gap.to_id)
                last.opened_ms = min(last.opened_ms, gap.opened_ms)
                last.attempts = max(last.attempts, gap.attempts)
            else:
                merged.append(gap)
        self.gaps = merged

    def to_fetch(self, gap: Gap) -> tuple[int, int] | None:
        """The first run of ids in `gap` that nobody handed over yet, or None."""
        missing = self.handed.missing(gap.from_id, gap.to_id)
        return missing[0] if missing else None

    def begin_attempt(self, from_id: int, to_id: int) -> int:
        """Count a REST attempt at the gaps within `from_id..to_id` as it starts; their most attempts.

        Counted before the answer, so a gap whose attempt waits (a throttle, a slow exchange)
        does not read as one nobody tries.
        """
        attempts = 0
        for gap in self.gaps:
            if gap.to_id >= from_id and gap.from_id <= to_id:
                gap.attempts += 1
                attempts = max(attempts, gap.attempts)
        return attempts

    def note_attempt(self, from_id: int, to_id: int, *, complete: bool, error: str, now: float) -> None:
        """Record how a begun REST attempt at the gaps within `from_id..to_id` ended and schedule the next."""
        for gap in self.gaps:
            if gap.to_id < from_id or gap.from_id > to_id:
                continue
            gap.last_error = error
            gap.next_attempt = now + (CONFIRM_WAIT_S if complete else gap.backoff(self.gap_retry_max))

    def normalize(self, now_ms: int, retention_ms: int) -> list[Gap]:
        """Advance the watermark, trim gaps to their unconfirmed ids; returns the gaps closed."""
        if self.watermark is None:
            return []
        cutoff = now_ms - retention_ms
        gaps = self.gaps
        if any(gap.opened_ms < cutoff for gap in gaps):
            for gap in gaps:
                if gap.opened_ms < cutoff:
                    self._abandon(gap)
            gaps = [gap for gap in gaps if gap.opened_ms >= cutoff]
        confirmed = self.confirmed
        for lo, hi in confirmed.ranges:
            if lo > self.watermark + 1:
                break
            self.watermark = max(self.watermark, hi)
        confirmed.trim_below(self.watermark + 1)
        self.handed.trim_below(self.watermark + 1)
        closed: list[Gap] = []
        kept: list[Gap] = []
        for gap in gaps:
            pieces = confirmed.missing(max(gap.from_id, self.watermark + 1), gap.to_id)
            if not pieces:
                closed.append(gap)
            elif pieces == [(gap.from_id, gap.to_id)]:
                kept.append(gap)
            else:
                kept.extend(
                    Gap(lo, hi, gap.opened_ms, gap.attempts, gap.last_error, gap.next_attempt) for lo, hi in pieces
                )
        self.gaps = kept
        self.counters.gaps_closed += len(closed)
        return closed

    def _abandon(self, gap: Gap) -> None:
        """Past retention a gap can no longer be stored: give its ids up so the watermark moves on."""
        self.counters.gaps_abandoned += 1
        self.confirmed.add_range(gap.from_id, gap.to_id)
        self.handed.add_range(gap.from_id, gap.to_id)
        logger.error(
            "gap abandoned past retention",
            extra={"symbol": self.symbol, "from_id": gap.from_id, "to_id": gap.to_id, "attempts": gap.attempts},
        )

    # -- views -----------------------------------------------------------------------

    @property
    def last_confirmed(self) -> int | None:
        if self.watermark is None:
            return None
        top = self.confirmed.max
        return self.watermark if top is None else max(self.watermark, top)

    def open_gaps(self) -> list[LedgerGap]:
        """Gap records plus any unconfirmed hole below the newest confirmed id (a lost ack)."""
        if self.watermark is None:
            return []
        last = self.last_confirmed
        assert last is not None
        gaps = RangeSet((g.from_id, g.to_id) for g in self.gaps)
        for lo, hi in self.confirmed.missing(self.watermark + 1, last):
            gaps.add_range(lo, hi)
        records = self.gaps
        out: list[LedgerGap] = []
        index = 0
        for lo, hi in gaps:
            while index < len(records) and records[index].to_id < lo:
                index += 1
            record = records[index] if index < len(records) and records[index].from_id <= hi else None
            if record is None:
                out.append(LedgerGap(lo, hi, 0, 0, "unconfirmed"))
            else:
                out.append(LedgerGap(lo, hi, record.opened_ms, record.attempts, record.last_error))
        return out

    def entry(self, now_ms: int) -> LedgerEntry | None:
        if self.watermark is None:
            return None
        last = self.last_confirmed
        assert last is not None
        gaps = tuple(
            LedgerGap(g.from_id, g.to_id, g.opened_ms or now_ms, g.attempts, g.last_error) for g in self.open_gaps()
        )
        return LedgerEntry(self.symbol, self.watermark, last, now_ms, gaps)

    def restore(self, entry: LedgerEntry, now_ms: int) -> None:
        """Resume from a stored entry: everything not confirmed in it is missing now."""
        self.watermark = entry.watermark
        self.confirmed = RangeSet()
        if entry.last_id > entry.watermark:
            self.confirmed.add_range(entry.watermark + 1, entry.last_id)
        for gap in entry.gaps:
            self.confirmed.remove_range(gap.from_id, gap.to_id)
        self.handed = RangeSet(self.confirmed)
        self.head = max([entry.last_id, *(g.to_id for g in entry.gaps)])
        self.gaps = []
        stored = list(entry.gaps)
        for lo, hi in self.confirmed.missing(entry.watermark + 1, self.head):
            match = next((g for g in stored if g.from_id <= hi and g.to_id >= lo), None)
            self.gaps.append(
                Gap(
                    lo,
                    hi,
                    match.opened_ms if match else now_ms,
                    match.attempts if match else 0,
                    match.last_error if match else "",
                )
            )

    def resume_at(self, last_id: int) -> None:
        """Resume after the last stored trade (a tape older than the ledger)."""
        self.watermark = self.head = last_id
