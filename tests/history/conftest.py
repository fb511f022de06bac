"""A hostile history host: a real HTTP server on a free loopback port, answering each path as a test says.

`hostile_host.routes[path] = answer` sets what a path gets; the answers below are the
ways a host (a proxy, a mirror, an attacker) can misbehave: redirect elsewhere, a body
without end, a body dripping a byte at a time, a ``Content-Length`` that lies. Every
answer gives up on its own after a bounded time or size, so code without bounds still
ends (and its test fails instead of hanging), and the server stops when the test ends.

And `tradetape`: the history commands run in the test's process, as their tests and the import summary's run them.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.cli_in_process import Cli

Answer = Callable[[BaseHTTPRequestHandler, threading.Event], None]
ENDLESS_GIVES_UP_BYTES = 64 * 1024 * 1024
DRIP_GIVES_UP_S = 15.0


class HostileHost:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.routes: dict[str, Answer] = {}
        self.fallback: Callable[[str], Answer | None] = lambda path: None
        self.requests: list[str] = []
        self.stopping = threading.Event()


def body(data: bytes, content_type: str = "application/zip") -> Answer:
    def answer(handler: BaseHTTPRequestHandler, stopping: threading.Event) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return answer


def redirect(location: str) -> Answer:
    def answer(handler: BaseHTTPRequestHandler, stopping: threading.Event) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return answer


def endless() -> Answer:
    """A body with no length that does not end (until 64 MiB, so unbounded code ends too)."""

    def answer(handler: BaseHTTPRequestHandler, stopping: threading.Event) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/zip")
        handler.end_headers()
        block = b"PK" * 32768
        for _ in range(ENDLESS_GIVES_UP_BYTES // len(block)):
            if stopping.is_set():
                return
            handler.wfile.write(block)

    return answer


def lying_length(data: bytes, declared: int) -> Answer:
    """`data`, under a ``Content-Length`` of `declared`, then the connection closes."""

    def answer(handler: BaseHTTPRequestHandler, stopping: threading.Event) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(declared))
        handler.end_headers()
        handler.wfile.write(data)

    return answer


def drip(data: bytes, every_s: float) -> Answer:
    """`data`, its true length declared, one byte every `every_s` (for at most 15 s)."""

    def answer(handler: BaseHTTPRequestHandler, stopping: threading.Event) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.flush()
        started = time.monotonic()
        for at in range(len(data)):
            if stopping.wait(every_s) or time.monotonic() - started > DRIP_GIVES_UP_S:
                return
            handler.wfile.write(data[at : at + 1])
            handler.wfile.flush()

    return answer


@pytest.fixture
def hostile_host() -> Iterator[HostileHost]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            host.requests.append(self.path)
            answer = host.routes.get(self.path) or host.fallback(self.path)
            try:
                if answer is None:
                    self.send_error(404)
                else:
                    answer(self, host.stopping)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up: what a bounded client does

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the signature http.server calls
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    host = HostileHost(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, name="hostile-host", daemon=True)
    thread.start()
    try:
        yield host
    finally:
        host.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


Tradetape = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def tradetape(cli: Cli, tmp_path: Path) -> Tradetape:
    """`tradetape *args` in this process (tests/cli_in_process.py), with a data directory and symbols of its own
    (and any other setting by its field name: `history_url=...`); a test whose event loop serves it runs it on a
    thread (`await asyncio.to_thread(tradetape, ...)`)."""

    def run(*args: str, data_dir: Path, symbols: str = "BTCUSDT", **settings: str) -> subprocess.CompletedProcess[str]:
        env = {f"TRADETAPE_{field.upper()}": value for field, value in settings.items()}
        code, out, err = cli(tmp_path, *args, TRADETAPE_DATA_DIR=str(data_dir), TRADETAPE_SYMBOLS=symbols, **env)
        return subprocess.CompletedProcess(args, code, out, err)

    return run
