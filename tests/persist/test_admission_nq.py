"""Persist's admission with USD-M's `nq`: a copy differs only where both copies carry one, and what is admitted
keeps it (the rows of a batch were 7 wide before `nq` was stored)."""

from __future__ import annotations

from pathlib import Path

from tradetape.domain.trade import NO_NORMAL_QTY, TradeRow
from tradetape.services.persist.admission import CONFLICT, vet
from tradetape.store.windows import assemble_windows
from tradetape.store.writer import ShardWriter

UM = "um:BTCUSDT"
T = 1_767_225_600_000


def row(agg_id: int, normal: int = NO_NORMAL_QTY) -> TradeRow:
    return TradeRow(agg_id, 10_000 * 10**8, 5 * 10**8, agg_id, agg_id, T + agg_id, False, normal)


def test_a_copy_differs_in_nq_only_where_both_copies_have_one(tmp_path: Path) -> None:
    store = ShardWriter(tmp_path / "shard")
    try:
        batch = [(UM, row(1, 4 * 10**8)), (UM, row(1)), (UM, row(2, 3 * 10**8)), (UM, row(2, 2 * 10**8))]
        vetting = vet(store, batch, max_jump=1000)
        assert [(r.index, r.kind) for r in vetting.refusals] == [(3, CONFLICT)]
        store.write(assemble_windows(batch[:1] + batch[2:3]))
        other = assemble_windows([(UM, row(1, 4 * 10**8 - 1))])
        held = store.tape.differences(UM, next(iter(other.values())))
        assert [what for _, what in held] == ["with another quantity without RPI orders (nq)"]
        again = vet(store, [(UM, row(1)), (UM, row(2, 3 * 10**8)), (UM, row(2, 1))], max_jump=1000)
        assert [(r.index, r.kind) for r in again.refusals] == [(2, CONFLICT)], "a copy without nq is the same trade"
        stored = store.tape.trades(UM, T, T + 10)
        assert stored.normal_qty is not None and stored.normal_qty.tolist() == [4 * 10**8, 3 * 10**8]
    finally:
        store.close()
