"""SIGTERM to a service command at a random moment: it must exit cleanly within a deadline.

CI once saw `tradetape analytics` hang a minute on a SIGTERM ~0.3 s after it started serving (a cancel nats-py's
`wait_for` dropped, tradetape/ground/tasks.py). Each try here starts one command as a child against a fresh
nats-server, the rest of the system around it in this process (the simulator trading, the other services), and
stops it while it starts, just after it serves, or under load (queries, or a WebSocket reader for the simulator).
tests/runtime/test_stop_fuzz.py runs a few tries; `python -m tests.stop_fuzz --tries 30 [COMMAND ...]` runs many and
prints, for each hang, every asyncio task's stack in the child (tests/task_dump.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import nats
import orjson
import websockets
from nats.aio.client import Client
from nats.errors import Error as NatsError

from tests.harness import run_services
from tests.processes import service_env
from tradetape.binance.streams import combined_stream_url
from tradetape.bus.subjects import micro_subject, query_subject
from tradetape.ground.tasks import raise_if_cancelled
from tradetape.services.exchange import Exchange, ExchangeConfig
from tradetape.settings import Settings
from tradetape.testing import nats_server, simulator_settings

COMMANDS = ("ingest", "persist", "analytics", "exchange", "up")
MOMENTS = ("serving", "starting", "loaded")
"""In this order, so that `serving` measures how long `starting` may last."""
SERVICES = ("ingest", "persist", "analytics")
SYMBOL = "BTCUSDT"
RATE = 200.0
"""Trades a second the simulator generates."""
STOP_DEADLINE_S = {"up": 60.0}
"""`up` stops its children one after the other (each SIGKILLed after 20 s, which turns its exit code to 1)."""
DEFAULT_STOP_DEADLINE_S = 15.0
SERVE_TIMEOUT_S = 90.0
FIRST_SERVE_S = 3.0
"""How long a command is taken to need until it serves before a try measured it: the window of `starting`."""
REPO = Path(__file__).resolve().parent.parent
CHILD = "import sys, tests.task_dump; from tradetape.cli.main import main; sys.exit(main(sys.argv[1:]))"


@dataclass(frozen=True)
class Outcome:
    """One try: the command, when it was stopped, how it ended (`code` None: still running at the deadline)."""

    command: str
    moment: str
    signalled_s: float
    """When the SIGTERM went, in seconds after the start."""
    code: int | None
    stop_s: float
    log: str

    @property
    def clean(self) -> bool:
        """Exit 0, or ended by the signal itself while starting, before it set its handlers (nothing in flight)."""
        return self.code == 0 or (self.code == -signal.SIGTERM and self.moment == "starting")

    def line(self) -> str:
        return (
            f"{self.command:9} {self.moment:8} at {self.signalled_s:6.3f}s -> "
            f"{'HUNG' if self.code is None else f'exit {self.code}'} after {self.stop_s:.1f}s"
        )


async def stop_once(
    command: str, moment: str, rng: random.Random, workdir: Path, serve_s: dict[str, float] | None = None
) -> Outcome:
    """Start `command`, SIGTERM it at `moment` (a random delay in that moment's window), and see how it ends.

    `starting` is anywhere until the command served in an earlier try (`serve_s`, updated here): from before its
    signal handlers are set up to its last step before serving.
    """
    serve_s = {} if serve_s is None else serve_s
    async with nats_server(workdir / "nats") as url, contextlib.AsyncExitStack() as stack:
        settings, argv = await stack.enter_async_context(_surroundings(command, url, workdir))
        log_path = workdir / "child.log"
        with log_path.open("wb") as log:
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD, *argv],
                cwd=REPO,
                env=service_env(settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        spawned = time.monotonic()
        stack.callback(_kill, child)
        nc = await nats.connect(url)
        stack.push_async_callback(nc.close)
        if moment == "starting":
            delay = max(0.0, rng.uniform(0.0, serve_s.get(command, FIRST_SERVE_S)) - (time.monotonic() - spawned))
        else:
            await _until_serving(command, nc, workdir, child)
            serve_s[command] = time.monotonic() - spawned
            if moment == "loaded":
                task = asyncio.create_task(_load(command, nc, workdir))
                stack.push_async_callback(_cancelled, task)
            delay = rng.uniform(0.5, 2.0) if moment == "loaded" else rng.uniform(0.0, 0.3)
        await asyncio.sleep(delay)
        child.send_signal(signal.SIGTERM)
        started = time.monotonic()
        signalled_s = started - spawned
        code = await asyncio.to_thread(_wait, child, STOP_DEADLINE_S.get(command, DEFAULT_STOP_DEADLINE_S))
        stop_s = time.monotonic() - started
        if code is None:
            child.send_signal(signal.SIGUSR1)
            await asyncio.sleep(2.0)
        _kill(child)
        return Outcome(command, moment, signalled_s, code, stop_s, log_path.read_text(errors="replace")[-20_000:])


@contextlib.asynccontextmanager
async def _surroundings(command: str, url: str, workdir: Path) -> AsyncIterator[tuple[Settings, list[str]]]:
    """The child's settings and arguments, with what it works with running here until the end of the try."""
    data_dir = workdir / "data"
    if command in SERVICES:
        async with Exchange(ExchangeConfig(symbols=(SYMBOL,), rate=RATE)) as exchange:
            settings = simulator_settings(exchange, url, data_dir, SYMBOL)
            async with run_services(settings, *(other for other in SERVICES if other != command)):
                yield settings, [command]
        return
    settings = Settings(nats_url=url, data_dir=data_dir, symbols=(SYMBOL,))
    if command == "exchange":
        yield settings, ["exchange", "--port", "0", "--ready-file", str(workdir / "ready.json")]
    else:
        yield settings, ["up", "--simulate"]


async def _until_serving(command: str, nc: Client, workdir: Path, child: subprocess.Popen[bytes]) -> None:
    """Until the child answers: its micro PING (`up`: its three services'), the simulator's ready file."""
    names = [command] if command in SERVICES else list(SERVICES) if command == "up" else []
    deadline = time.monotonic() + SERVE_TIMEOUT_S
    while names or (command == "exchange" and _ready_urls(workdir) is None):
        if child.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{command} not serving (exit {child.returncode})")
        if names:
            with contextlib.suppress(NatsError, TimeoutError):
                await nc.request(micro_subject("PING", f"tradetape-{names[0]}"), b"", timeout=1)
                names.pop(0)
                continue
        await asyncio.sleep(0.02)


def _ready_urls(workdir: Path) -> dict[str, str] | None:
    try:
        urls: dict[str, str] = orjson.loads((workdir / "ready.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return urls


async def _load(command: str, nc: Client, workdir: Path) -> None:
    """Queries as fast as they are answered; for the simulator, a client reading its trades."""
    if command == "exchange":
        urls = _ready_urls(workdir)
        assert urls is not None
        with contextlib.suppress(OSError, websockets.WebSocketException):
            async with websockets.connect(combined_stream_url(urls["binance_ws_url"], (SYMBOL,))) as ws:
                async for _ in ws:
                    pass
        return
    subjects = [query_subject(method, SYMBOL) for method in ("coverage", "trades", "volume_profile")]
    while True:
        raise_if_cancelled()  # nats-py's request drops a cancel that lands with its reply
        for subject in subjects:
            with contextlib.suppress(NatsError, TimeoutError):
                await nc.request(subject, b"{}", timeout=2)


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _wait(child: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return child.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def _kill(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.kill()
        child.wait()


async def fuzz(
    commands: tuple[str, ...], tries: int, seed: int, report: Callable[[Outcome], Awaitable[None] | None]
) -> list[Outcome]:
    """`tries` tries a command, cycling through the moments, each in its own temporary directory."""
    rng = random.Random(seed)
    serve_s: dict[str, float] = {}
    outcomes = []
    for command in commands:
        for attempt in range(tries):
            with tempfile.TemporaryDirectory(prefix="stop-fuzz-") as workdir:
                outcome = await stop_once(command, MOMENTS[attempt % len(MOMENTS)], rng, Path(workdir), serve_s)
            outcomes.append(outcome)
            reported = report(outcome)
            if reported is not None:
                await reported
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("commands", nargs="*", default=list(COMMANDS))
    parser.add_argument("--tries", type=int, default=30)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()

    def report(outcome: Outcome) -> None:
        print(outcome.line(), flush=True)
        if not outcome.clean:
            print(outcome.log, flush=True)

    print(f"seed {args.seed}", flush=True)
    outcomes = asyncio.run(fuzz(tuple(args.commands or COMMANDS), args.tries, args.seed, report))
    for command in dict.fromkeys(outcome.command for outcome in outcomes):
        mine = [outcome for outcome in outcomes if outcome.command == command]
        bad = [outcome for outcome in mine if not outcome.clean]
        slowest = max(outcome.stop_s for outcome in mine)
        print(f"{command}: {len(mine)} tries, {len(bad)} unclean, slowest stop {slowest:.1f}s", flush=True)
    return 1 if any(not outcome.clean for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
