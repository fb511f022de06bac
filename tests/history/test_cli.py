"""The history commands as a user runs them: exit codes, the summary line, errors naming file and line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REAL = Path(__file__).parent / "data" / "BTCUSDT-aggTrades-2026-01-01.head5000.csv"


def tradetape(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL" and not k.startswith("TRADETAPE_")}
    env |= {"TRADETAPE_DATA_DIR": str(data_dir), "TRADETAPE_SYMBOLS": "BTCUSDT"}
    return subprocess.run(
        [sys.executable, "-m", "tradetape.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_import_export_and_a_bad_file_from_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = tradetape("import", str(REAL), data_dir=data)
    assert first.returncode == 0, first.stderr
    assert "5000 imported, 0 duplicates skipped, 0 gaps" in first.stdout
    assert "older than the retention" in first.stderr  # 2026-01-01 is beyond the default 7 days
    out = tmp_path / "btc.csv"
    day = ("--start", "2026-01-01", "--end", "2026-01-02")
    export = tradetape("export", "BTCUSDT", *day, "-o", str(out), data_dir=data)
    assert export.returncode == 0, export.stderr
    label, header, first_row = out.read_text().splitlines()[:3]
    assert label.startswith("# tradetape export symbol=BTCUSDT market=spot start=2026-01-01T00:00:00.000Z ")
    assert first_row.startswith("3800397495,87648.21000000,0.08185000,")

    bad = tmp_path / "BTCUSDT-aggTrades-2026-01-02.csv"
    lines = REAL.read_text().splitlines()
    bad.write_text("\n".join([*lines[:41], "3800397536,87650.1,0.1,5723703902,5723703902,1767225600039409,Yes,True"]))
    refused = tradetape("import", str(bad), data_dir=data)
    assert refused.returncode == 1
    assert (
        "BTCUSDT-aggTrades-2026-01-02.csv: FAILED, nothing of it imported: line 42: buyer-maker is not a boolean"
        in refused.stdout
    )
