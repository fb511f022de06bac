"""The tail probe's schedule: who is due, when, at what pace, and the bound that follows."""

from __future__ import annotations

import pytest

from tradetape.binance.rest import AGG_TRADES_WEIGHT
from tradetape.services.ingest.tailprobe import (
    PROBE_WEIGHT_SHARE,
    TailSchedule,
    found_within_s,
    next_probe,
    probe_due_at,
    probe_interval_s,
)
from tradetape.settings import Settings


def test_the_bound_at_the_default_budget() -> None:
    settings = Settings()
    interval = probe_interval_s(settings.ingest_rest_weight_per_minute)
    assert interval == pytest.approx(AGG_TRADES_WEIGHT * 60 / (1200 * PROBE_WEIGHT_SHARE)) == pytest.approx(0.4)
    assert found_within_s(100, settings.ingest_tail_probe_after_s, interval) <= 120, "2 minutes for 100 symbols"
    assert found_within_s(100, 60, interval) == pytest.approx(100)
    assert found_within_s(2000, 60, interval) == pytest.approx(860), "ALL: ~2,000 symbols"
    assert found_within_s(2000, 60, probe_interval_s(4800)) == pytest.approx(260), "4x the budget"


def test_probes_spend_their_share_of_the_budget() -> None:
    for budget in (10, 600, 1200, 6000):
        per_minute = 60 / probe_interval_s(budget) * AGG_TRADES_WEIGHT
        assert per_minute == pytest.approx(budget * PROBE_WEIGHT_SHARE)


def test_the_symbol_quiet_longest_is_due_once_quiet_long_enough() -> None:
    quiet = {"AUSDT": 10.0, "BUSDT": 5.0, "CUSDT": 7.0}
    pace = {"after_s": 60.0, "last_probe": float("-inf"), "interval_s": 0.4}
    assert next_probe(quiet, 64.9, **pace) is None
    assert next_probe(quiet, 65.0, **pace) == "BUSDT"
    assert next_probe({}, 1000.0, **pace) is None
    assert probe_due_at(quiet, **pace) == 65.0
    assert probe_due_at({}, **pace) == float("inf")


def test_probes_are_paced() -> None:
    quiet = {"AUSDT": 0.0, "BUSDT": 0.0}
    assert next_probe(quiet, 100.0, after_s=60.0, last_probe=99.75, interval_s=0.5) is None
    assert next_probe(quiet, 100.25, after_s=60.0, last_probe=99.75, interval_s=0.5) == "AUSDT"
    assert probe_due_at(quiet, after_s=60.0, last_probe=99.75, interval_s=0.5) == 100.25


def test_a_schedule_takes_every_quiet_symbol_in_turn_within_the_bound() -> None:
    """100 symbols gone quiet at once: each is probed once, one per interval, the last within the bound."""
    schedule = TailSchedule(after_s=60.0, interval_s=0.5)
    symbols = [f"S{i}USDT" for i in range(100)]
    for index, symbol in enumerate(symbols):
        schedule.observe(symbol, 1000 + index, 0.0)
    probed: dict[str, float] = {}
    now = 0.0
    while len(probed) < len(symbols) and now < 1000:
        symbol = schedule.next(now)
        if symbol is not None:
            assert symbol not in probed, "no symbol twice before every other"
            probed[symbol] = now
            schedule.probed(symbol, 1000, now)
        now += 0.25
    times = sorted(probed.values())
    assert len(times) == 100 and times[0] == 60.0
    assert all(b - a >= 0.5 for a, b in zip(times, times[1:], strict=False)), "spread, not all at once"
    assert times[-1] <= schedule.found_within_s(100) == 110.0
    assert schedule.quiet(times[-1]) == 0 and schedule.quiet(times[-1] + 60.0) == 100


def test_a_new_id_restarts_the_quiet_time_and_an_unchanged_one_does_not() -> None:
    schedule = TailSchedule(after_s=60.0, interval_s=0.4)
    schedule.observe("AUSDT", 5, 0.0)
    schedule.observe("AUSDT", 5, 30.0)
    assert schedule.next(60.0) == "AUSDT"
    schedule.observe("AUSDT", 6, 60.0)
    assert schedule.next(60.0) is None and schedule.next(119.9) is None
    assert schedule.next(120.0) == "AUSDT"
    schedule.probed("AUSDT", 6, 120.0)
    assert schedule.next(150.0) is None and schedule.due_at() == 180.0
