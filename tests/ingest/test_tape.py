"""SymbolTape: which trades are new, which ids are missing, when a gap closes, what the ledger says."""

from __future__ import annotations

from tradetape.bus.ledger import LedgerEntry, LedgerGap
from tradetape.services.ingest.tape import SymbolTape, Verdict

DAY_MS = 86_400_000


def tape(now: list[int] | None = None, jump: int = 1000) -> SymbolTape:
    clock = now or [1_000]
    return SymbolTape("BTCUSDT", max_id_jump=jump, clock=lambda: clock[0])


def feed(t: SymbolTape, *ids: int, live: bool = True) -> list[Verdict]:
    return [t.offer(i, live=live) for i in ids]


def test_first_trade_starts_the_tape_and_overlaps_are_dropped() -> None:
    t = tape()
    assert feed(t, 100, 101, 102) == [Verdict.NEW] * 3
    assert feed(t, 101, 102) == [Verdict.DUPLICATE] * 2
    assert (t.watermark, t.head, t.gaps) == (99, 102, [])
    for agg_id in (100, 101, 102):
        t.confirm(agg_id, duplicate=False)
    assert t.normalize(2_000, DAY_MS) == []
    assert t.watermark == 102
    assert t.counters.published == 3 and t.counters.duplicates == 2


def test_a_hole_is_a_gap_until_every_id_is_confirmed() -> None:
    t = tape()
    feed(t, 10, 11, 15)
    assert [(g.from_id, g.to_id) for g in t.gaps] == [(12, 14)]
    for agg_id in (10, 11, 15):
        t.confirm(agg_id, False)
    t.normalize(2_000, DAY_MS)
    assert t.watermark == 11
    entry = t.entry(2_000)
    assert entry == LedgerEntry("BTCUSDT", 11, 15, 2_000, (LedgerGap(12, 14, 1_000, 0, ""),))
    gap = t.gaps[0]
    assert t.to_fetch(gap) == (12, 14)
    assert feed(t, 12, 13, live=False) == [Verdict.NEW, Verdict.NEW]
    assert t.to_fetch(gap) == (14, 14)
    t.confirm(12, False)
    t.confirm(13, False)
    assert t.normalize(3_000, DAY_MS) == []
    assert [(g.from_id, g.to_id) for g in t.gaps] == [(14, 14)], "handed over is not confirmed"
    feed(t, 14, live=False)
    t.confirm(14, False)
    closed = t.normalize(4_000, DAY_MS)
    assert [(g.from_id, g.to_id) for g in closed] == [(14, 14)]
    assert (t.watermark, t.gaps, t.counters.gaps_closed) == (15, [], 1)


def test_an_implausible_jump_is_not_believed_until_rest_shows_it() -> None:
    t = tape(jump=1000)
    feed(t, 1, 2)
    assert feed(t, 10**15) == [Verdict.IMPLAUSIBLE]
    assert (t.head, t.gaps) == (2, [])
    assert feed(t, 3) == [Verdict.NEW]
    assert feed(t, 5000) == [Verdict.IMPLAUSIBLE]
    t.believe_up_to = 4990
    assert feed(t, 5000) == [Verdict.NEW]
    assert [(g.from_id, g.to_id) for g in t.gaps] == [(4, 4999)]
    assert feed(t, 10**7, live=False) == [Verdict.NEW], "REST is not second-guessed"


def test_dropped_trades_become_gaps_and_a_lost_ack_shows_in_the_ledger() -> None:
    t = tape()
    feed(t, *range(1, 11))
    for agg_id in (5, 6, 7):
        t.dropped(agg_id)
    assert [(g.from_id, g.to_id) for g in t.gaps] == [(5, 7)]
    assert t.to_fetch(t.gaps[0]) == (5, 7)
    for agg_id in (1, 2, 4, 8, 9, 10):  # 3 handed over, its ack not come
        t.confirm(agg_id, False)
    t.normalize(2_000, DAY_MS)
    entry = t.entry(2_000)
    assert entry is not None
    assert (entry.watermark, entry.last_id) == (2, 10)
    assert [(g.from_id, g.to_id, g.last_error) for g in entry.gaps] == [(3, 3, "unconfirmed"), (5, 7, "")]


def test_restore_makes_everything_unconfirmed_missing() -> None:
    gaps = (LedgerGap(105, 106, 4_000, 3, "HTTP 503"), LedgerGap(125, 130, 4_500, 0, ""))
    stored = LedgerEntry("BTCUSDT", 100, 120, 5_000, gaps)
    t = tape([6_000])
    t.restore(stored, 6_000)
    assert (t.watermark, t.head) == (100, 130)
    spans = [(g.from_id, g.to_id, g.opened_ms, g.attempts) for g in t.gaps]
    assert spans == [(105, 106, 4_000, 3), (121, 130, 4_500, 0)], "unconfirmed ids join the stored gap above"
    assert feed(t, 103) == [Verdict.DUPLICATE]
    assert feed(t, 122, live=False) == [Verdict.NEW]
    assert feed(t, 131) == [Verdict.NEW]


def test_gaps_past_retention_are_given_up() -> None:
    now = [1_000]
    t = tape(now)
    feed(t, 1, 5)
    t.confirm(1, False)
    t.confirm(5, False)
    now[0] = 1_000 + DAY_MS + 1
    assert t.normalize(now[0], DAY_MS) == []
    assert (t.watermark, t.gaps, t.counters.gaps_abandoned) == (5, [], 1)


def test_failed_attempts_back_off_capped() -> None:
    t = tape()
    t.gap_retry_max = 4.0
    feed(t, 1, 100)
    delays = []
    for _ in range(8):
        assert t.begin_attempt(2, 99) == len(delays) + 1
        t.note_attempt(2, 99, complete=False, error="HTTP 503", now=0.0)
        delays.append(t.gaps[0].next_attempt)
    assert delays[0] < 1.0 and max(delays) <= 4.0 * 1.2
    assert t.gaps[0].attempts == 8 and t.gaps[0].last_error == "HTTP 503"
