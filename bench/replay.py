"""The replay bench: a stored day streamed back over NATS, beside raw ceilings measured in the same run.

Writes a day of `--per-day` real-like trades of one symbol (`bench/tape_data.py`, hour segments
as persist leaves them), starts a nats-server and one analytics process, then, `--runs` times:

- ceilings: the same trades read straight from the store (`ShardReader.trades`, one read of the
  day, then hour by hour as the worker reads them), and raw NATS: chunk-sized messages published
  and received between two plain clients (bytes/s as trades/s), and 250-byte messages (msgs/s);
- codecs: 10,000-trade chunks of the day encoded, sent over the same server and decoded to a
  DataFrame, as msgpack of raw columns (what replay sends) and as Arrow IPC;
- `TapeClient.replay` of the whole day: trades/s from the call to the last frame consumed
  (target >= 2M/s), the worker's CPU and peak RSS;
- `tradetape replay --to-subject`: the CLI publishing Binance combined-stream frames of the day to a
  subject, trades/s over its own run and as a subscriber received them (target >= 300k/s);
- `speed=1` over `--paced-seconds` of the day: each frame's lateness against its schedule (p50, p99,
  max; target p99 <= 5 ms).

`--profile` adds a cProfile of the client side of one `TapeClient.replay` of the day and of one
`replay --to-subject` run (an extra run, under the profiler: its rate is not reported). Nothing here is
part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import nats
import polars as pl
from tape_data import SYMBOL, rss_mb, write_store  # bench/tape_data.py

from tradetape.api.replay.chunks import decode_message, encode_chunk, trade_frame
from tradetape.bus.publish.bulk import CorePublish
from tradetape.client import TapeClient
from tradetape.domain.columns import TradeColumns
from tradetape.runtime.nats_server import EmbeddedNatsServer
from tradetape.runtime.processes import die_with_parent, tradetape_command
from tradetape.settings import Settings
from tradetape.store import ShardReader

HOUR_MS = 3_600_000
CHUNK = 10_000
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    rest = text[text.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


class RawCounter:
    """A subscriber that only counts: the NATS protocol read by hand, so counting costs the bench little CPU.

    A nats-py subscriber makes a `Msg` a message (measured here: under 100k msgs/s on a shared core), so it
    would measure itself, and take the cores the publisher needs, instead of the publisher's rate.
    """

    def __init__(self, url: str, subject: str) -> None:
        self.url, self.subject = urlsplit(url), subject
        self.count = 0
        self.first = self.last = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        reader, self._writer = await asyncio.open_connection(self.url.hostname, self.url.port)
        await reader.readline()  # INFO
        auth = {"user": unquote(self.url.username or ""), "pass": unquote(self.url.password or "")}
        connect = {"verbose": False, "pedantic": False, "protocol": 1, **(auth if self.url.username else {})}
        self._writer.write(f"CONNECT {json.dumps(connect)}\r\nSUB {self.subject} 1\r\nPING\r\n".encode())
        await self._writer.drain()
        self._task = asyncio.create_task(self._read(reader))
        while not self._ponged:
            await asyncio.sleep(0.01)

    _ponged = False

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buffer = b""
        while chunk := await reader.read(1 << 20):
            buffer += chunk
            at = 0
            while (line_end := buffer.find(b"\r\n", at)) >= 0:
                line = buffer[at:line_end]
                if line.startswith(b"MSG "):
                    size = int(line.rsplit(b" ", 1)[1])
                    if line_end + 2 + size + 2 > len(buffer):
                        break
                    at = line_end + 2 + size + 2
                    self.count += 1
                    self.last = time.perf_counter()
                    self.first = self.first or self.last
                    continue
                if line == b"PING":
                    self._writer.write(b"PONG\r\n")
                elif line == b"PONG":
                    self._ponged = True
                at = line_end + 2
            buffer = buffer[at:]

    async def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count < count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._writer.close()


def store_ceiling(shard: Path, start: int, end: int) -> tuple[float, float, int]:
    """Trades/s reading the day straight from the store: in one read, and hour by hour as the worker does."""
    reader = ShardReader(shard)
    try:
        began = time.perf_counter()
        whole = reader.trades(SYMBOL, (start, end))
        one_read = len(whole) / (time.perf_counter() - began)
        began, count = time.perf_counter(), 0
        for low in range(start, end, HOUR_MS):
            count += len(reader.trades(SYMBOL, (low, min(low + HOUR_MS, end))))
        by_hour = count / (time.perf_counter() - began)
        return one_read, by_hour, len(whole)
    finally:
        reader.close()


WINDOW = 8
"""Chunks in flight, as replay's default window: unbounded, the receiver falls behind and the server cuts it off
as a slow consumer (64 MB pending)."""


async def window(received: Any, sent: int) -> None:
    """Wait until at most `WINDOW` of the `sent` messages are still in flight."""
    while sent - received() >= WINDOW:
        await asyncio.sleep(0.0005)


async def raw_nats(url: str, chunks: list[bytes], small: int) -> tuple[float, float]:
    """(bytes/s of chunk-sized messages from one nats-py client to another, msgs/s of 250-byte ones published in
    batches as `replay --to-subject` does, to a counting subscriber)."""
    sender = await nats.connect(url, pending_size=64 * 2**20)
    receiver = await nats.connect(url)
    try:
        done, size = asyncio.Event(), [0, 0]

        async def count(msg: Any) -> None:
            size[0] += 1
            size[1] += len(msg.data)
            if size[0] == len(chunks):
                done.set()

        subscription = await receiver.subscribe("bench.raw", cb=count, pending_msgs_limit=-1, pending_bytes_limit=-1)
        await receiver.flush()
        began = time.perf_counter()
        for sent, payload in enumerate(chunks):
            await window(lambda: size[0], sent)
            await sender.publish("bench.raw", payload)
        await asyncio.wait_for(done.wait(), 120)
        chunk_rate = size[1] / (time.perf_counter() - began)
        await subscription.unsubscribe()
        counter = RawCounter(url, "bench.small")
        await counter.start()
        publisher = CorePublish(sender, "bench.small")
        batch = pl.Series(["x" * 250] * CHUNK)
        began = time.perf_counter()
        for _ in range(small // CHUNK):
            await publisher.publish(batch)
        await sender.flush()
        await counter.wait_for(small // CHUNK * CHUNK, 120)
        small_rate = counter.count / (counter.last - began)
        await counter.close()
        return chunk_rate, small_rate
    finally:
        await sender.close()
        await receiver.close()


async def codecs(url: str, pieces: list[TradeColumns]) -> dict[str, tuple[float, int]]:
    """Trades/s and bytes a chunk, encode → NATS → decode to a DataFrame, for msgpack columns and Arrow IPC."""
    sender = await nats.connect(url, pending_size=64 * 2**20)
    receiver = await nats.connect(url)

    def ipc(piece: TradeColumns) -> bytes:
        buffer = io.BytesIO()
        trade_frame(piece, [SYMBOL]).write_ipc(buffer)
        return buffer.getvalue()

    ways = {
        "msgpack columns": (lambda piece: encode_chunk(0, piece), lambda data: _msgpack_frame(data)),
        "Arrow IPC": (ipc, lambda data: pl.read_ipc(io.BytesIO(data))),
    }
    results: dict[str, tuple[float, int]] = {}
    try:
        for name, (encode, decode) in ways.items():
            results[name] = await _one_codec(sender, receiver, pieces, encode, decode)
        return results
    finally:
        await sender.close()
        await receiver.close()


async def _one_codec(
    sender: Any, receiver: Any, pieces: list[TradeColumns], encode: Any, decode: Any
) -> tuple[float, int]:
    done, frames, sizes = asyncio.Event(), [0], []

    async def take(msg: Any) -> None:
        frames[0] += len(decode(msg.data))
        sizes.append(len(msg.data))
        if len(sizes) == len(pieces):
            done.set()

    subscription = await receiver.subscribe("bench.codec", cb=take, pending_msgs_limit=-1, pending_bytes_limit=-1)
    await receiver.flush()
    began = time.perf_counter()
    for sent, piece in enumerate(pieces):
        await window(lambda: len(sizes), sent)
        await sender.publish("bench.codec", encode(piece))
    await asyncio.wait_for(done.wait(), 120)
    rate = frames[0] / (time.perf_counter() - began)
    await subscription.unsubscribe()
    return rate, int(statistics.mean(sizes))


def _msgpack_frame(data: bytes) -> pl.DataFrame:
    message = decode_message(data, CHUNK)
    return trade_frame(message.trades, [SYMBOL])  # type: ignore[union-attr]


async def replay_day(url: str, start: int, end: int, pid: int, profile: bool) -> tuple[float, int, float, str]:
    """(trades/s, trades, worker cores, profile text) of `TapeClient.replay` of the day."""
    async with await TapeClient.connect(url=url, timeout=60) as tape:
        profiler = cProfile.Profile() if profile else None
        cpu, count = cpu_seconds(pid), 0
        began = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        async for frame in tape.replay(SYMBOL, start=start, end=end):
            count += len(frame)
        elapsed = time.perf_counter() - began
        if profiler is not None:
            profiler.disable()
        text = ""
        if profiler is not None:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(18)
            text = out.getvalue()
        return count / elapsed, count, (cpu_seconds(pid) - cpu) / elapsed, text


async def to_subject(
    url: str, start: int, end: int, expected: int, env: dict[str, str], profile: Path | None = None
) -> tuple[float, float, str]:
    """(trades/s the CLI reports, trades/s a counting subscriber received them at, the CLI's summary line)."""
    counter = RawCounter(url, "bench.frames")
    await counter.start()
    try:
        args = ["replay", SYMBOL, "--start", str(start), "--end", str(end), "--to-subject", "bench.frames"]
        command = tradetape_command(*args)
        if profile is not None:  # the CLI under cProfile, its statistics written to `profile`
            command = [command[0], "-m", "cProfile", "-o", str(profile), *command[1:]]
        proc = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, err = await proc.communicate()
        summary = err.decode().strip().splitlines()[-1] if err else ""
        await counter.wait_for(expected, 120)
        if counter.count != expected:
            raise RuntimeError(f"the subscriber received {counter.count} of {expected} frames")
        reported = float(summary.split("(")[1].split()[0].replace(",", "")) if "(" in summary else 0.0
        return reported, expected / (counter.last - counter.first), summary
    finally:
        await counter.close()


async def paced(url: str, start: int, seconds: float) -> list[float]:
    """Each frame's lateness (s) against its schedule at speed=1 over `seconds` of trade time."""
    async with await TapeClient.connect(url=url, timeout=60) as tape:
        loop = asyncio.get_running_loop()
        lateness: list[float] = []
        origin: tuple[float, int] | None = None
        async for frame in tape.replay(SYMBOL, start=start, end=start + int(seconds * 1000), speed=1):
            now = loop.time()
            first_ms = int(frame["time"].dt.epoch("ms")[0])
            if origin is None:
                origin = (now, first_ms)
            lateness.append(now - (origin[0] + (first_ms - origin[1]) / 1000))
        return lateness


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


async def run(args: argparse.Namespace, root: Path) -> int:
    settings = Settings(data_dir=root / "data", symbols=(SYMBOL,), log_level="WARNING")
    log(f"writing a day of {args.per_day:,} trades through ShardWriter")
    total, _ = write_store(settings.shard_dir, root / "day.parquet", 1, args.per_day, HOUR_MS, args.seed)
    reader = ShardReader(settings.shard_dir)
    day = reader.trades(SYMBOL, None)
    reader.close()
    start, end = int(day.time[0]), int(day.time[-1]) + 1
    pieces = [day.take(slice(i, i + CHUNK)) for i in range(0, min(len(day), 200 * CHUNK), CHUNK)]
    chunk_bytes = [encode_chunk(0, piece) for piece in pieces]
    server = EmbeddedNatsServer(root / "nats")
    proc: subprocess.Popen[bytes] | None = None
    await server.start()
    try:
        env = {**os.environ, **settings.model_copy(update={"nats_url": server.url}).to_env()}
        with open(root / "analytics.log", "ab") as log_file:
            proc = subprocess.Popen(
                tradetape_command("analytics"), env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT, preexec_fn=die_with_parent(), start_new_session=True,
            )  # fmt: skip
        async with await TapeClient.connect(url=server.url, timeout=5) as tape:
            for _ in range(100):
                with contextlib.suppress(Exception):
                    await tape.query("coverage", SYMBOL)
                    break
                await asyncio.sleep(0.2)
        rows: list[tuple[str, ...]] = []
        for run_number in (1, 2)[: args.runs]:
            log(f"run {run_number}: ceilings")
            one_read, by_hour, stored = store_ceiling(settings.shard_dir, start, end)
            chunk_rate, small_rate = await raw_nats(server.url, chunk_bytes, 200_000)
            trade_bytes = len(chunk_bytes[0]) / CHUNK
            log(f"run {run_number}: codecs")
            codec = await codecs(server.url, pieces)
            log(f"run {run_number}: TapeClient.replay of the day")
            rate, count, cores, profile = await replay_day(server.url, start, end, proc.pid, args.profile)
            assert count == stored, (count, stored)
            log(f"run {run_number}: replay --to-subject")
            reported, received, summary = await to_subject(server.url, start, end, stored, env)
            cli_profile = ""
            if args.profile:
                await to_subject(server.url, start, end, stored, env, root / "cli.prof")
                out = io.StringIO()
                pstats.Stats(str(root / "cli.prof"), stream=out).sort_stats("tottime").print_stats(14)
                cli_profile = out.getvalue()
            log(f"run {run_number}: speed=1 for {args.paced_seconds:g} s")
            lateness = await paced(server.url, start + HOUR_MS, args.paced_seconds)
            rss = rss_mb(proc.pid, "VmHWM")
            rows += [
                (f"run {run_number}", "", ""),
                ("store read, one read of the day (ceiling)", f"{one_read / 1e6:.2f}M trades/s", f"{stored:,} trades"),
                ("store read, hour by hour (ceiling)", f"{by_hour / 1e6:.2f}M trades/s", ""),
                ("raw NATS, chunk-sized messages (ceiling)", f"{chunk_rate / trade_bytes / 1e6:.2f}M trades/s",
                 f"{chunk_rate / 2**20:.0f} MB/s of {len(chunk_bytes[0]):,}-byte messages"),
                ("raw NATS, 250-byte messages (ceiling)", f"{small_rate / 1e3:.0f}k msgs/s", ""),
                *((f"codec {name}, encode → NATS → DataFrame", f"{r / 1e6:.2f}M trades/s", f"{size:,} bytes a chunk")
                  for name, (r, size) in codec.items()),
                ("TapeClient.replay of the day over NATS", f"{rate / 1e6:.2f}M trades/s",
                 f"target >= 2M/s: {'met' if rate >= 2e6 else 'MISSED'}; worker {cores:.2f} cores, "
                 f"peak RSS {rss:.0f} MB"),
                ("replay --to-subject (the CLI's own rate)", f"{reported / 1e3:.0f}k trades/s",
                 f"target >= 300k/s: {'met' if reported >= 3e5 else 'MISSED'}"),
                ("replay --to-subject (as received)", f"{received / 1e3:.0f}k trades/s", summary),
                (f"speed=1, {len(lateness)} frames: lateness p50 / p99 / max",
                 f"{pct(lateness, 50) * 1e3:.2f} / {pct(lateness, 99) * 1e3:.2f} / {max(lateness) * 1e3:.2f} ms",
                 f"target p99 <= 5 ms: {'met' if pct(lateness, 99) <= 0.005 else 'MISSED'}"),
            ]  # fmt: skip
            if profile:
                rows.append(("profile: TapeClient.replay, client side (cumulative)", "", ""))
                rows.append((profile, "", ""))
            if cli_profile:
                rows.append(("profile: replay --to-subject, the CLI (own time)", "", ""))
                rows.append((cli_profile, "", ""))
        width = max(len(r[0]) for r in rows if r[1])
        for name, value, note in rows:
            print(f"{name:<{width}}  {value:>22}  {note}".rstrip() if value else name)
        return 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        await server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-day", type=int, default=2_000_000, help="trades in the stored day (default 2M)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=2, choices=(1, 2))
    parser.add_argument("--paced-seconds", type=float, default=20.0, help="trade time replayed at speed=1")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the client side of the replay")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tradetape-bench-replay-") as root:
        return asyncio.run(run(args, Path(root)))


if __name__ == "__main__":
    sys.exit(main())
