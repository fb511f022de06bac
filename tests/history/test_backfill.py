"""Backfill on first start: `up` fetches the past days' dumps for its symbols through its own persist."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.cli_in_process import Cli
from tests.history.test_fetch import two_days

pytestmark = pytest.mark.timeout(120)


@pytest.mark.slow
def test_up_backfills_the_last_days_through_its_persist(tmp_path: Path, processes: Any) -> None:
    source = two_days(tmp_path)
    days = (datetime.now(UTC).date() - date(2026, 1, 1)).days  # back to the replayed file's first day
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL" and not k.startswith("TRADETAPE_")}
    env |= {
        "TRADETAPE_DATA_DIR": str(tmp_path / "data"),
        "TRADETAPE_SYMBOLS": "BTCUSDT",
        "TRADETAPE_BACKFILL_DAYS": str(days),
        "TRADETAPE_RETENTION_DAYS": "3650",
    }
    # The simulator replays the file with its own times: its dumps of January hold it (and so does the live tape).
    up = processes.start(["up", "--simulate", "--replay", str(source), "--original-times"], env, cwd=tmp_path)
    manifest = tmp_path / "data" / "history" / "imported.json"
    deadline = time.monotonic() + 90
    while not manifest.exists():
        assert up.poll() is None, processes.log_of(0)
        assert time.monotonic() < deadline, processes.log_of(0)
        time.sleep(0.2)
    imported = json.loads(manifest.read_text())["BTCUSDT"]
    assert list(imported) == ["BTCUSDT-aggTrades-2026-01.zip"]
    assert imported["BTCUSDT-aggTrades-2026-01.zip"]["trades"] == 5000
    log = processes.log_of(0)
    assert "import batch" in log  # persist wrote it: the backfill went through the running shard


@pytest.mark.slow
def test_the_offline_demo_tapes_and_backfills_every_market(tmp_path: Path, processes: Any, cli: Cli) -> None:
    """`up --simulate` with no symbols set: spot, USD-M and COIN-M instruments live, and their past day backfilled.
    Each instrument's coverage is asked with `tradetape query` in this process (tests/cli_in_process.py).

    The simulator listed spot names only and `fetch-history` had no futures layout, so the futures
    instruments had no stream, no REST and no dumps offline.
    """
    tradetape_env = {"TRADETAPE_DATA_DIR": str(tmp_path / "data"), "TRADETAPE_BACKFILL_DAYS": "1"}
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL" and not k.startswith("TRADETAPE_")}
    up = processes.start(["up", "--simulate", "--rate", "5"], env | tradetape_env, cwd=tmp_path)
    manifest = tmp_path / "data" / "history" / "imported.json"
    day = datetime.now(UTC).date() - timedelta(days=1)
    wanted = {"BTCUSDT": "BTCUSDT", "ETHUSDT": "ETHUSDT", "um:BTCUSDT": "BTCUSDT", "cm:BTCUSD_PERP": "BTCUSD_PERP"}
    imported: dict[str, Any] = {}
    deadline = time.monotonic() + 100
    while set(imported) != set(wanted):
        assert up.poll() is None, processes.log_of(0)
        assert time.monotonic() < deadline, (imported, processes.log_of(0)[-3000:])
        time.sleep(0.5)
        imported = json.loads(manifest.read_text()) if manifest.exists() else {}
    for name, symbol in wanted.items():
        files = imported[name]
        assert list(files) == [f"{symbol}-aggTrades-{day}.zip"], (name, files)
        day_trades = files[f"{symbol}-aggTrades-{day}.zip"]["added"]
        assert day_trades > 8000, (name, files)  # 0.1 trades/s invented for each finished day
        deadline = time.monotonic() + 60
        while True:
            code, out, err = cli(tmp_path, "query", "coverage", name, "--json", **tradetape_env)
            reply = json.loads(out) if code == 0 else {}
            if reply.get("trade_count", 0) > day_trades:  # yesterday's dump and today's live trades
                break
            assert time.monotonic() < deadline, (name, out, err, processes.log_of(0)[-3000:])
            time.sleep(0.5)
