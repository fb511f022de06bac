"""The data-directory lock: one holder, the holder named to the next, released on close."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tradetape.ground.lock import DataDirLock, DataDirLocked, LockHolder, read_holder


def test_acquire_records_the_holder(tmp_path: Path) -> None:
    with DataDirLock(tmp_path / "data" / "tradetape.lock") as lock:
        assert lock.held
        assert read_holder(lock.path) == LockHolder(os.getpid(), None)
        lock.record("nats://127.0.0.1:4333")
        assert read_holder(lock.path) == LockHolder(os.getpid(), "nats://127.0.0.1:4333")


def test_a_second_acquire_is_refused_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "tradetape.lock"
    with DataDirLock(path) as first:
        first.record("nats://127.0.0.1:4333")
        with pytest.raises(DataDirLocked) as refused:
            DataDirLock(path).acquire()
    assert refused.value.holder == LockHolder(os.getpid(), "nats://127.0.0.1:4333")
    message = str(refused.value)
    assert f"pid {os.getpid()}" in message and "nats://127.0.0.1:4333" in message and str(tmp_path) in message


def test_released_on_close_and_safe_twice(tmp_path: Path) -> None:
    path = tmp_path / "tradetape.lock"
    first = DataDirLock(path)
    first.acquire()
    first.release()
    first.release()
    assert not first.held
    with DataDirLock(path) as second:
        assert second.held


def test_held_by_another_process_until_it_exits(tmp_path: Path) -> None:
    path = tmp_path / "tradetape.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from tradetape.ground.lock import DataDirLock\n"
            "lock = DataDirLock(Path(sys.argv[1])); lock.acquire(); lock.record('nats://127.0.0.1:1')\n"
            "print('held', flush=True); sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DataDirLocked) as refused:
            DataDirLock(path).acquire()
        assert refused.value.holder == LockHolder(holder.pid, "nats://127.0.0.1:1")
        holder.kill()
        holder.wait(timeout=10)
        with DataDirLock(path) as lock:
            assert lock.held
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=10)
        for stream in (holder.stdin, holder.stdout):
            if stream is not None:
                stream.close()
