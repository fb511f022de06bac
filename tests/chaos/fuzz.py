"""Hostile queries sent all the while a scenario runs: every reply must be JSON, a result or a coded error.

A background task sends random requests to every query method of every symbol: garbage
bytes, JSON of the wrong shape, fields of wrong types, absurd times and sizes, mixed with
valid requests. A request that gets no reply (NATS restarting, a replica killed) is
counted, not failed; a reply that is not JSON, or an error without a code, or an
`internal` error, is a failure.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

import orjson
from nats.aio.client import Client

from tests.chaos.hostile_client import ClientReport, HostileClient, reply_code
from tradetape.api.registry import methods
from tradetape.bus.subjects import query_subject

HOSTILE_VALUES: tuple[Any, ...] = (
    None, True, -1, 0, 2**63, -(2**63), 1e308, -1e308, "", "x" * 5000, "1h", "-1h", "999999d",
    "2017-01-01", "2100-01-01T00:00:00", "not a time", "0.00000001", "-10", "1e9", [], {}, [1, 2], {"a": 1},
    "\u0000", "²", "NaN",
)
FIELDS = (
    "start", "end", "last", "row_size", "rows", "value_area", "min_trades", "interval", "top", "min_qty",
    "limit", "cursor", "anchor", "bands", "side", "entry", "threshold", "min_rows", "unknown",
)
GARBAGE: tuple[bytes, ...] = (b"", b"{", b"null", b"[]", b"\xff\xfe\x00", b'{"last": "1h"', b"42", b'"last"')


@dataclass
class FuzzReport(ClientReport):
    answered: int = 0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"fuzzed queries: {self.sent} sent, {self.answered} answered ({dict(self.codes)}), "
            f"{self.unanswered} unanswered during outages, {len(self.failures)} bad replies"
        )


def hostile_body(rng: random.Random) -> bytes:
    """One request body: garbage, or a JSON object of random fields and values, now and then a valid one."""
    roll = rng.random()
    if roll < 0.15:
        return rng.choice(GARBAGE)
    if roll < 0.3:
        return orjson.dumps({"last": rng.choice(("15m", "1h", "24h"))})
    body = {name: rng.choice(HOSTILE_VALUES) for name in rng.sample(FIELDS, rng.randint(1, 4))}
    return orjson.dumps(body)


def judge(data: bytes) -> str:
    """The error code of a reply, `ok` for a result; raises ValueError for a reply that breaks the contract
    (`reply_code`) or is an `internal` error."""
    code = reply_code(data)
    if code == "internal":
        raise ValueError(f"an internal error: {data[:300]!r}")
    return code


class QueryFuzzer(HostileClient):
    """`async with QueryFuzzer(url, symbols) as fuzz:` ... then `fuzz.report`; fails nothing itself."""

    name = "chaos-fuzz"

    def __init__(self, url: str, symbols: tuple[str, ...], *, seed: int = 12, interval: float = 0.02) -> None:
        super().__init__(url)
        self._subjects = [query_subject(name, symbol) for name in methods() for symbol in symbols]
        self._rng = random.Random(seed)
        self._interval = interval
        self.report = FuzzReport()

    async def _run(self, nc: Client) -> None:
        report = self.report
        while True:
            subject = self._rng.choice(self._subjects)
            body = hostile_body(self._rng)
            data = await self._request(nc, subject, body, timeout=5)
            if data is not None:
                report.answered += 1
                try:
                    report.codes[judge(data)] += 1
                except ValueError as exc:
                    report.failures.append(f"{subject} {body[:200]!r}: {exc}")
            await asyncio.sleep(self._interval)

    def assert_sound(self, minimum: int = 20) -> None:
        """Every answered request was answered well, and enough of them were."""
        report = self.report
        assert not report.failures, "\n".join(report.failures[:10])
        assert report.answered >= minimum, report.summary()
