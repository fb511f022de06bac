"""Getting one file from the history host without trusting it: bounded in bytes and in time, on one host.

The host (`Settings.history_url`) may be a proxy, a mirror or an attacker: a request
follows redirects only to the same scheme, host and port; a body is refused once it
passes `history_max_download_bytes`, or if it is longer or shorter than its own
``Content-Length``; the whole file, from the first connection to the last byte, must
arrive within `history_download_deadline_s` (every socket read waits at most what is
left of it, so a server dripping a byte at a time is cut off on time). Plain
`http.client`, one connection per request, ``Connection: close``.

A refused body (too long, longer than it said) is deleted; a download cut short (the
deadline, a lost connection, a body shorter than it said) keeps its ``.part``, which
the next run resumes with a Range request and the checksum then judges.
"""

from __future__ import annotations

import http.client
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from tradetape import __version__
from tradetape.errors import ExchangeError
from tradetape.settings import Settings

READ_BYTES = 1024 * 1024
READ_TIMEOUT_S = 60.0
"""The longest one socket read may wait, however much of the deadline is left."""
MAX_REDIRECTS = 3
TEXT_MAX_BYTES = 4096
_REDIRECTS = {301, 302, 303, 307, 308}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class FetchError(ExchangeError, RuntimeError):
    """A dump that could not be downloaded or verified (the message says which and why)."""


class RefusedBodyError(FetchError):
    """A body the host should not have sent (too long, longer than it said): its partial file is deleted."""


@dataclass(frozen=True)
class DownloadLimits:
    max_bytes: int
    deadline_s: float

    @classmethod
    def of(cls, settings: Settings) -> DownloadLimits:
        return cls(settings.history_max_download_bytes, settings.history_download_deadline_s)


class Deadline:
    """What is left of one file's time, as the timeout of the next socket operation."""

    def __init__(self, seconds: float, what: str) -> None:
        self._end = time.monotonic() + seconds
        self._seconds = seconds
        self._what = what

    def timeout(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise FetchError(f"{self._what}: not complete within {self._seconds:g} s (history_download_deadline_s)")
        return min(left, READ_TIMEOUT_S)


class HistoryHost:
    """GETs from the one host of `base_url`."""

    def __init__(self, base_url: str, limits: DownloadLimits) -> None:
        self.base_url = base_url.rstrip("/")
        self.limits = limits
        self._origin = _origin(self.base_url)

    def text(self, path: str, deadline: Deadline) -> str:
        """A small text file (a ``.CHECKSUM``); `FileNotFoundError` on 404."""
        url = f"{self.base_url}/{path}"
        body = b""
        with self._get(url, {}, deadline) as (sock, response):
            if response.status != 200:
                raise FetchError(f"{url}: HTTP {response.status}")
            while len(body) <= TEXT_MAX_BYTES:
                sock.settimeout(deadline.timeout())
                block = _read(response, url, TEXT_MAX_BYTES + 1 - len(body), deadline)
                if not block:
                    break
                body += block
        if len(body) > TEXT_MAX_BYTES:
            raise FetchError(f"{url}: longer than {TEXT_MAX_BYTES} bytes, not a checksum file")
        return body.decode(errors="replace")

    def download(self, path: str, target: Path, deadline: Deadline) -> None:
        """`path` into `target`, resuming ``target.part`` if a previous run left one; `FileNotFoundError` on 404."""
        url = f"{self.base_url}/{path}"
        partial = target.with_name(target.name + ".part")
        offset = partial.stat().st_size if partial.exists() else 0
        if offset >= self.limits.max_bytes:
            partial.unlink()
            offset = 0
        with self._get(url, {"Range": f"bytes={offset}-"} if offset else {}, deadline) as (sock, response):
            stale = offset > 0 and response.status == 416
            if not stale:
                self._into(url, sock, response, partial, offset, deadline)
        if stale:  # a partial the host no longer has: start over
            partial.unlink(missing_ok=True)
            with self._get(url, {}, deadline) as (sock, response):
                self._into(url, sock, response, partial, 0, deadline)
        partial.replace(target)

    def _into(
        self,
        url: str,
        sock: socket.socket,
        response: http.client.HTTPResponse,
        partial: Path,
        offset: int,
        deadline: Deadline,
    ) -> None:
        """The body into `partial` from `offset` (a 206's start, checked) or from 0 (a whole file)."""
        if response.status not in (200, 206):
            raise FetchError(f"{url}: HTTP {response.status}")
        if response.status == 200:
            offset = 0
        else:
            match = _CONTENT_RANGE.fullmatch((response.getheader("Content-Range") or "").strip())
            if match is None or int(match.group(1)) != offset:
                range_text = response.getheader("Content-Range")
                raise FetchError(f"{url}: answered the range {range_text!r} to a request from byte {offset}")
        try:
            self._receive(url, sock, response, partial, offset, deadline)
        except RefusedBodyError:
            partial.unlink(missing_ok=True)
            raise

    def _receive(
        self,
        url: str,
        sock: socket.socket,
        response: http.client.HTTPResponse,
        partial: Path,
        offset: int,
        deadline: Deadline,
    ) -> None:
        declared = response.length  # None: chunked or until the connection closes
        cap = self.limits.max_bytes
        if declared is not None and offset + declared > cap:
            raise RefusedBodyError(f"{url}: {offset + declared} bytes, more than {cap} (history_max_download_bytes)")
        received = 0
        with partial.open("ab" if offset else "wb") as handle:
            while True:
                sock.settimeout(deadline.timeout())
                block = _read(response, url, READ_BYTES, deadline)
                if not block:
                    break
                received += len(block)
                if offset + received > cap:
                    raise RefusedBodyError(f"{url}: more than {cap} bytes (history_max_download_bytes)")
                handle.write(block)
        if declared is not None:
            if received < declared:
                raise FetchError(f"{url}: the body ended after {received} of its {declared} bytes (Content-Length)")
            if response.fp is not None:  # the declared length is read: anything after it is a lie
                sock.settimeout(min(deadline.timeout(), 1.0))
                try:
                    extra = response.fp.read1(1)
                except TimeoutError:
                    extra = b""
                if extra:
                    raise RefusedBodyError(f"{url}: the body is longer than its Content-Length {declared}")

    @contextmanager
    def _get(
        self, url: str, headers: dict[str, str], deadline: Deadline
    ) -> Iterator[tuple[socket.socket, http.client.HTTPResponse]]:
        """The response to GET `url` (redirects followed within the host) and its socket; closed on exit."""
        connection, sock, response = self._open(url, headers, deadline)
        try:
            yield sock, response
        finally:
            response.close()
            connection.close()

    def _open(
        self, url: str, headers: dict[str, str], deadline: Deadline
    ) -> tuple[http.client.HTTPConnection, socket.socket, http.client.HTTPResponse]:
        asked = url
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if _origin(url) != self._origin:
                raise FetchError(f"{asked}: redirected to {parts.scheme}://{parts.netloc}, not the history host")
            kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            connection = kind(parts.hostname or "", parts.port, timeout=deadline.timeout())
            try:
                connection.connect()
                sock = connection.sock
                assert sock is not None
                connection.request(
                    "GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers={**headers, **_HEADERS}
                )
                sock.settimeout(deadline.timeout())
                response = connection.getresponse()
            except TimeoutError:
                connection.close()
                deadline.timeout()
                raise FetchError(f"{url}: no answer within {READ_TIMEOUT_S:g} s") from None
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                raise FetchError(f"{url}: unreachable ({exc!r})") from None
            if response.status in _REDIRECTS or response.status == 404:
                response.close()
                connection.close()
                if response.status == 404:
                    raise FileNotFoundError(url)
                url = urljoin(url, response.getheader("Location") or "")
                continue
            return connection, sock, response
        raise FetchError(f"{asked}: more than {MAX_REDIRECTS} redirects")


_HEADERS = {"Connection": "close", "Accept-Encoding": "identity", "User-Agent": f"tradetape/{__version__}"}


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    return parts.scheme, (parts.hostname or "").lower(), port or (443 if parts.scheme == "https" else 80)


def _read(response: http.client.HTTPResponse, url: str, size: int, deadline: Deadline) -> bytes:
    """At most `size` bytes of the body, with at most one socket read."""
    try:
        return response.read1(size)
    except TimeoutError:
        deadline.timeout()  # the deadline's own error, if that is what the timeout was
        raise FetchError(f"{url}: no data for {READ_TIMEOUT_S:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError(f"{url}: the connection failed ({exc!r})") from None
