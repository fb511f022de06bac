"""Dump parsing, retiming and playback into a history."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from tradetape.services.exchange import BUNDLED_REPLAY
from tradetape.services.exchange.history import TradeHistory, now_ms
from tradetape.services.exchange.replay import (
    Replay,
    ReplayFormatError,
    parse_row,
    plan,
    read_dump,
    symbol_from_path,
)

pytestmark = pytest.mark.timeout(10)

FIRST_BUNDLED_ID = 3800397495
LAST_BUNDLED_ID = 3800402494


def write_dump(tmp_path: Path, lines: list[str], name: str = "ETHUSDT-aggTrades-x.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_parse_row_microseconds() -> None:
    row = parse_row(
        [
            "3800397495",
            "87648.21000000",
            "0.08185000",
            "5723703861",
            "5723703862",
            "1767225600039409",
            "True",
            "True",
        ]
    )
    assert row.time_us == 1767225600039409
    trade = row.trade
    assert (trade.agg_id, trade.first_id, trade.last_id) == (3800397495, 5723703861, 5723703862)
    assert trade.price == "87648.21000000"
    assert trade.qty == "0.08185000"
    assert trade.time_ms == 1767225600039
    assert trade.buyer_maker is True


def test_parse_row_milliseconds_and_lower_case_booleans() -> None:
    row = parse_row(["7", "100.5", "2", "10", "10", "1700000000123", "false", "true"])
    assert row.time_us == 1700000000123000
    assert row.trade.time_ms == 1700000000123
    assert row.trade.buyer_maker is False
    assert row.trade.price == "100.5"


@pytest.mark.parametrize(
    "line",
    [
        "1,2,3,4,5,6",
        "x,100,1,1,1,1700000000000,True,True",
        "1,100,1,1,1,1700000000000,maybe,True",
    ],
)
def test_parse_row_rejects_garbage(line: str) -> None:
    with pytest.raises(ReplayFormatError):
        parse_row(line.split(","))


def test_bundled_dump() -> None:
    rows = read_dump(BUNDLED_REPLAY)
    ids = [r.trade.agg_id for r in rows]
    assert ids == list(range(FIRST_BUNDLED_ID, LAST_BUNDLED_ID + 1))
    assert all(a.trade.last_id + 1 == b.trade.first_id for a, b in itertools.pairwise(rows))
    assert rows[0].trade.price == "87648.21000000"
    assert rows[-1].trade.qty == "0.01614000"


def test_header_line_is_skipped(tmp_path: Path) -> None:
    path = write_dump(
        tmp_path,
        [
            ("agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker,is_best_match"),
            "1,3000.10,0.5,1,2,1700000000000,True,True",
        ],
    )
    assert [r.trade.agg_id for r in read_dump(path)] == [1]


def test_symbol_from_path() -> None:
    assert symbol_from_path(BUNDLED_REPLAY) == "BTCUSDT"
    assert symbol_from_path(Path("/x/ethusdt-aggTrades-2025-02-01.csv")) == "ETHUSDT"
    assert symbol_from_path(Path("um.BTCUSDT-aggTrades-2026-01-01.csv")) == "um:BTCUSDT", "a token names the market"
    assert symbol_from_path(Path("CM.btcusd_perp-aggTrades-2026-01-01.csv")) == "cm:BTCUSD_PERP"
    for name in ("trades.csv", "xx.BTCUSDT-aggTrades-2026-01-01.csv", "BTC.USDT-aggTrades-2026-01-01.csv"):
        with pytest.raises(ValueError):
            symbol_from_path(Path(name))


def test_plan_fast_shifts_last_trade_to_start() -> None:
    rows = read_dump(BUNDLED_REPLAY)
    start = 2_000_000_000_000
    result = plan(rows, speed=None, original_times=False, start_ms=start)
    assert result.offsets is None
    assert result.trades[-1].time_ms == start
    shift = start - rows[-1].trade.time_ms
    assert [t.time_ms - shift for t in result.trades] == [r.trade.time_ms for r in rows]
    assert [t.price for t in result.trades] == [r.trade.price for r in rows]


def test_plan_speed_divides_spacing() -> None:
    rows = read_dump(BUNDLED_REPLAY)
    start = 2_000_000_000_000
    result = plan(rows, speed=10, original_times=False, start_ms=start)
    assert result.offsets is not None
    span_us = rows[-1].time_us - rows[0].time_us
    assert result.offsets[0] == 0
    assert result.offsets[-1] == pytest.approx(span_us / 10 / 1e6)
    assert result.trades[0].time_ms == start
    assert result.trades[-1].time_ms == start + span_us // 10 // 1000
    times = [t.time_ms for t in result.trades]
    assert times == sorted(times)


def test_plan_original_times_keeps_file_times() -> None:
    rows = read_dump(BUNDLED_REPLAY)
    for speed in (None, 5.0):
        result = plan(rows, speed=speed, original_times=True, start_ms=now_ms())
        assert [t.time_ms for t in result.trades] == [r.trade.time_ms for r in rows]


async def test_replay_waits_for_start_then_releases_everything() -> None:
    history = TradeHistory("BTCUSDT")
    replay = Replay(BUNDLED_REPLAY, history)
    await asyncio.sleep(0.05)
    assert len(history) == 0 and not replay.started
    before = now_ms()
    replay.start()
    replay.start()
    assert await asyncio.wait_for(replay.wait_done(), 5) == 5000
    trades = history.trades()
    assert [t.agg_id for t in trades] == list(range(FIRST_BUNDLED_ID, LAST_BUNDLED_ID + 1))
    assert before <= trades[-1].time_ms <= now_ms()
    await replay.stop()


async def test_replay_at_speed_releases_on_schedule(tmp_path: Path) -> None:
    path = write_dump(
        tmp_path,
        [
            "1,3000.10,0.5,1,1,1700000000000000,True,True",
            "2,3000.20,0.5,2,2,1700000000500000,False,True",
            "3,3000.30,0.5,3,3,1700000001000000,False,True",
        ],
    )
    history = TradeHistory("ETHUSDT")
    replay = Replay(path, history, speed=10)
    loop = asyncio.get_running_loop()
    began, start_ms = loop.time(), now_ms()
    replay.start()
    await history.wait_until(2)
    assert loop.time() - began >= 0.045
    assert await asyncio.wait_for(replay.wait_done(), 5) == 3
    assert loop.time() - began >= 0.095
    times = [t.time_ms for t in history.trades()]
    assert times[1] - times[0] == 50 and times[2] - times[0] == 100
    assert abs(times[0] - start_ms) < 50
    await replay.stop()


async def test_stop_before_the_end_releases_waiters(tmp_path: Path) -> None:
    path = write_dump(
        tmp_path,
        [
            "1,3000.10,0.5,1,1,1700000000000000,True,True",
            "2,3000.20,0.5,2,2,1700000100000000,False,True",
        ],
    )
    history = TradeHistory("ETHUSDT")
    replay = Replay(path, history, speed=1)
    replay.start()
    await history.wait_until(1)
    await replay.stop()
    await replay.stop()
    assert await asyncio.wait_for(replay.wait_done(), 1) == 1


def test_replay_refuses_out_of_order_dump(tmp_path: Path) -> None:
    path = write_dump(
        tmp_path,
        [
            "2,3000.10,0.5,1,1,1700000000000000,True,True",
            "1,3000.20,0.5,2,2,1700000000500000,False,True",
        ],
    )
    with pytest.raises(ReplayFormatError):
        Replay(path, TradeHistory("ETHUSDT"))
