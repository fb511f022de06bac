"""Backfill on first start: `up` fetches the past days' dumps for its symbols through its own persist."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

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
