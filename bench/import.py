"""History in and out: a day of a busy symbol imported from a Binance-format dump, then exported.

Generates one day of `--trades` real-like BTCUSDT trades (`tape_data.generate`: the bundled
real trades resampled) and writes them as a data.binance.vision dump (a zip of a header-less
CSV with µs timestamps); then, each in a fresh child process so its peak RSS is its own:

- import: `tradetape.history.dumps.read_dump` + `TapeImporter.import_dump` into an empty
  shard (the direct route, straight into hour segments): trades/s, peak RSS; then the
  store's bytes per trade at rest after compaction;
- export: the same day to Parquet (and `--csv` also to CSV): rows/s, peak RSS.

Targets (the history issue): import >= 500k trades/s, export >= 1M rows/s, RSS <= 300 MB.
Nothing here is part of the test run.

    python bench/import.py [--trades 2300000] [--csv]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tradetape.settings import Settings

SYMBOL = "BTCUSDT"


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM), read straight from /proc: importing `tape_data` here would load
    pyarrow (which the import command does not use) on top of the work's memory and raise the peak itself."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_import(dump: Path, data_dir: Path) -> dict[str, float]:
    from tradetape.history.dumps import read_dump
    from tradetape.history.load import TapeImporter

    settings = Settings(data_dir=data_dir, symbols=(SYMBOL,), retention_days=3650)
    started = time.perf_counter()
    parsed = read_dump(dump)
    read_s = time.perf_counter() - started

    async def run() -> int:
        async with TapeImporter(settings) as importer:
            return (await importer.import_dump(parsed)).added

    added = asyncio.run(run())
    seconds = time.perf_counter() - started
    return {"trades": added, "seconds": seconds, "read_s": read_s, "rss_mb": peak_rss_mb()}


def child_export(data_dir: Path, output: Path) -> dict[str, float]:
    from tradetape.history.export import export

    shard = Settings(data_dir=data_dir, symbols=(SYMBOL,)).shard_dir
    started = time.perf_counter()
    rows = export(shard, SYMBOL, 0, 4_102_444_800_000, output)
    return {"rows": rows, "seconds": time.perf_counter() - started, "rss_mb": peak_rss_mb()}


def in_child(*args: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=2_300_000, help="trades in the day (default: BTCUSDT's ~2.3M)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--csv", action="store_true", help="also export to CSV")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *paths = args.child
        result = child_import(Path(paths[0]), Path(paths[1])) if kind == "import" else child_export(*map(Path, paths))
        print(json.dumps(result))
        return
    # bench/tape_data.py imports pyarrow: only here, not in the children
    from tape_data import dir_bytes, generate, write_dump

    with tempfile.TemporaryDirectory(prefix="tradetape-bench-import-") as tmp:
        root = Path(tmp)
        trades = next(generate(1, args.trades, args.seed))
        dump = write_dump(trades, root)
        del trades
        print(f"dump: {dump.name}, {args.trades:,} trades, {dump.stat().st_size / 1e6:.1f} MB zipped")
        data = root / "data"
        imported = in_child("import", str(dump), str(data))
        rate = imported["trades"] / imported["seconds"]
        print(
            f"import: {int(imported['trades']):,} trades in {imported['seconds']:.2f} s = {rate:,.0f} trades/s "
            f"(read+validate {imported['read_s']:.2f} s), peak RSS {imported['rss_mb']:.0f} MB"
        )
        from tradetape.store.writer import ShardWriter

        store = ShardWriter(Settings(data_dir=data, symbols=(SYMBOL,)).shard_dir)
        store.compact()
        store.close()
        at_rest = dir_bytes(data / "shards")
        print(f"at rest: {at_rest / 1e6:.1f} MB = {at_rest / imported['trades']:.2f} bytes/trade (compacted)")
        for suffix in (".parquet", ".csv") if args.csv else (".parquet",):
            output = root / f"export{suffix}"
            exported = in_child("export", str(data), str(output))
            print(
                f"export {suffix}: {int(exported['rows']):,} rows in {exported['seconds']:.2f} s = "
                f"{exported['rows'] / exported['seconds']:,.0f} rows/s, {output.stat().st_size / 1e6:.1f} MB, "
                f"peak RSS {exported['rss_mb']:.0f} MB"
            )


if __name__ == "__main__":
    main()
