"""Thousands of instruments: wildcard endpoints, one answer from the owning shard, served lists in NATS KV.

Each test runs the real analytics service (in-process, its own connection) against a real
nats-server and, where the symbols come from the exchange, the real simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from nats.aio.client import Client

from tests.harness import Running, request, run_services, wait_for
from tradetape.api.registry import methods
from tradetape.bus.served import read_served
from tradetape.bus.subjects import TRADES_STREAM, trade_subject
from tradetape.client import TapeClient, TapeUnavailable
from tradetape.mcp_server import list_symbols
from tradetape.runtime.metrics import discover
from tradetape.services.exchange import Exchange, ExchangeConfig
from tradetape.settings import Settings, shard_of
from tradetape.status import collect_status

MANY = tuple(f"S{index:04d}USDT" for index in range(2500))
SHARDS = 4


async def every_reply(nc: Client, subject: str, body: bytes = b"{}", wait: float = 0.3) -> list[Any]:
    """Every reply to one request that arrives within `wait` (a request answers the first one only)."""
    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox)
    replies: list[Any] = []
    try:
        await nc.publish(subject, body, reply=inbox)
        with contextlib.suppress(nats.errors.TimeoutError):
            while True:
                msg = await subscription.next_msg(timeout=wait)
                replies.append((orjson.loads(msg.data) if msg.data else None, dict(msg.headers or {})))
    finally:
        await subscription.unsubscribe()
    return replies


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_one_shard_of_2500_instruments_answers_srv_info_list_symbols_and_status_completely(
    nats_url: str, tmp_path: Path
) -> None:
    """Before: an endpoint a method and symbol, 20,000 of them: `$SRV.INFO` outgrew the 1 MiB max payload, so
    `list_symbols` and `status` got nothing from the shard."""
    async with Exchange(ExchangeConfig(symbols=MANY, rate=0)) as exchange:
        settings = Settings(
            nats_url=nats_url, data_dir=tmp_path, symbols="ALL", binance_rest_url=exchange.rest_url
        )
        async with run_services(settings, "analytics") as running:
            nc = await nats.connect(nats_url)
            tape = TapeClient(nc, timeout=30)
            try:

                async def info() -> bytes | None:
                    msg = await nc.request("$SRV.INFO.tradetape-analytics", b"", timeout=5)
                    return msg.data if len(orjson.loads(msg.data)["endpoints"]) == len(methods()) + 2 else None

                body = await wait_for(info, timeout=60, running=running)
                assert len(body) < 64 * 1024 < nc.max_payload
                assert await wait_for(tape.served, timeout=30, running=running) == {s: sorted(methods()) for s in MANY}

                listed: list[dict[str, Any]] = []
                offset: int | None = 0
                while offset is not None:
                    page = await list_symbols(tape, offset=offset)
                    assert page["count"] == len(MANY)
                    listed += page["symbols"]
                    offset = page["next_offset"]
                assert [entry["symbol"] for entry in listed] == list(MANY)
                assert all(entry["trade_count"] == 0 and entry["gaps"] == 0 for entry in listed)

                status = await collect_status(nc, settings, nats_url)
                assert [row.symbol for row in status.symbols] == list(MANY)
                assert all(row.shard == "main" and row.trade_count == 0 for row in status.symbols)
                assert [(s.shard, s.symbols) for s in status.served] == [("main", len(MANY))]
                assert not [problem for problem in status.problems if "coverage" in problem]
                running.check()
            finally:
                await nc.close()


@pytest.mark.slow
async def test_each_query_is_answered_once_by_its_shard_and_an_unserved_one_names_the_served(
    nats_url: str, tmp_path: Path
) -> None:
    symbols = tuple(f"C{index:02d}USDT" for index in range(40))
    owners = {symbol: shard_of(symbol, SHARDS) for symbol in symbols}
    assert set(owners.values()) == set(range(SHARDS))
    async with contextlib.AsyncExitStack() as stack:
        workers: list[Running] = []
        for index in range(SHARDS):
            settings = Settings(
                nats_url=nats_url, data_dir=tmp_path, symbols=symbols, shard=f"s{index}", shard_count=SHARDS,
                shard_index=index,
            )
            workers.append(await stack.enter_async_context(run_services(settings, "analytics")))
        nc = await stack.enter_async_context(await nats.connect(nats_url))
        tape = TapeClient(nc, timeout=10)

        async def all_published() -> bool:
            return len(await read_served(nc.jetstream())) == SHARDS

        await wait_for(all_published, timeout=30)
        asked = await asyncio.gather(*(every_reply(nc, f"tape.query.coverage.{symbol}") for symbol in symbols))
        for symbol, replies in zip(symbols, asked, strict=True):  # asked at once: each waits out its 0.3 s together
            assert len(replies) == 1, (symbol, replies)
            reply, headers = replies[0]
            assert reply["symbol"] == symbol and reply["trade_count"] == 0 and "Nats-Service-Error-Code" not in headers
        shard_of_id = {i["id"]: i["metadata"]["shard"] for i in await discover(nc, "INFO", "tradetape-analytics")}
        answered = {
            shard_of_id[stats["id"]]: next(e["num_requests"] for e in stats["endpoints"] if e["name"] == "coverage")
            for stats in await discover(nc, "STATS", "tradetape-analytics")
        }
        for index, running in enumerate(workers):
            mine = sum(1 for owner in owners.values() if owner == index)
            assert answered[f"s{index}"] == mine  # $SRV.STATS counts what the shard answered, nothing else
            assert running.services["analytics"].not_owned == len(symbols) - mine  # the rest reached it, dropped

        stranger = "ZZZUSDT"
        replies = await every_reply(nc, f"tape.query.coverage.{stranger}")
        assert len(replies) == 1
        reply, headers = replies[0]
        assert reply["error"]["code"] == "unserved" and headers["Nats-Service-Error-Code"] == "404"
        assert reply["error"]["details"]["shard"] == f"s{shard_of(stranger, SHARDS)}"
        with pytest.raises(TapeUnavailable) as unserved:
            await tape.query("coverage", stranger)
        assert unserved.value.served == {symbol: sorted(methods()) for symbol in sorted(symbols)}
        assert "ZZZUSDT is not served; served symbols: C00USDT, C01USDT" in str(unserved.value)


async def _served_and_stored(nc: Client, symbol: str) -> dict[str, Any] | None:
    lists = await read_served(nc.jetstream())
    if not any(symbol in served.symbols for served in lists.values()):
        return None
    reply, _ = await request(nc, f"tape.query.coverage.{symbol}", {})
    return reply if reply.get("trade_count", 0) >= 20 and not reply["gaps"] else None


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("shards", [1, 2])
async def test_a_symbol_listed_while_everything_runs_is_stored_and_served_within_a_minute(
    nats_url: str, tmp_path: Path, shards: int
) -> None:
    """On 2 shards persist asks the exchange later than ingest does: the listed symbol's first trades are on the
    stream before its consumer's filter grows, and must be stored all the same (the catch-up consumer)."""
    listed = "NEWUSDT"
    async with Exchange(ExchangeConfig(symbols=("BTCUSDT", "ETHUSDT"), rate=20)) as exchange:
        base = Settings(
            nats_url=nats_url, data_dir=tmp_path, symbols="ALL", binance_ws_url=exchange.ws_url,
            binance_rest_url=exchange.rest_url, symbols_refresh_s=1.0, shard_count=shards,
        )
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(run_services(base, "ingest"))
            for index in range(shards):
                shard = base.model_copy(update={"shard": f"s{index}", "shard_index": index, "symbols_refresh_s": 8.0})
                await stack.enter_async_context(run_services(shard, "persist", "analytics"))
            nc = await stack.enter_async_context(await nats.connect(nats_url))
            await wait_for(lambda: _served_and_stored(nc, "ETHUSDT"), timeout=60)

            exchange.list_symbol(listed)
            listed_at = asyncio.get_running_loop().time()
            reply = await wait_for(lambda: _served_and_stored(nc, listed), timeout=60, interval=0.5)
            assert asyncio.get_running_loop().time() - listed_at < 60
            first = await nc.jetstream().get_msg(TRADES_STREAM, seq=1, subject=trade_subject(listed), next=True)
            assert reply["first_id"] == json.loads(first.data or b"{}")["a"]  # from the stream's first trade on
            assert reply["trade_count"] == reply["last_id"] - reply["first_id"] + 1
