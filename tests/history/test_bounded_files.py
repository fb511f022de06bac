"""Files as hostile input: bounds checked while a file streams, no row lost to its top, one-line refusals."""

from __future__ import annotations

import contextlib
import os
import re
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tradetape.history.dumps import DumpError, read_dump

REAL = Path(__file__).parent / "data" / "BTCUSDT-aggTrades-2026-01-01.head5000.csv"
REAL_LINES = REAL.read_text().splitlines()
BINANCE_HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker,is_best_match"
MIB = 1 << 20


def nul_bomb(path: Path, size: int) -> None:
    """A zip of ~1 KB per MiB whose one CSV inflates to `size` NUL bytes: no line end anywhere."""
    zeros = bytes(MIB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert piece == compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)  # each MiB the same bytes
    end = compressor.flush()
    count = size // MIB
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    name = b"BTCUSDT-aggTrades-2026-01-01.csv"
    packed = len(piece) * count + len(end)
    header = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, packed, size, len(name), 0)
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, packed, size, len(name), 0, 0, 0, 0, 0, 0
    )
    with path.open("wb") as out:
        out.write(header + name)
        for _ in range(count):
            out.write(piece)
        out.write(end)
        directory_at = out.tell()
        out.write(central + name)
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central) + len(name), directory_at, 0))


_REPORT_PEAK = """
import atexit, re, sys
from pathlib import Path

PEAK_FILE = Path(sys.argv[1])


def report() -> None:
    status = Path("/proc/self/status").read_text()
    PEAK_FILE.write_text(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))

atexit.register(report)
sys.argv = ["tradetape", *sys.argv[2:]]
from tradetape.cli.main import main
sys.exit(main())
"""


def run_cli(*args: str, data_dir: Path, kill_after_s: float = 60) -> tuple[int, str, float, int]:
    """`tradetape <args>`: exit code, stdout+stderr, seconds, peak RSS in bytes (of that process alone).

    The peak is the child's own VmHWM, read by itself as it exits (or, if it must be killed, the last
    one read while it ran): `ru_maxrss` of a child counts its parent's pages at the fork, and pytest's
    own memory after a long run would pass for the import's.
    """
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL" and not k.startswith("TRADETAPE_")}
    env |= {"TRADETAPE_DATA_DIR": str(data_dir), "TRADETAPE_SYMBOLS": "BTCUSDT"}
    log = data_dir.parent / "cli.log"
    peak_file = data_dir.parent / "cli.peak"
    started = time.monotonic()
    peak_kb = 0
    with log.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", _REPORT_PEAK, str(peak_file), *args], env=env, stdout=out, stderr=out
        )
        while (code := child.poll()) is None:
            with contextlib.suppress(OSError, AttributeError):
                status = Path(f"/proc/{child.pid}/status").read_text()
                peak_kb = max(peak_kb, int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)))  # type: ignore[union-attr]
            if time.monotonic() - started > kill_after_s:
                child.kill()
            time.sleep(0.02)
    elapsed = time.monotonic() - started
    with contextlib.suppress(OSError, ValueError):
        peak_kb = max(peak_kb, int(peak_file.read_text()))
    return code, log.read_text(), elapsed, peak_kb * 1024


@pytest.mark.slow
def test_the_2_gib_zip_bomb_is_one_line_refusal_in_seconds_and_little_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "BTCUSDT-aggTrades-2026-01-01.zip"
    nul_bomb(bomb, 2 * 1024 * MIB)
    assert bomb.stat().st_size < 3 * MIB
    code, output, elapsed, peak = run_cli("import", str(bomb), data_dir=tmp_path / "data", kill_after_s=30)
    size = bomb.stat().st_size
    print(f"\nzip bomb ({size} bytes -> 2 GiB): exit {code} in {elapsed:.2f} s, peak RSS {peak / MIB:.0f} MiB")
    print(output)
    assert code == 1, output
    assert [line for line in output.splitlines() if "FAILED" in line] == [
        f"{bomb.name}: FAILED, nothing of it imported: line 1: the line is longer than 4096 bytes "
        "(TRADETAPE_IMPORT_MAX_LINE_BYTES)"
    ]
    assert "Traceback" not in output
    assert elapsed < 10 and peak < 500 * MIB


def test_a_100_mb_csv_of_one_line_is_refused_at_its_first_chunk(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-aggTrades-2026-01-01.csv"
    path.write_bytes(b"3800397495," * (100 * MIB // 11))
    started = time.monotonic()
    with pytest.raises(DumpError) as caught:
        read_dump(path)
    assert time.monotonic() - started < 3
    assert caught.value.line == 1 and "longer than 4096 bytes" in str(caught.value)


def test_a_long_line_mid_file_names_its_line_and_a_capped_setting_is_obeyed(tmp_path: Path) -> None:
    from tradetape.history.dumps import FileLimits

    lines = list(REAL_LINES[:500])
    lines[299] = lines[299] + "," + "9" * 5000
    path = tmp_path / "BTCUSDT-aggTrades-2026-01-01.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DumpError, match="longer than 4096 bytes") as caught:
        read_dump(path)
    assert caught.value.line == 300
    lines[299] = lines[299][:-5000] + "9" * 300
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DumpError, match="longer than 256 bytes") as caught:
        read_dump(path, limits=FileLimits(max_line_bytes=256))
    assert caught.value.line == 300
    with pytest.raises(DumpError, match="more than 100000 \\(TRADETAPE_IMPORT_MAX_MEMBER_BYTES\\)"):
        read_dump(REAL, limits=FileLimits(max_member_bytes=100_000))


def test_zip_members_are_capped_by_count_and_by_inflated_size(tmp_path: Path) -> None:
    from tradetape.history.dumps import FileLimits

    crowded = tmp_path / "BTCUSDT-aggTrades-2026-01-01.zip"
    with zipfile.ZipFile(crowded, "w") as archive:
        for n in range(20):
            archive.writestr(f"d{n}/", b"")
        archive.writestr("BTCUSDT-aggTrades-2026-01-01.csv", "\n".join(REAL_LINES) + "\n")
    with pytest.raises(DumpError, match="lists 21 entries, more than 16 \\(TRADETAPE_IMPORT_MAX_MEMBERS\\)"):
        read_dump(crowded)
    assert len(read_dump(crowded, limits=FileLimits(max_members=21)).trades) == 5000

    big = tmp_path / "BTCUSDT-aggTrades-2026-01-02.zip"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("BTCUSDT-aggTrades-2026-01-02.csv", "\n".join(REAL_LINES) + "\n")
    with pytest.raises(DumpError, match="inflates to 4\\d{5} bytes, more than 100000"):
        read_dump(big, limits=FileLimits(max_member_bytes=100_000))


def test_a_zip_whose_sizes_understate_its_csv_inflates_no_further_than_they_say(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-aggTrades-2026-01-01.zip"
    nul_bomb(path, 64 * MIB)
    body = bytearray(path.read_bytes())
    for at in (22, len(body) - 22 - 46 - 32 + 24):  # the local header's and the directory's inflated size
        struct.pack_into("<I", body, at, 1000)
    path.write_bytes(bytes(body))
    with pytest.raises(DumpError, match="truncated or corrupt"):
        read_dump(path)


def test_a_file_of_blank_lines_is_refused_not_inflated_to_the_end(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-aggTrades-2026-01-01.csv"
    path.write_text("\n".join(REAL_LINES[:10]) + "\n" * 5000 + "\n".join(REAL_LINES[10:20]) + "\n")
    with pytest.raises(DumpError, match="more than 1000 blank lines") as caught:
        read_dump(path)
    assert caught.value.line == 11


@pytest.mark.parametrize("header", [False, True])
def test_a_byte_order_mark_and_crlf_lose_no_row(tmp_path: Path, header: bool) -> None:
    lines = ([BINANCE_HEADER] if header else []) + REAL_LINES[:2000]
    path = tmp_path / "BTCUSDT-aggTrades-2026-01-01.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(line + "\r\n" for line in lines).encode())
    dump = read_dump(path)
    plain = read_dump(REAL)
    assert len(dump.trades) == 2000
    assert all(np.array_equal(a, b[:2000]) for a, b in zip(dump.trades.arrays(), plain.trades.arrays(), strict=True))
    assert dump.lines[0] == (2 if header else 1)


def test_a_first_line_that_is_neither_a_row_nor_a_known_header_is_refused_not_skipped(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-aggTrades-2026-01-01.csv"
    path.write_text("\n".join([" " + REAL_LINES[0].replace("3", "x", 1), *REAL_LINES[1:50]]) + "\n")
    with pytest.raises(DumpError) as caught:
        read_dump(path)
    assert caught.value.line == 1 and "header" in str(caught.value)


def test_wrong_csv_columns_are_one_line_naming_the_column(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-week.csv"
    path.write_text("agg_id,price,quantity,first_id,last_id,time,buyer_maker\n3800397495,1.0,1.0,1,1,x,true\n")
    with pytest.raises(DumpError) as caught:
        read_dump(path)
    assert str(caught.value) == "BTCUSDT-week.csv, line 1: the header's column 3 is 'quantity', expected 'qty'"


def export_frame() -> pl.DataFrame:
    dump = read_dump(REAL)
    from tradetape.history.export import trades_frame

    return trades_frame(dump.trades.take(slice(0, 100)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (pl.col("time").dt.epoch("ms"), "column time is int64, expected a timestamp"),
        (pl.col("price").cast(pl.Float64), "column price is double, expected an exact decimal"),
        (pl.col("buyer_maker").cast(pl.Int8), "column buyer_maker is int8, expected a boolean"),
        (pl.col("agg_id").cast(pl.String), "column agg_id is large_string, expected an integer"),
    ],
)
def test_wrong_parquet_column_types_are_one_line_naming_the_column(
    tmp_path: Path, change: pl.Expr, message: str
) -> None:
    path = tmp_path / "BTCUSDT-week.parquet"
    export_frame().with_columns(change).write_parquet(path)
    with pytest.raises(DumpError) as caught:
        read_dump(path)
    assert str(caught.value) == f"BTCUSDT-week.parquet: {message}"


@pytest.mark.slow
def test_several_files_each_reported_and_a_bad_one_does_not_stop_the_next(tmp_path: Path) -> None:
    bad = tmp_path / "BTCUSDT-week.parquet"
    export_frame().with_columns(pl.col("time").dt.epoch("ms")).write_parquet(bad)
    bom = tmp_path / "BTCUSDT-aggTrades-2026-01-01.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + REAL.read_bytes())
    code, output, _, _ = run_cli("import", str(bad), str(bom), data_dir=tmp_path / "data")
    assert code == 1, output
    assert "BTCUSDT-week.parquet: FAILED, nothing of it imported: column time is int64, expected a timestamp" in output
    assert "BTCUSDT-aggTrades-2026-01-01.csv: BTCUSDT 5000 trades, 5000 imported" in output
    assert "total: 5000 imported, 0 duplicates skipped, 0 gaps, 1 files failed" in output
    assert "Traceback" not in output


@pytest.mark.parametrize("where", ["agg_id", "quantity"])
def test_a_stray_quote_is_refused_with_its_line_not_a_file_cut_short(tmp_path: Path, where: str) -> None:
    """A quote opening a field nothing closes made polars swallow the rest of the file as that one field (with a mere
    warning): the file imported as its first rows, the rest dropped unseen. Neither Binance nor tradetape quotes."""
    rows = REAL_LINES[:100]
    fields = rows[60].split(",")
    fields[0 if where == "agg_id" else 2] = '"' + fields[0 if where == "agg_id" else 2]
    rows[60] = ",".join(fields)
    path = tmp_path / "BTCUSDT-aggTrades-2026-01-01.csv"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DumpError) as caught:
        read_dump(path)
    assert caught.value.line == 61, str(caught.value)


def test_a_byte_that_is_not_utf8_is_refused_naming_its_line(tmp_path: Path) -> None:
    """polars refuses the chunk whole; the error named the chunk's first line and an empty text."""
    rows = [line.encode() for line in REAL_LINES[:100]]
    rows[60] = rows[60].replace(b",", b"\xff,", 1)
    path = tmp_path / "BTCUSDT-aggTrades-2026-01-01.csv"
    path.write_bytes(b"\n".join(rows) + b"\n")
    with pytest.raises(DumpError, match="not UTF-8") as caught:
        read_dump(path)
    assert caught.value.line == 61
