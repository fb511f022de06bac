"""Importing this in a child makes SIGUSR1 print every asyncio task's stack to stderr: what a hung stop waits on."""

from __future__ import annotations

import asyncio
import signal
import sys
from types import FrameType


def _dump(signum: int, frame: FrameType | None) -> None:
    """Runs in the main thread between bytecodes, so inside the running loop when the loop is idle."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        print("TASK DUMP: no running loop", file=sys.stderr, flush=True)
        return
    for task in asyncio.all_tasks(loop):
        print(f"TASK {task.get_name()} cancelling={task.cancelling()}", file=sys.stderr)
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


signal.signal(signal.SIGUSR1, _dump)
