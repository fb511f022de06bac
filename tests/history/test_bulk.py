"""The bulk-import batch: read before it is trusted, refused for what its bytes do not prove."""

from __future__ import annotations

import contextlib
import tracemalloc

import numpy as np
import pytest

from tests.store.hostile import batch_body, hostile_batches, legal_trades, rle_frame, segment_body
from tradetape.binance.aggtrade import first_invalid
from tradetape.history.bulk import BATCH_TRADES, BatchFormatError, batches, decode_batch, encode_batch

HOSTILE = hostile_batches()
REFUSED = [name for name in HOSTILE if name != "quantities of 0"]


def peak_bytes_of_decoding(body: bytes) -> int:
    tracemalloc.start()
    try:
        with contextlib.suppress(BatchFormatError):
            decode_batch(body)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", REFUSED)
def test_a_batch_whose_claims_its_bytes_do_not_prove_is_refused_before_allocating(name: str) -> None:
    with pytest.raises(BatchFormatError):
        decode_batch(HOSTILE[name])
    assert peak_bytes_of_decoding(HOSTILE[name]) < 1_000_000, name


def test_a_batch_of_quantities_of_0_decodes_and_the_row_check_refuses_it() -> None:
    _, trades = decode_batch(HOSTILE["quantities of 0"])
    assert first_invalid(trades) == (0, "quantity must be positive")


def test_a_full_legal_batch_round_trips_and_one_more_trade_is_refused() -> None:
    trades = legal_trades(BATCH_TRADES, 1, 1_767_225_600_000)
    source, back = decode_batch(encode_batch("day.csv", trades))
    assert source == "day.csv"
    assert all(np.array_equal(a, b) for a, b in zip(back.arrays(), trades.arrays(), strict=True))
    n = BATCH_TRADES + 1
    with pytest.raises(BatchFormatError, match=f"{n} trades"):
        decode_batch(batch_body(segment_body(n, [1] * 6, rle_frame(6 * n, 6 * n))))


@pytest.mark.parametrize("n", [1, 999, 1000, 1001, 2000, 2001, 5000, 5499])
def test_batches_hold_at_most_the_limit_the_first_and_the_last_trades_first(n: int) -> None:
    trades = legal_trades(n, 1, 1_767_225_600_000)
    sent = list(batches(trades, 1000))
    assert all(len(batch) <= 1000 for batch in sent)
    assert sorted(np.concatenate([batch.agg_id for batch in sent]).tolist()) == trades.agg_id.tolist()
    assert {1, n} <= set(sent[0].agg_id.tolist())
