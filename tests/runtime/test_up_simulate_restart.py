"""The offline demo across restarts, as a newcomer meets it: `up --simulate`, history commands from a
second terminal, Ctrl-C or kill -9, `up --simulate` again in the same directory, and no gap left.

The tests run in order on one directory (each restart builds on the last); every process started
here is killed at teardown whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.cli_in_process import Cli
from tests.runtime.test_up import Up, clean_env

pytestmark = pytest.mark.timeout(240)

GAP_FREE_WITHIN_S = 30.0
"""After the restarted tape has its first new trade."""


@dataclass
class Demo:
    cwd: Path
    up: Up

    def last_eth_id(self) -> int:
        reply = self.up.coverage("ETHUSDT")
        assert reply is not None and reply["last_id"] is not None, reply
        return int(reply["last_id"])

    def restart(self, last_id: int) -> float:
        """`up --simulate` again; seconds from its tape passing `last_id` until ETHUSDT was gap-free."""
        self.up = Up(self.cwd, clean_env())
        deadline = time.monotonic() + 90
        reply: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            assert self.up.proc.poll() is None, self.up.output()[-3000:]
            self.up.note_children()
            reply = self.up.coverage("ETHUSDT")
            if reply is not None and reply["last_id"] > last_id + 40:
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"the restarted tape did not grow: {reply}\n{self.up.output()[-3000:]}")
        grown = time.monotonic()
        while time.monotonic() < grown + GAP_FREE_WITHIN_S:
            reply = self.up.coverage("ETHUSDT")
            if reply is not None and gap_free(reply):
                return time.monotonic() - grown
            time.sleep(0.5)
        raise AssertionError(f"ETHUSDT not gap-free {GAP_FREE_WITHIN_S:g} s after the restart: {reply}")


def settled(demo: Demo, holds: Callable[[dict[str, Any]], bool], within_s: float = 10) -> None:
    """Until ETHUSDT's coverage `holds`: an import or repair is stored when its command returns, and the worker
    sees it at its next catch-up (a command run in process asks at once)."""
    deadline = time.monotonic() + within_s
    while not ((coverage := demo.up.coverage("ETHUSDT")) is not None and holds(coverage)):
        assert time.monotonic() < deadline, coverage
        time.sleep(0.2)


def gap_free(reply: dict[str, Any]) -> bool:
    ids = reply["last_id"] - reply["first_id"] + 1
    return reply["gaps"] == [] and reply["ingest_gaps"] == [] and reply["trade_count"] + reply["void_count"] == ids


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    cwd = tmp_path_factory.mktemp("demo").resolve()
    demo = Demo(cwd, Up(cwd, clean_env()))
    ups = [demo.up]
    try:
        demo.up.wait_for_replay()
        yield demo
    finally:
        ups.append(demo.up)
        for up in ups:
            up.kill_all()


@pytest.mark.slow
def test_history_commands_find_the_simulator(demo: Demo, cli: Cli) -> None:
    """From a second terminal with no settings: they went to Binance (unreachable) or found no day. The commands run
    in this process (tests/cli_in_process.py: the demo's directory, no tradetape variables)."""

    def tradetape(*args: str) -> subprocess.CompletedProcess[str]:
        code, out, err = cli(demo.cwd, *args)
        return subprocess.CompletedProcess(args, code, out, err)

    url_file = demo.cwd / "data" / "exchange.url"
    assert url_file.stat().st_mode & 0o777 == 0o600
    assert url_file.read_text().strip().startswith("http://127.0.0.1:")
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    fetched = tradetape("fetch-history", "BTCUSDT", "--from", str(yesterday), "--to", str(yesterday))
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    imported = re.search(r"BTCUSDT \S+: 1 files imported \((\d+) trades\)", fetched.stdout)
    assert imported is not None and int(imported.group(1)) > 8000, fetched.stdout
    assert "using the simulator" in fetched.stderr

    # ETHUSDT: the day before yesterday from the dump, yesterday is the hole `repair` fills from REST.
    before = str(yesterday - timedelta(days=1))
    fetched = tradetape("fetch-history", "ETHUSDT", "--from", before, "--to", before)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    settled(demo, lambda coverage: len(coverage["gaps"]) == 1)
    repaired = tradetape("repair", "ETHUSDT")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "1 gaps, 1 closed, 0 still open" in repaired.stdout, repaired.stdout
    settled(demo, gap_free)


@pytest.mark.slow
def test_ctrl_c_and_up_again_is_gap_free(demo: Demo) -> None:
    last_id = demo.last_eth_id()
    assert demo.up.ctrl_c() == 0, demo.up.output()[-3000:]
    assert not (demo.cwd / "data" / "exchange.url").exists(), "removed on stop, like nats.url"
    took = demo.restart(last_id)
    print(f"gap-free {took:.1f} s after the first new trade (Ctrl-C)")


@pytest.mark.slow
def test_kill_9_of_everything_and_up_again_is_gap_free(demo: Demo) -> None:
    up = demo.up
    last_id = demo.last_eth_id()
    up.note_children()
    os.killpg(up.proc.pid, signal.SIGKILL)
    for pid in up.leftovers():  # the children too (they have their own sessions): nothing stops in order
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    up.proc.wait(10)
    took = demo.restart(last_id)
    print(f"gap-free {took:.1f} s after the first new trade (kill -9)")
