"""The routing bench: what a query costs with 1 and N analytics shards, whichever way analytics routes.

Starts a nats-server and one `tradetape analytics` process a shard (`--shards`, each with its
`TRADETAPE_SHARD_COUNT`/`INDEX` share of `--symbols` generated names; empty stores, so the
answer itself costs next to nothing and the figures are the routing's), waits until every
symbol answers `coverage`, then asks `coverage` of the symbols in turn: `--requests`
sequential requests for p50/p99 (each timed from the request to its reply), and
`--concurrency` in flight for `--seconds` for the throughput, and the CPU all the analytics
processes spent a sequential request (from /proc: robust on a busy machine, where the
latencies are not). It only sends NATS requests, so
the same script measures any version of analytics: run it with `PYTHONPATH` at another
checkout to compare (the README of bench/ has the command). Nothing here is part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.aio.client import Client

from tradetape.runtime.nats_server import EmbeddedNatsServer
from tradetape.runtime.processes import die_with_parent, tradetape_command


def symbols_of(count: int) -> list[str]:
    return [f"R{index:04d}USDT" for index in range(count)]


def start_shards(url: str, data_dir: Path, symbols: list[str], shards: int) -> list[subprocess.Popen[bytes]]:
    procs = []
    data_dir.mkdir(parents=True, exist_ok=True)
    for index in range(shards):
        env = {
            **os.environ,
            "NATS_URL": url,
            "TRADETAPE_DATA_DIR": str(data_dir),
            "TRADETAPE_SYMBOLS": ",".join(symbols),
            "TRADETAPE_SHARD": f"s{index}",
            "TRADETAPE_SHARD_COUNT": str(shards),
            "TRADETAPE_SHARD_INDEX": str(index),
            "TRADETAPE_LOG_LEVEL": "WARNING",
        }
        with (data_dir / f"analytics-s{index}.log").open("wb") as log:
            command = tradetape_command("analytics")
            procs.append(subprocess.Popen(command, env=env, stdout=log, stderr=log, preexec_fn=die_with_parent()))
    return procs


async def ask(nc: Client, symbol: str) -> float:
    started = time.perf_counter()
    msg = await nc.request(f"tape.query.coverage.{symbol}", b"{}", timeout=10)
    elapsed = time.perf_counter() - started
    if b'"trade_count"' not in msg.data:
        raise RuntimeError(f"{symbol}: {msg.data[:200]!r}")
    return elapsed


async def wait_served(nc: Client, symbols: list[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    for symbol in symbols:
        while True:
            try:
                await ask(nc, symbol)
                break
            except (nats.errors.Error, RuntimeError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU of `pids` so far (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def measure(
    url: str, symbols: list[str], requests: int, concurrency: int, seconds: float, pids: list[int]
) -> dict[str, float]:
    nc = await nats.connect(url)
    try:
        await wait_served(nc, symbols)
        for index in range(200):  # warm-up
            await ask(nc, symbols[index % len(symbols)])
        cpu = cpu_seconds(pids)
        times = sorted([await ask(nc, symbols[index % len(symbols)]) for index in range(requests)])
        cpu = cpu_seconds(pids) - cpu
        done = 0
        stop_at = time.monotonic() + seconds

        async def worker(offset: int) -> None:
            nonlocal done
            index = offset
            while time.monotonic() < stop_at:
                await ask(nc, symbols[index % len(symbols)])
                index += concurrency
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(worker(offset) for offset in range(concurrency)))
        return {
            "p50_ms": 1000 * statistics.median(times),
            "p99_ms": 1000 * times[int(0.99 * (len(times) - 1))],
            "per_s": done / (time.monotonic() - started),
            "cpu_us": 1e6 * cpu / requests,
        }
    finally:
        await nc.close()


async def run(args: argparse.Namespace) -> None:
    symbols = symbols_of(args.symbols)
    print(f"# {args.symbols} symbols, {args.requests} sequential coverage requests, {args.concurrency} in flight")
    print("shards  p50_ms  p99_ms  requests/s  analytics_cpu_us/request")
    for shards in args.shards:
        with tempfile.TemporaryDirectory(prefix="tradetape-routing-") as scratch:
            root = Path(scratch)
            async with EmbeddedNatsServer(root / "nats") as server:
                procs = start_shards(server.url, root / "data", symbols, shards)
                try:
                    pids = [proc.pid for proc in procs]
                    figures = await measure(server.url, symbols, args.requests, args.concurrency, args.seconds, pids)
                finally:
                    for proc in procs:
                        proc.terminate()
                    for proc in procs:
                        proc.wait(30)
        print(
            f"{shards:>6}  {figures['p50_ms']:6.2f}  {figures['p99_ms']:6.2f}  {figures['per_s']:10.0f}"
            f"  {figures['cpu_us']:24.0f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
