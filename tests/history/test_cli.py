"""The history commands as a user runs them: exit codes, the summary line, errors naming file and line."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.history.conftest import Tradetape

REAL = Path(__file__).parent / "data" / "BTCUSDT-aggTrades-2026-01-01.head5000.csv"


def test_import_export_and_a_bad_file_from_the_command_line(tmp_path: Path, tradetape: Tradetape) -> None:
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


def test_names_that_are_no_symbol_are_refused_before_anything_is_written(tmp_path: Path, tradetape: Tradetape) -> None:
    """With `ALL` any name was imported: `BTC.USDT`, `>` or `../../x` landed in shard.json and on the web page."""
    data = tmp_path / "data"
    unnamed = tmp_path / "trades.csv"  # a name that does not tell the symbol: --symbol does
    shutil.copy(REAL, unnamed)
    first = tradetape("import", "--symbol", "btcusdt", str(unnamed), data_dir=data, symbols="ALL")
    assert first.returncode == 0, first.stderr
    manifest = data / "shards" / "main" / "shard.json"
    listed, files = manifest.read_bytes(), sorted(data.rglob("*"))
    assert b'"BTCUSDT"' in listed
    for name in ("BTC.USDT", "../../x", ">", "A" * 4100):
        for args in (
            ("import", "--symbol", name, str(unnamed)),
            ("export", name, "--last", "1h", "-o", str(tmp_path / "out.csv")),
            ("repair", name, "--last", "1h"),
            ("fetch-history", "BTCUSDT", name, "--from", "2026-01-01", "--to", "2026-01-01"),
        ):
            refused = tradetape(*args, data_dir=data, symbols="ALL")
            assert refused.returncode == 1, (args[0], name, refused.stdout, refused.stderr)
            assert len(refused.stderr.strip().splitlines()) == 1 and "is not a Binance symbol" in refused.stderr
            assert refused.stdout == "" and len(refused.stderr) < 300
            assert manifest.read_bytes() == listed and sorted(data.rglob("*")) == files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "trades.csv"]


def test_days_not_over_yet_are_refused(tmp_path: Path, tradetape: Tradetape) -> None:
    """A future day (or today) has no dump yet: refused with the last day there is, exit 1, nothing asked or written.

    It asked data.binance.vision for each, reported them `not published (404)` and exited 0.
    """
    data = tmp_path / "data"
    today = datetime.now(UTC).date()
    for first, last in ((today + timedelta(days=1), today + timedelta(days=2)), (today - timedelta(days=2), today)):
        refused = tradetape("fetch-history", "BTCUSDT", "--from", str(first), "--to", str(last), data_dir=data)
        assert refused.returncode == 1, refused.stdout
        assert f"--to {last} is not over yet" in refused.stderr
        assert f"the last day to fetch is {today - timedelta(days=1)}" in refused.stderr
        assert refused.stdout == "" and not data.exists()
