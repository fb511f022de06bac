"""A query flood during the faults: every answer equals the same request asked alone afterwards.

Bursts of hundreds of concurrent requests (half over the whole tape as it stood before the
flood, half over a few seconds of it) go to the analytics replicas all the while a
scenario kills and restarts things. The ranges are fixed and were complete before the
flood started, so each request has one right answer whenever it is asked. A request may
go unanswered while NATS or a replica is down and may be answered `overloaded`; any
other reply must be the one the same request gets alone once the scenario is over, and
`internal` never.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from nats.aio.client import Client

from tests.chaos.hostile_client import ClientReport, HostileClient, reply_code
from tests.chaos.invariant import coverage
from tests.harness import wait_for
from tradetape.bus.subjects import query_subject

HEAVY: tuple[tuple[str, dict[str, Any]], ...] = (
    ("volume_profile", {"row_size": "0.01", "min_trades": 1}),
    ("liquidity_vacuums", {"row_size": "0.01", "min_trades": 1}),
    ("large_trades", {"top": 100}),
    ("vwap", {"interval": "1s"}),
    ("flow", {"interval": "1s"}),
    ("bars", {"interval": "1s"}),
    ("trades", {"limit": 5000}),
)
SMALL_MS = 3_000


async def complete_ranges(nc: Client, symbols: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """Per symbol, from its first stored trade to its newest, once the tape has no gap and ingest none open."""
    ranges: dict[str, tuple[int, int]] = {}

    async def complete() -> bool:
        for symbol in symbols:
            reply = await coverage(nc, symbol)
            if reply.get("gaps") or reply.get("ingest_gaps") != [] or not reply.get("trade_count"):
                return False
            ranges[symbol] = (int(reply["first_time"]), int(reply["last_time"]))
        return True

    await wait_for(complete, 60, interval=0.5)
    return ranges


@dataclass
class FloodReport(ClientReport):
    replies: dict[tuple[str, bytes], list[bytes]] = field(default_factory=dict)
    wrong: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"query flood: {self.sent} sent, {dict(self.codes)}, {self.unanswered} unanswered during outages, "
            f"{len(self.wrong)} wrong"
        )


class QueryFlood(HostileClient):
    """`async with QueryFlood(url, ranges) as flood:` ... then `await flood.check(nc)` once the faults are over."""

    name = "chaos-flood"

    def __init__(self, url: str, ranges: dict[str, tuple[int, int]], *, burst: int = 200, pause: float = 1.0) -> None:
        super().__init__(url)
        self._requests = [
            (query_subject(name, symbol), orjson.dumps({**fields, "start": start, "end": end}))
            for symbol, (first, last) in ranges.items()
            for start, end in ((first, last), (max(first, last - SMALL_MS), last))
            for name, fields in HEAVY
        ]
        self._burst = burst
        self._pause = pause
        self.report = FloodReport()

    async def _run(self, nc: Client) -> None:
        while True:
            chosen = [self._requests[(self.report.sent + i) % len(self._requests)] for i in range(self._burst)]
            await asyncio.gather(*(self._ask(nc, subject, body) for subject, body in chosen))
            await asyncio.sleep(self._pause)

    async def _ask(self, nc: Client, subject: str, body: bytes) -> None:
        data = await self._request(nc, subject, body, timeout=20)
        if data is None:
            return
        code = reply_code(data)
        self.report.codes[code] += 1
        if code != "overloaded":
            self.report.replies.setdefault((subject, body), []).append(data)

    async def check(self, nc: Client) -> None:
        """Each distinct request asked alone: every reply the flood got must be that one, none `internal`."""
        report = self.report
        for (subject, body), replies in report.replies.items():
            alone = (await nc.request(subject, body, timeout=30)).data
            assert reply_code(alone) == "ok", f"{subject} {body!r} alone: {alone[:300]!r}"
            expected = orjson.loads(alone)
            report.wrong += [f"{subject} {body!r}: {got[:300]!r}" for got in replies if orjson.loads(got) != expected]
        assert not report.wrong, f"{len(report.wrong)} answers differ from alone, e.g. {report.wrong[:3]}"
        assert report.codes["ok"] >= 100, report.summary()
