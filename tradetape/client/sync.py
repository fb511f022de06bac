"""`SyncTapeClient`: the client for code that is not async."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Self

from tradetape.client.queries import DEFAULT_TIMEOUT_S
from tradetape.client.tape import TapeClient
from tradetape.settings import Settings


class SyncTapeClient:
    """`TapeClient` for code that is not async: each call runs on the client's own event loop.

    with SyncTapeClient.connect() as tape:
        bars = tape.query("coverage", "BTCUSDT")
    """

    def __init__(self, runner: asyncio.Runner, client: TapeClient) -> None:
        self._runner = runner
        self._client = client
        self._closed = False

    @classmethod
    def connect(
        cls, settings: Settings | None = None, *, url: str | None = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> SyncTapeClient:
        runner = asyncio.Runner()
        try:
            client = runner.run(TapeClient.connect(settings, url=url, timeout=timeout))
        except BaseException:
            runner.close()
            raise
        return cls(runner, client)

    def query(self, method: str, symbol: str, /, **fields: Any) -> Any:
        return self._runner.run(self._client.query(method, symbol, **fields))

    def served(self) -> dict[str, list[str]]:
        return self._runner.run(self._client.served())

    def close(self) -> None:
        """Close the connection and the event loop; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._runner.run(self._client.close())
        finally:
            self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
