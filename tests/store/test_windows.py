from tradetape.domain.trade import TradeRow
from tradetape.store.windows import assemble_windows


def trade(agg_id: int, time: int) -> TradeRow:
    return TradeRow(agg_id, 1, 1, agg_id, agg_id, time, False)


def test_trades_fall_into_one_second_windows_by_trade_time_per_symbol() -> None:
    windows = assemble_windows(
        [
            ("BTCUSDT", trade(1, 1_999)),
            ("BTCUSDT", trade(2, 2_000)),
            ("ETHUSDT", trade(1, 2_500)),
            ("BTCUSDT", trade(3, 2_999)),
            ("BTCUSDT", trade(0, 1_000)),
        ]
    )
    assert {w: c.agg_id.tolist() for w, c in windows.items()} == {
        ("BTCUSDT", 1_000): [0, 1],
        ("BTCUSDT", 2_000): [2, 3],
        ("ETHUSDT", 2_000): [1],
    }


def test_a_redelivered_trade_in_one_batch_is_kept_once() -> None:
    windows = assemble_windows([("BTCUSDT", trade(5, 1_000)), ("BTCUSDT", trade(5, 1_000))])
    assert windows[("BTCUSDT", 1_000)].agg_id.tolist() == [5]


def test_empty_batch() -> None:
    assert assemble_windows([]) == {}
