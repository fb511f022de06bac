"""The record of released trades: written before a release, read back whole, a torn row cut, bounded by retention."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradetape.services.exchange.generator import TradeGenerator
from tradetape.services.exchange.history import TradeHistory
from tradetape.services.exchange.released import ReleasedRows, ReleasedRowsError

pytestmark = pytest.mark.timeout(30)


def test_rows_come_back_as_released_voids_too(tmp_path: Path) -> None:
    record = ReleasedRows.of(tmp_path, "ETHUSDT")
    history = TradeHistory("ETHUSDT", record=record, void_every=7)
    history.append(TradeGenerator("ETHUSDT", 1).take(100, time_ms=1_765_000_000_000))
    assert any(t.void for t in history.trades())
    assert ReleasedRows.of(tmp_path, "ETHUSDT").load() == history.trades()
    assert TradeHistory("ETHUSDT", record=ReleasedRows.of(tmp_path, "ETHUSDT")).trades() == history.trades()
    assert (record.path.stat().st_mode & 0o777) == 0o600


def test_a_torn_last_row_is_cut_off_and_a_broken_one_refused(tmp_path: Path) -> None:
    record = ReleasedRows.of(tmp_path, "ETHUSDT")
    trades = TradeGenerator("ETHUSDT", 1).take(10, time_ms=1_765_000_000_000)
    record.append(trades)
    record.close()
    whole = record.path.read_bytes()
    record.path.write_bytes(whole + b"1000010,3000.1")
    assert record.load() == trades
    assert record.path.read_bytes() == whole
    lines = whole.splitlines(keepends=True)
    for broken in (b"x,1,2\n", lines[0], b"9" * 300 + b"\n"):
        record.path.write_bytes(whole + broken)
        with pytest.raises(ReleasedRowsError, match="delete the file"):
            record.load()


def test_nothing_is_released_unrecorded(tmp_path: Path) -> None:
    """A record that cannot be written (a full disk) holds the trades back: REST never has fewer than the stream."""
    with pytest.raises(ReleasedRowsError, match="not a regular file"):
        ReleasedRows(Path("/dev/full")).load()
    record = ReleasedRows.of(tmp_path, "ETHUSDT")
    history = TradeHistory("ETHUSDT", record=record)
    record.path = Path("/dev/full")
    with pytest.raises(OSError):
        history.append(TradeGenerator("ETHUSDT", 1).take(5))
    assert len(history) == 0


def test_the_record_follows_the_retention(tmp_path: Path) -> None:
    history = TradeHistory("ETHUSDT", 100, record=ReleasedRows.of(tmp_path, "ETHUSDT"))
    generator = TradeGenerator("ETHUSDT", 1)
    for second in range(30):
        history.append(generator.take(10, time_ms=1_765_000_000_000 + second * 1000))
    assert len(history) <= 100 and history.trimmed_through_ms is not None
    assert ReleasedRows.of(tmp_path, "ETHUSDT").load() == history.trades()
    assert not list(tmp_path.glob("*.tmp"))
