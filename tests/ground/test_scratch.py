"""Temporary directories named by their owner: swept once the owner is gone, never while it runs."""

from __future__ import annotations

import os
from pathlib import Path

from tradetape.ground.scratch import owned_tempdir, process_start, sweep

PREFIX = "tradetape-test-scratch-"


def test_only_directories_of_processes_that_no_longer_run_are_swept(tmp_path: Path) -> None:
    mine = owned_tempdir(PREFIX, tmp_path)
    start = process_start(os.getpid())
    assert start is not None and mine.name.startswith(f"{PREFIX}{os.getpid()}-{start}-")
    reused_pid = tmp_path / f"{PREFIX}{os.getpid()}-{int(start) + 1}-abc"  # this pid, another process's start
    dead = tmp_path / f"{PREFIX}{2**22 + 17}-12345-abc"  # above Linux's pid_max: runs nowhere
    unknown_shape = tmp_path / f"{PREFIX}k3qk7hju"
    other_prefix = tmp_path / f"tradetape-other-{2**22 + 17}-12345-abc"
    for path in (reused_pid, dead, unknown_shape, other_prefix):
        path.mkdir()
        (path / "LOG").write_text("x")
    assert sorted(sweep(PREFIX, tmp_path)) == sorted([reused_pid, dead])
    assert mine.exists() and unknown_shape.exists() and other_prefix.exists()
    assert not reused_pid.exists() and not dead.exists()
