"""`tradetape import`'s summary counts what the store holds after the import, not what each file held."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.history.conftest import Tradetape
from tests.history.test_cli import REAL


@pytest.mark.slow
def test_the_total_counts_the_stores_gap_between_two_files(tmp_path: Path, tradetape: Tradetape) -> None:
    """Two gap-free files 1,722 ids apart used to sum to `0 gaps`."""
    lines = REAL.read_text().splitlines()
    first, second = tmp_path / "BTCUSDT-aggTrades-part1.csv", tmp_path / "BTCUSDT-aggTrades-part2.csv"
    first.write_text("\n".join(lines[:1000]) + "\n")
    second.write_text("\n".join(lines[2722:]) + "\n")
    low, high = int(lines[1000].split(",")[0]), int(lines[2721].split(",")[0])

    done = tradetape("import", str(first), str(second), data_dir=tmp_path / "data")

    assert done.returncode == 0, done.stderr
    assert "part1.csv: BTCUSDT 1000 trades, 1000 imported, 0 duplicates skipped, 0 gaps" in done.stdout
    assert "part2.csv: BTCUSDT 2278 trades, 2278 imported, 0 duplicates skipped, 0 gaps" in done.stdout
    assert "total: 3278 imported, 0 duplicates skipped, 1 gaps, 0 files failed" in done.stdout
    assert "BTCUSDT: the store has 1 gaps from 2026-01-01 " in done.stdout
    assert f"[{low}..{high}] (1722 ids missing; `tradetape repair` closes them)" in done.stdout


@pytest.mark.slow
def test_a_missing_file_is_no_such_file_whatever_its_name(tmp_path: Path, tradetape: Tradetape) -> None:
    for name in ("nosuch.csv", "nosuch.zip", "BTCUSDT-aggTrades-2026-01-01.zip"):
        done = tradetape("import", str(tmp_path / name), data_dir=tmp_path / "data")
        assert done.returncode == 1 and f"{name}: FAILED, nothing of it imported: no such file" in done.stdout
        assert "cannot tell the symbol" not in done.stdout
