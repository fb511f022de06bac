"""`tradetape up --simulate` as users run it: one per data directory, Ctrl-C stops it all cleanly.

The tests share one running `up` (the first), started in its own session as a terminal
would start it. Every process started here is killed at teardown whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.harness import coverage_in
from tradetape.ground.redaction import redact_url

pytestmark = pytest.mark.timeout(120)

REPLAYED = 5000
"""Trades in the bundled BTCUSDT replay file."""
READY_TIMEOUT_S = 60.0


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "NATS_URL" and not k.startswith("TRADETAPE_")}


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(ppid, start time, state) of a live process, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[19]), fields[0]


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _descendants(root: int) -> set[int]:
    parents: dict[int, list[int]] = {}
    for pid in _pids():
        stat = _stat(pid)
        if stat is not None:
            parents.setdefault(stat[0], []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _cwd_within(pid: int, directory: Path) -> bool:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")).is_relative_to(directory)
    except OSError:
        return False


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def _session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


class Up:
    """One `tradetape up --simulate` in `cwd`, in its own session like a terminal's job."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd.resolve()
        self.env = env
        self.log_path = self.cwd / "up.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tradetape.cli", "up", "--simulate"],
                cwd=self.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.seen: dict[int, int] = {}
        self.note_children()

    def note_children(self) -> None:
        """Remember `up` and its descendants (with start times, so a reused pid is not theirs)."""
        for pid in {self.proc.pid, *_descendants(self.proc.pid)}:
            stat = _stat(pid)
            if stat is not None:
                self.seen.setdefault(pid, stat[1])

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def query(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tradetape.cli", "query", *args],
            cwd=self.cwd,
            env=self.env,
            text=True,
            capture_output=True,
            timeout=30,
        )

    def coverage(self, symbol: str) -> dict[str, Any] | None:
        return coverage_in(self.cwd / "data", symbol)

    def wait_for_replay(self) -> dict[str, Any]:
        deadline = time.monotonic() + READY_TIMEOUT_S
        reply: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()[-3000:]
            self.note_children()
            reply = self.coverage("BTCUSDT")
            if reply is not None and reply["trade_count"] == REPLAYED:
                self.note_children()
                return reply
            time.sleep(0.3)
        raise AssertionError(f"no complete replay within {READY_TIMEOUT_S}s: {reply}\n{self.output()[-3000:]}")

    @property
    def nats_url(self) -> str:
        return (self.cwd / "data" / "nats.url").read_text().strip()

    def ctrl_c(self, timeout: float = 60) -> int:
        """SIGINT to the whole process group, exactly as a terminal sends it."""
        self.note_children()
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=timeout)

    def leftovers(self) -> list[int]:
        """Processes of this `up` still alive: seen descendants, its session, anything running in its dir."""
        left = set()
        for pid, started in self.seen.items():
            stat = _stat(pid)
            if stat is not None and stat[1] == started and stat[2] != "Z":
                left.add(pid)
        for pid in _pids():
            if pid != os.getpid() and (_session_of(pid) == self.proc.pid or _cwd_within(pid, self.cwd)):
                stat = _stat(pid)
                if stat is not None and stat[2] != "Z":
                    left.add(pid)
        return sorted(left)

    def kill_all(self) -> None:
        for pid in self.leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    up = Up(tmp_path_factory.mktemp("first"), clean_env())
    try:
        up.wait_for_replay()
        yield up
    finally:
        up.kill_all()


def _assert_complete(up: Up) -> None:
    btc = up.coverage("BTCUSDT")
    assert btc is not None and btc["trade_count"] == REPLAYED and btc["gaps"] == [], btc
    eth = up.coverage("ETHUSDT")
    assert eth is not None and eth["trade_count"] > 0 and eth["gaps"] == [], eth


@pytest.mark.slow
def test_a_second_up_on_the_same_data_dir_is_refused_at_once(first: Up) -> None:
    url_before = first.nats_url
    started = time.monotonic()
    second = subprocess.run(
        [sys.executable, "-m", "tradetape.cli", "up", "--simulate"],
        cwd=first.cwd,
        env=first.env,
        text=True,
        capture_output=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert time.monotonic() - started < 10
    assert second.returncode == 2, second.stderr
    message = second.stderr
    assert "already running" in message
    assert f"pid {first.proc.pid}" in message and redact_url(url_before) in message
    assert str(first.cwd / "data") in message and urlsplit(url_before).password not in message
    assert "Traceback" not in message
    assert "service started" not in message and "nats-server started" not in message
    assert first.proc.poll() is None
    assert first.nats_url == url_before
    _assert_complete(first)


@pytest.mark.slow
def test_a_second_up_elsewhere_runs_on_its_own_server(first: Up, tmp_path: Path) -> None:
    other = Up(tmp_path, clean_env())
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        checks = 0
        while True:
            assert other.proc.poll() is None, other.output()[-3000:]
            assert time.monotonic() < deadline, other.output()[-3000:]
            _assert_complete(first)
            checks += 1
            reply = other.coverage("BTCUSDT")
            if reply is not None and reply["trade_count"] == REPLAYED:
                break
            time.sleep(0.3)
        other.note_children()
        for _ in range(2):
            _assert_complete(first)
            checks += 1
        assert checks >= 3
        assert other.nats_url != first.nats_url
        other.proc.send_signal(signal.SIGTERM)
        assert other.proc.wait(timeout=60) == 0, other.output()[-3000:]
        assert "Traceback" not in other.output()
        assert other.leftovers() == []
    finally:
        other.kill_all()
    assert first.proc.poll() is None
    _assert_complete(first)
    assert (first.cwd / "data" / "nats.url").exists()


@pytest.mark.slow
def test_a_child_that_dies_is_restarted(first: Up) -> None:
    first.note_children()
    (analytics,) = [pid for pid in _descendants(first.proc.pid) if _cmdline(pid)[-1:] == ["analytics"]]
    os.kill(analytics, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while "service exited, restarting" not in first.output() or first.coverage("BTCUSDT") is None:
        assert time.monotonic() < deadline, first.output()[-3000:]
        time.sleep(0.3)
    first.note_children()
    _assert_complete(first)


@pytest.mark.slow
def test_ctrl_c_stops_everything_in_order_and_exits_0(first: Up) -> None:
    url = first.nats_url
    assert len(first.seen) >= 6, first.seen
    code = first.ctrl_c()
    text = first.output().replace('"', "")
    assert code == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    order = [
        text.index(line)
        for line in (
            "service stopped service=ingest exit_code=0",
            "service stopped service=persist exit_code=0",
            "service stopped service=analytics exit_code=0",
            "service stopped service=exchange exit_code=0",
            "nats-server stopped",
        )
    ]
    assert order == sorted(order), text[-3000:]
    assert first.leftovers() == []
    assert not (first.cwd / "data" / "nats.url").exists()
    after = first.query("coverage", "BTCUSDT", "--nats-url", url)
    assert after.returncode == 2 and "cannot reach NATS" in after.stderr


@pytest.mark.slow
def test_a_backfill_of_all_symbols_is_refused_before_anything_starts(tmp_path: Path) -> None:
    env = {**clean_env(), "TRADETAPE_SYMBOLS": "ALL", "TRADETAPE_BACKFILL_DAYS": "2"}
    env["TRADETAPE_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "tradetape.cli", "up", "--simulate"], env=env, text=True, capture_output=True, timeout=30
    )
    assert done.returncode == 1
    assert "TRADETAPE_BACKFILL_DAYS=2 needs a list of symbols" in done.stderr + done.stdout
    assert not (tmp_path / "nats").exists() and not (tmp_path / "nats.url").exists()
