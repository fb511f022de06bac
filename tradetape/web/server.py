"""`tradetape web`'s HTTP side: the static page, and `config.json` telling it where NATS is.

The page talks to NATS itself, over the server's WebSocket listener, with the official
`nats.ws` client (its ES module bundle is committed as `static/nats.js`): this server
only hands out files and the config, so it holds no connection and no state. The config
is read again for every request, so the page finds a `tradetape up` started after it.
With `up`'s embedded server, the config carries the query user `up` made for the page
(`tradetape.runtime.nats_users`): that listener lets no one in without it.

Every request passes `tradetape.runtime.http_access` (Host, Origin, the request deadline, the
connection bound): a thread blocked on a slow client ends at the deadline, and connections
beyond the bound are closed before a thread is started for them.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from socketserver import BaseRequestHandler
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from tradetape.errors import ConfigError
from tradetape.ground.inboxes import ROLE_INBOX_PREFIXES
from tradetape.ground.url_files import read_url_file
from tradetape.runtime.http_access import ConnectionSlots, HttpAccess
from tradetape.runtime.nats_users import read_credential
from tradetape.settings import Settings
from tradetape.store import find_shards

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

logger = logging.getLogger(__name__)

STATIC = files("tradetape.web") / "static"
PAGES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/orderflow.js": ("orderflow.js", "text/javascript; charset=utf-8"),
    "/nats.js": ("nats.js", "text/javascript; charset=utf-8"),
}


class WebConfigError(ConfigError, RuntimeError):
    """No NATS WebSocket URL is known for the page."""


class WebConfig(BaseModel):
    """What the page needs to connect: the WebSocket URL, the symbols, the query-only user if any."""

    servers: str
    symbols: list[str]
    user: str | None = None
    password: str | None = None
    inbox_prefix: str = ROLE_INBOX_PREFIXES["query"]
    """The page asks as the query role, which may read replies under this prefix only."""


def web_config(settings: Settings) -> WebConfig:
    """`web_nats_url` as `web_nats_user`, else `tradetape up`'s embedded server as the query user it made."""
    symbols = page_symbols(settings)
    if settings.web_nats_url is not None:
        password = settings.web_nats_password.get_secret_value() if settings.web_nats_password else None
        return WebConfig(servers=settings.web_nats_url, symbols=symbols, user=settings.web_nats_user, password=password)
    url = read_url_file(settings.nats_ws_url_file)
    if url is None:
        raise WebConfigError(
            f"no NATS WebSocket URL: set {Settings.env_name('web_nats_url')} (e.g. ws://127.0.0.1:8080), "
            f"or run `tradetape up` with data dir {settings.data_dir}"
        )
    credential = read_credential(settings.nats_ws_user_file)
    if credential is None:
        raise WebConfigError(
            f"no query user for {url}: {settings.nats_ws_user_file} is missing or not readable by this user alone "
            f"(`tradetape up` writes it; run this command as the user who runs `up`)"
        )
    return WebConfig(
        servers=url, symbols=symbols, user=credential.user, password=credential.password.get_secret_value()
    )


def page_symbols(settings: Settings) -> list[str]:
    """`symbols`; with `ALL`, those the shards under the data dir recorded when persist resolved them."""
    if not settings.symbols_from_exchange:
        return list(settings.symbols)
    root = settings.data_dir / "shards"
    symbols = sorted({symbol for owned in find_shards(root).values() for symbol in owned})
    if not symbols:
        raise WebConfigError(
            f"{Settings.env_name('symbols')}=ALL: the page lists the symbols persist recorded under {root}, "
            f"and none has yet (start `tradetape up`, or set {Settings.env_name('symbols')} for the page)"
        )
    return symbols


class _DeadlineReader(io.RawIOBase):
    """A connection's bytes until the request's deadline: each read waits only for the time left."""

    def __init__(self, connection: socket.socket, deadline: float) -> None:
        super().__init__()
        self._connection = connection
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request was not complete by its deadline")
        self._connection.settimeout(left)
        return self._connection.recv_into(buffer)


class _GuardedHTTPServer(ThreadingHTTPServer):
    """A thread a connection, at most `max_connections` of them: beyond, a connection is closed at once."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog (socketserver's 5 drops a burst of connections to SYN retries)

    def __init__(self, settings: Settings, address: tuple[str, int], handler: type[BaseRequestHandler]) -> None:
        super().__init__(address, handler)
        self.access = HttpAccess.for_server(settings, address[0], self.server_address[1])
        self._slots = ConnectionSlots(self.access.max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.take():
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: it will not give the slot back
            self._slots.give_back()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.give_back()


class WebServer:
    """The page's HTTP server on a thread of its own; `port=0` picks a free port (see `url`)."""

    def __init__(self, settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
        self._settings = settings
        self._address = (host or settings.web_host, settings.web_port if port is None else port)
        self._server: _GuardedHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("web server not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> None:
        settings = self._settings

        class Handler(BaseHTTPRequestHandler):
            @property
            def access(self) -> HttpAccess:
                return cast(_GuardedHTTPServer, self.server).access

            def setup(self) -> None:
                super().setup()
                self.rfile.close()
                deadline = time.monotonic() + self.access.request_timeout_s
                self.rfile = io.BufferedReader(_DeadlineReader(self.connection, deadline))

            def parse_request(self) -> bool:
                if not super().parse_request():
                    return False
                self.connection.settimeout(self.access.request_timeout_s)  # what each write of the answer may wait
                refused = self.access.refusal(self.headers.items())
                if refused is None:
                    return True
                body = f"{refused.reason}\n".encode()
                self._send(HTTPStatus(refused.status), body, "text/plain; charset=utf-8", refused.headers)
                return False

            def do_GET(self) -> None:  # noqa: N802 - the http.server interface
                path = self.path.split("?", 1)[0]
                if path == "/config.json":
                    try:
                        body = web_config(settings).model_dump_json().encode()
                    except WebConfigError as exc:
                        self._send(HTTPStatus.SERVICE_UNAVAILABLE, str(exc).encode(), "text/plain; charset=utf-8")
                        return
                    self._send(HTTPStatus.OK, body, "application/json")
                    return
                page = PAGES.get(path)
                if page is None:
                    self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain; charset=utf-8")
                    return
                name, content_type = page
                self._send(HTTPStatus.OK, (STATIC / name).read_bytes(), content_type)

            def _send(
                self, status: HTTPStatus, body: bytes, content_type: str, headers: tuple[tuple[str, str], ...] = ()
            ) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server interface
                logger.debug("web request", extra={"request": format % args})

        self._server = _GuardedHTTPServer(settings, self._address, Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="tradetape-web", daemon=True)
        self._thread.start()
        logger.info("web page served", extra={"url": self.url})

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> WebServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
