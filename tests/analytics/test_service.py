"""The analytics service over a real NATS server: discovery, empty tape, bad requests."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import nats
import pytest
from nats.errors import TimeoutError as NatsTimeoutError

from tests.harness import request, run_services, wait_for
from tradetape.api.registry import methods
from tradetape.bus.ledger import LedgerEntry, LedgerGap, ledger_bucket, ledger_key, write_entry
from tradetape.bus.ledger_cache import LEDGER_MAX_AGE_S
from tradetape.bus.served import read_served
from tradetape.services.analytics.service import AnalyticsService
from tradetape.services.exchange import Exchange, ExchangeConfig
from tradetape.settings import Settings

pytestmark = pytest.mark.timeout(60)


async def test_discovery_empty_tape_and_invalid_requests(nats_url: str, tmp_path: Path) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=("BTCUSDT", "ETHUSDT"))
    async with run_services(settings, "analytics") as running:
        client = await nats.connect(nats_url)
        try:

            async def info() -> dict[str, object] | None:
                msg = await client.request("$SRV.INFO.tradetape-analytics", b"", timeout=2)
                found = json.loads(msg.data)
                return found if len(found["endpoints"]) == len(methods()) + 2 else None

            found = await wait_for(info, timeout=10, running=running)
            subjects = {endpoint["subject"] for endpoint in found["endpoints"]}
            assert subjects == {f"tape.query.{name}.>" for name in methods()} | {"tape.schema", "tape.replay.open.>"}
            schema = json.loads((await client.request("tape.schema", b"", timeout=2)).data)
            assert "request" in schema["methods"]["bars"] and schema["subject"] == "tape.query.<method>.<SYMBOL>"

            empty, _ = await request(client, "tape.query.coverage.ETHUSDT", {})
            assert empty["trade_count"] == 0 and empty["gaps"] == [] and empty["first_id"] is None

            none, headers = await request(client, "tape.query.volume_profile.BTCUSDT", {"last": "15m"})
            assert none["error"]["code"] == "insufficient_trades"
            assert none["error"]["details"] == {"found": 0, "needed": 1000}
            assert headers["Nats-Service-Error-Code"] == "422"

            for body, field in (
                (b'{"row_size": "abc"}', "row_size"),
                (b'{"last": "1h", "end": 5}', ""),
                (b"[]", ""),
                (b'{"value_area": 2}', "value_area"),
            ):
                bad, headers = await request(client, "tape.query.volume_profile.BTCUSDT", body)
                assert bad["error"]["code"] == "invalid_request", body
                assert headers["Nats-Service-Error-Code"] == "400"
                assert field in json.dumps(bad["error"]["details"])

            unserved, headers = await request(client, "tape.query.coverage.SOLUSDT", b"{}", timeout=2)
            assert unserved["error"]["code"] == "unserved" and headers["Nats-Service-Error-Code"] == "404"
            assert unserved["error"]["details"] == {"symbol": "SOLUSDT", "shard": "main", "served_count": 2}
            for subject in ("tape.query.coverage.BTCUSDT.ETHUSDT", "tape.query.coverage.btcusdt"):
                refused, _ = await request(client, subject, b"{}", timeout=2)
                assert refused["error"]["code"] == "invalid_request", subject

            stats = json.loads((await client.request("$SRV.STATS.tradetape-analytics", b"", timeout=2)).data)
            served = {e["subject"]: e["num_requests"] for e in stats["endpoints"]}
            assert served["tape.query.volume_profile.>"] == 5
            errors = {e["subject"]: e["num_errors"] for e in stats["endpoints"]}
            assert errors["tape.query.volume_profile.>"] == 5  # every one of them was an error reply
            assert served["tape.query.coverage.>"] == 4 and errors["tape.query.coverage.>"] == 3
            running.check()
        finally:
            await client.close()


async def test_coverage_carries_ingest_open_gaps_from_the_ledger(nats_url: str, tmp_path: Path) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=("BTCUSDT", "ETHUSDT"))
    async with run_services(settings, "analytics") as running:
        client = await nats.connect(nats_url)
        try:
            before, _ = await wait_for(lambda: request(client, "tape.query.coverage.BTCUSDT", {}), 10, running=running)
            assert before["ingest_gaps"] is None  # ingest never ran: no ledger to read

            kv = await ledger_bucket(client.jetstream(), create=True)
            assert kv is not None
            opened = int(time.time() * 1000) - 5000
            gap = LedgerGap(from_id=101, to_id=150, opened_ms=opened, attempts=3, last_error="503")
            await write_entry(kv, LedgerEntry("BTCUSDT", watermark=100, last_id=400, updated_ms=0, gaps=(gap,)))
            await kv.put(ledger_key("ETHUSDT"), b"{not a ledger value")

            async def opened_gaps() -> list[dict[str, object]]:  # an entry read answers a while (LEDGER_MAX_AGE_S)
                reply, _ = await request(client, "tape.query.coverage.BTCUSDT", {})
                return reply["ingest_gaps"]

            (found,) = await wait_for(opened_gaps, 3, interval=0.05, running=running)
            assert (found["from_id"], found["to_id"], found["attempts"], found["last_error"]) == (101, 150, 3, "503")
            assert found["age_s"] >= 5
            unreadable, headers = await request(client, "tape.query.coverage.ETHUSDT", {})
            assert "Nats-Service-Error-Code" not in headers
            assert unreadable["ingest_gaps"] is None and unreadable["trade_count"] == 0

            await write_entry(kv, LedgerEntry("BTCUSDT", watermark=400, last_id=400, updated_ms=0))

            async def closed() -> bool:
                reply, _ = await request(client, "tape.query.coverage.BTCUSDT", {})
                return reply["ingest_gaps"] == []

            await wait_for(closed, 3, interval=0.05, running=running)
        finally:
            await client.close()


@pytest.mark.slow
async def test_all_serves_the_shards_share_of_what_exchange_info_lists(nats_url: str, tmp_path: Path) -> None:
    listed = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")
    async with Exchange(ExchangeConfig(symbols=listed, rate=0)) as exchange:
        settings = Settings(
            nats_url=nats_url,
            data_dir=tmp_path,
            symbols="ALL",
            binance_rest_url=exchange.rest_url,
            shard="s1",
            shard_count=2,
            shard_index=1,
        )
        share = settings.shard_share(sorted(listed))
        async with run_services(settings, "analytics") as running:
            client = await nats.connect(nats_url)
            try:

                async def info() -> dict[str, object] | None:
                    msg = await client.request("$SRV.INFO.tradetape-analytics", b"", timeout=2)
                    return json.loads(msg.data)

                found = await wait_for(info, timeout=10, running=running)
                assert found["metadata"] == {"shard": "s1", "shard_index": "1", "shard_count": "2"}
                lists = await wait_for(lambda: read_served(client.jetstream()), timeout=10, running=running)
                assert set(lists) == {"s1"} and lists["s1"].symbols == list(share) and 0 < len(share) < len(listed)
                empty, _ = await request(client, f"tape.query.coverage.{share[0]}", {})
                assert empty["trade_count"] == 0
                other = next(symbol for symbol in listed if symbol not in share)
                with pytest.raises(NatsTimeoutError):  # shard 0's, and no worker of shard 0 runs
                    await client.request(f"tape.query.coverage.{other}", b"{}", timeout=1)
                assert running.services["analytics"].not_owned == 1
            finally:
                await client.close()


async def test_the_served_list_keeper_ends_when_stopped_without_being_cancelled(nats_url: str, tmp_path: Path) -> None:
    """Before: it waited for the next change or a minute, whatever `stop` said; a cancel that nats-py's request
    dropped (tests/ground/test_tasks.py) left only that wait, so the worker hung a minute on SIGTERM (seen by CI)."""
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=("BTCUSDT",))
    client = await nats.connect(nats_url)
    service = AnalyticsService(settings, client)
    stop = asyncio.Event()
    keeper = asyncio.create_task(service._keep_served(stop))
    try:
        await wait_for(lambda: read_served(client.jetstream()), timeout=10)
        stop.set()
        await asyncio.wait_for(asyncio.shield(keeper), 2)
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        await client.close()


async def test_coverage_reads_the_ledger_a_few_times_a_second_not_once_a_query(nats_url: str, tmp_path: Path) -> None:
    """A KV get per coverage query was ~23 % of analytics' busy time: one read answers a symbol's queries a while."""
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=("BTCUSDT",))
    async with run_services(settings, "analytics") as running:
        client = await nats.connect(nats_url)
        try:
            kv = await ledger_bucket(client.jetstream(), create=True)
            assert kv is not None
            gap = LedgerGap(from_id=101, to_id=150, opened_ms=0)
            await write_entry(kv, LedgerEntry("BTCUSDT", watermark=100, last_id=400, updated_ms=0, gaps=(gap,)))

            async def gaps_shown() -> bool:
                reply, _ = await request(client, "tape.query.coverage.BTCUSDT", {})
                return bool(reply["ingest_gaps"])

            await wait_for(gaps_shown, 10, running=running)
            gets: list[str] = []

            async def count(msg: nats.aio.msg.Msg) -> None:
                gets.append(msg.subject)

            await client.subscribe("$JS.API.DIRECT.GET.KV_TAPE_INGEST_LEDGER.>", cb=count)
            await client.subscribe("$JS.API.STREAM.MSG.GET.KV_TAPE_INGEST_LEDGER", cb=count)
            await client.flush()
            started = time.monotonic()
            for _ in range(50):
                reply, _ = await request(client, "tape.query.coverage.BTCUSDT", {})
                assert [g["from_id"] for g in reply["ingest_gaps"]] == [101]
            await write_entry(kv, LedgerEntry("BTCUSDT", watermark=400, last_id=400, updated_ms=0))

            async def closed() -> bool:
                reply, _ = await request(client, "tape.query.coverage.BTCUSDT", {})
                return reply["ingest_gaps"] == []

            await wait_for(closed, 5, interval=0.01, running=running)  # within LEDGER_MAX_AGE_S of the write
            await client.flush()
            asked = time.monotonic() - started
            assert len(gets) <= 1 + asked / LEDGER_MAX_AGE_S, (gets, asked)  # the old code read once a query
        finally:
            await client.close()
