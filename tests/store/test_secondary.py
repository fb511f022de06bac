"""A shard's secondary view: safe to close while queries read it, and never leaves its directory behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store.synthetic import SYMBOL, T0, same, tape, write_rolled
from tradetape.store.reader import SECONDARY_DIR_PREFIX, SecondaryStore, ShardReader, StoreClosedError
from tradetape.store.writer import ShardWriter

HOUR_MS = 3_600_000


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temp directory of this test's own, so other processes' secondaries are never in view."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    yield root


def secondaries(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.startswith(SECONDARY_DIR_PREFIX))


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six hours of trades; every test only opens secondaries of it (in its own temp root), so it is built once."""
    path = tmp_path_factory.mktemp("secondary") / "shard"
    store = ShardWriter(path)
    try:
        write_rolled(store, tape(60_000, 6 * HOUR_MS))
    finally:
        store.close()
    return path


@pytest.mark.slow
def test_a_killed_process_s_secondary_directory_is_removed_by_the_next_open(temp_root: Path, shard: Path) -> None:
    child = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from tradetape.store.reader import SecondaryStore
        store = SecondaryStore(Path({str(shard)!r}))
        store.catch_up()
        print("open", flush=True)
        time.sleep(60)
        """
    )
    env = {**os.environ, "TMPDIR": str(temp_root)}
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"open\n"
        left = secondaries(temp_root)
        assert len(left) == 1 and str(proc.pid) in left[0].name
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert secondaries(temp_root) == left  # nothing ran to remove it
    finally:
        proc.kill()
        proc.wait(10)
    store = SecondaryStore(shard)
    try:
        store.catch_up()
        mine = secondaries(temp_root)
        assert left[0] not in mine and len(mine) == 1 and str(os.getpid()) in mine[0].name
    finally:
        store.close()
    assert secondaries(temp_root) == []


@pytest.mark.slow
def test_another_running_process_s_secondary_directory_is_left_alone(temp_root: Path, shard: Path) -> None:
    first, second = SecondaryStore(shard), SecondaryStore(shard)
    try:
        first.catch_up()
        second.catch_up()
        assert len(secondaries(temp_root)) == 2
    finally:
        first.close()
        second.close()
    assert secondaries(temp_root) == []


@pytest.mark.slow
def test_closing_while_threads_read_ends_every_read_cleanly(temp_root: Path, shard: Path) -> None:
    reader = ShardReader(shard, cache_bytes=8 * 2**20)
    whole = (T0, T0 + 6 * HOUR_MS)
    expected = reader.trades(SYMBOL, whole)
    assert len(expected) == 60_000
    outcomes: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                got = reader.trades(SYMBOL, whole)
            except StoreClosedError:
                outcomes.append("closed")
                return
            outcomes.append("ok" if same(got, expected) else "wrong")

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    reader.close()
    time.sleep(0.2)  # reads asked after the close must not open the store again
    stop.set()
    for thread in threads:
        thread.join(30)
    assert "wrong" not in outcomes and outcomes.count("closed") == 4 and "ok" in outcomes
    assert secondaries(temp_root) == []
    with pytest.raises(StoreClosedError):
        reader.coverage(SYMBOL, None)
    reader.close()
