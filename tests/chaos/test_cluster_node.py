"""Chaos: one node of a 3-node NATS cluster is lost mid-stream.

The system on a real 3-node cluster (streams, consumers and the gap ledger with three
replicas): the trades stream's leader is moved to the node ingest is connected to, and
that node is stopped while the exchange trades. Ingest, persist and the analytics
replicas carry on through the two nodes left; the invariant then holds. (The scale-out
test in `tests/cluster/` covers shards and replicas; this is the fault alone, kept short.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.chaos.fuzz import QueryFuzzer
from tests.chaos.invariant import check_invariant, coverage
from tests.chaos.system import System
from tests.cluster.test_scale_out import stream_leader_on
from tests.harness import wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

PROGRESS = 150
"""Agg ids every symbol must gain after the node stopped (2.5 s at the rate)."""


async def test_a_lost_cluster_node_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    async with System(tmp_path, cluster=True) as system:
        assert system.settings is not None
        async with QueryFuzzer(system.cluster.url, system.symbols) as fuzz:
            node_index = await asyncio.to_thread(system.cluster.node_of_client, "tradetape-ingest")
            assert node_index is not None
            node = system.cluster.names[node_index]
            await wait_for(lambda: stream_leader_on(system.nats, node), 20, interval=0.5)
            before = {s: (await coverage(system.nats, s))["last_id"] for s in system.symbols}
            system.cluster.stop_node(node_index)
            print(f"[cluster node lost] stopped {node} (the stream leader and ingest's server), tape at {before}")

            async def carried_on() -> bool:
                replies = [await coverage(system.nats, s) for s in system.symbols]
                return all(r.get("last_id", 0) > before[r["symbol"]] + PROGRESS for r in replies)

            await wait_for(carried_on, 60, interval=0.5)
            system.check_alive()
            await check_invariant(
                system.nats, system.rest_url, system.settings.shard_dir, system.first_ids, "cluster node lost"
            )
        fuzz.assert_sound()
