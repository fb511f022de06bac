"""Scale-out on a real 3-node NATS cluster, every part a separate process.

Three nats-server nodes routed on loopback (JetStream on each, the streams, consumers and
ledger with 3 replicas); the simulator generating four symbols; two persist shards
splitting them; two analytics replicas per shard; one ingest; every client given all
three URLs. Queries for each symbol are answered by its shard's replicas; a `kill -9`
of a replica leaves its twin answering; stopping the stream leader's node mid-stream
loses nothing: afterwards each shard holds every agg id of the simulator's history
between the first and the last ingest saw, once, with the simulator's trade times.
"""

from __future__ import annotations

import asyncio
import signal
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from nats.aio.client import Client

from tests.cluster.topology import NatsCluster, agg_trades_url, child_env, start_exchange
from tests.harness import request, wait_for
from tests.processes import ServiceProcesses
from tradetape.binance.aggtrade import parse_trade
from tradetape.bus.ledger import open_gaps
from tradetape.bus.provision import ensure_streams
from tradetape.bus.served import read_served
from tradetape.bus.subjects import TRADES_STREAM
from tradetape.domain.columns import TradeColumns
from tradetape.runtime.metrics import discover
from tradetape.settings import Settings, shard_of
from tradetape.status import collect_status
from tradetape.store.reader import SecondaryStore
from tradetape.store.reads import read_all_trades

pytestmark = pytest.mark.timeout(150)

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT")
SHARDS = ("s0", "s1")
RATE = "100"
PROGRESS = 300
"""Agg ids per symbol that must be stored after the node stopped (3 s at the rate)."""


def owner(symbol: str) -> str:
    return SHARDS[shard_of(symbol, len(SHARDS))]


def exchange_history(rest_url: str, symbol: str, first: int, last: int) -> TradeColumns:
    """The simulator's trades `first..last` from its REST API, through the shared parser."""
    rows = []
    from_id = first
    while from_id <= last:
        url = agg_trades_url(rest_url, symbol, fromId=from_id, limit=1000)
        with urllib.request.urlopen(url, timeout=10) as response:
            page = orjson.loads(response.read())
        assert page, f"the simulator has no trades of {symbol} from {from_id}"
        rows += [parse_trade(obj) for obj in page if obj["a"] <= last]
        from_id = page[-1]["a"] + 1
    return TradeColumns.from_rows(rows)


def stored_trades(settings: Settings, shard: str, symbol: str) -> TradeColumns:
    """What the shard's RocksDB holds, read raw (a trade stored twice would show twice)."""
    store = SecondaryStore(settings.data_dir / "shards" / shard)
    try:
        return read_all_trades(store.catch_up(), symbol)
    finally:
        store.close()


async def coverage(client: Client, symbol: str, timeout: float = 5.0) -> dict[str, Any]:
    reply, _ = await request(client, f"tape.query.coverage.{symbol}", {}, timeout=timeout)
    return reply


async def stream_leader_on(client: Client, node: str) -> bool:
    """Whether the trades stream's leader is `node`; if not, ask the leader to step down in its favour."""
    info = await client.jetstream().stream_info(TRADES_STREAM)
    if info.cluster is not None and info.cluster.leader == node:
        return True
    body = orjson.dumps({"placement": {"preferred": node}})
    await client.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{TRADES_STREAM}", body, timeout=5)
    return False


async def all_answer(client: Client, symbols: tuple[str, ...], times: int) -> list[dict[str, Any]]:
    return [await coverage(client, symbol) for _ in range(times) for symbol in symbols]


@pytest.mark.slow
async def test_shards_replicas_and_a_lost_nats_node(tmp_path: Path, processes: ServiceProcesses) -> None:
    async with NatsCluster(tmp_path / "nats") as cluster:
        settings = Settings(
            nats_url=cluster.url, data_dir=tmp_path / "data", symbols=SYMBOLS, stream_replicas=3, rollup_age_s=2
        )
        client = await nats.connect(cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        try:
            await _run(settings, cluster, client, processes, tmp_path)
        finally:
            await client.close()
            processes.stop_all()


async def _run(
    settings: Settings, cluster: NatsCluster, client: Client, processes: ServiceProcesses, tmp_path: Path
) -> None:
    js = client.jetstream()
    await ensure_streams(js, settings)
    ws_url, rest_url = start_exchange(processes, child_env(settings), tmp_path / "exchange.json", "--rate", RATE)
    settings = Settings(**{**settings.model_dump(), "binance_ws_url": ws_url, "binance_rest_url": rest_url})
    analytics: dict[str, list[Any]] = {shard: [] for shard in SHARDS}
    for index, shard in enumerate(SHARDS):
        env = child_env(settings, shard=shard, shard_count=len(SHARDS), shard_index=index)
        processes.start(["persist"], env)
        analytics[shard] = [processes.start(["analytics"], env) for _ in range(2)]
    ingest = processes.start(["ingest"], child_env(settings))

    async def every_symbol_stored() -> bool:
        replies = [await coverage(client, symbol) for symbol in SYMBOLS]
        return all(r.get("trade_count", 0) >= 20 for r in replies)

    await wait_for(every_symbol_stored, 60, interval=0.5)
    assert (await js.stream_info(TRADES_STREAM)).config.num_replicas == 3

    expected = {"tradetape-analytics": 4, "tradetape-persist": 2, "tradetape-ingest": 1}
    found: list[dict[str, Any]] = []

    async def every_instance_up() -> bool:
        # a worker serves once its shard's store record is read, which a fresh R3 bucket answers late
        found[:] = await discover(client, "INFO", wait=1.0)
        return Counter(info["name"] for info in found) == expected

    await wait_for(every_instance_up, 30, interval=0.5)
    infos = found
    instances = Counter(info["name"] for info in infos)
    assert instances == expected
    served = await read_served(js)
    for shard in SHARDS:
        assert set(served[shard].symbols) == {s for s in SYMBOLS if owner(s) == shard}

    before: Counter[str] = Counter()
    for stats in await discover(client, "STATS", "tradetape-analytics", wait=1.0):
        shard = next(i["metadata"]["shard"] for i in infos if i["id"] == stats["id"])
        before[shard] += next(e["num_requests"] for e in stats["endpoints"] if e["name"] == "coverage")
    await all_answer(client, SYMBOLS, 5)
    answered: Counter[str] = Counter()
    for stats in await discover(client, "STATS", "tradetape-analytics", wait=1.0):
        shard = next(i["metadata"]["shard"] for i in infos if i["id"] == stats["id"])
        answered[shard] += next(e["num_requests"] for e in stats["endpoints"] if e["name"] == "coverage")
    for shard in SHARDS:  # each shard answered exactly its own symbols' queries
        assert answered[shard] - before[shard] == 5 * sum(1 for s in SYMBOLS if owner(s) == shard)

    victim = analytics["s1"][0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    s1_symbols = tuple(s for s in SYMBOLS if owner(s) == "s1")
    replies = await all_answer(client, s1_symbols, 10)
    assert all(r["trade_count"] > 0 for r in replies)

    ingest_node = await asyncio.to_thread(cluster.node_of_client, "tradetape-ingest")
    assert ingest_node is not None
    node = cluster.names[ingest_node]
    await wait_for(lambda: stream_leader_on(client, node), 15, interval=0.5)
    before_stop = {symbol: (await coverage(client, symbol))["last_id"] for symbol in SYMBOLS}
    cluster.stop_node(ingest_node)  # the stream's leader, ingest's server and whichever clients are on it

    async def carried_on() -> bool:
        replies = [await coverage(client, symbol) for symbol in SYMBOLS]
        return all(r.get("last_id", 0) > before_stop[r["symbol"]] + PROGRESS for r in replies)

    await wait_for(carried_on, 45, interval=0.5)
    assert ingest.poll() is None, "ingest died with the NATS node"
    status = await collect_status(client, settings, cluster.url)
    assert status.stream is not None and status.stream.replicas == 3
    assert status.stream.leader != node and status.stream.replicas_current < 2  # the stopped node is not current
    assert Counter(s.name for s in status.services) == {
        "tradetape-analytics": 3, "tradetape-persist": 2, "tradetape-ingest": 1
    }
    assert {row.symbol: row.shard for row in status.symbols} == {symbol: owner(symbol) for symbol in SYMBOLS}
    assert all(row.trade_count for row in status.symbols)  # mid-stream: a re-sent publish may still be a hole

    ingest.send_signal(signal.SIGTERM)
    assert ingest.wait(30) == 0
    persist_consumers = [f"persist-{shard}" for shard in SHARDS]

    async def drained() -> bool:
        for durable in persist_consumers:
            info = await js.consumer_info(TRADES_STREAM, durable)
            if info.num_pending or info.num_ack_pending:
                return False
        replies = [await coverage(client, symbol) for symbol in SYMBOLS]
        return all(not r["gaps"] and r["trade_count"] == r["last_id"] - r["first_id"] + 1 for r in replies)

    await wait_for(drained, 30, interval=0.5)
    for symbol in SYMBOLS:
        reply = await coverage(client, symbol)
        stored = stored_trades(settings, owner(symbol), symbol)
        expected = exchange_history(rest_url, symbol, reply["first_id"], reply["last_id"])
        assert stored.agg_id.tolist() == list(range(reply["first_id"], reply["last_id"] + 1))
        assert stored.agg_id.tolist() == expected.agg_id.tolist()
        assert stored.time.tolist() == expected.time.tolist()
        assert stored.price.tolist() == expected.price.tolist()
        assert reply["last_id"] > before_stop[symbol] + PROGRESS
        assert await open_gaps(js, symbol) == []  # the R3 ledger, written through the two nodes left
        other = next(s for s in SHARDS if s != owner(symbol))
        assert len(stored_trades(settings, other, symbol)) == 0
