"""Service processes for tests: started like the CLI does, always stopped at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tradetape.settings import Settings


def service_env(settings: Settings) -> dict[str, str]:
    """The environment a service child reads `settings` from (what `tradetape up` hands its children)."""
    return {**os.environ, **settings.to_env()}


class ServiceProcesses:
    """`python -m tradetape.cli <command>` children, killed at teardown whatever happened."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, command: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
        log = open(self._log_dir / f"{command[0]}-{len(self._procs)}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "tradetape.cli", *command],
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self._procs.append(proc)
        return proc

    @property
    def started(self) -> list[subprocess.Popen[bytes]]:
        """Every child started so far, in order: a child's index names its log (`log_of`)."""
        return list(self._procs)

    def log_of(self, index: int) -> str:
        files = sorted(self._log_dir.glob(f"*-{index}.log"))
        return files[0].read_text() if files else ""

    def stop_all(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
