from tradetape.store.keys import parse_window_key, window_key, window_key_range, window_start


def test_window_start_floors_to_the_second() -> None:
    assert window_start(1_767_225_600_039) == 1_767_225_600_000
    assert window_start(1_767_225_600_000) == 1_767_225_600_000
    assert window_start(999) == 0


def test_key_is_fixed_width_and_round_trips() -> None:
    key = window_key("BTCUSDT", 1_767_225_600_000)
    assert key == b"trades:BTCUSDT:1767225600000"
    assert window_key("BTCUSDT", 5_000) == b"trades:BTCUSDT:0000000005000"
    assert parse_window_key(key) == ("BTCUSDT", 1_767_225_600_000)


def test_byte_order_is_time_order() -> None:
    times = [0, 1_000, 9_000, 10_000, 999_999_000, 1_767_225_600_000, 9_999_999_999_000]
    keys = [window_key("ETHUSDT", t) for t in times]
    assert sorted(keys) == keys


def test_range_covers_exactly_the_windows_that_can_hold_the_trades() -> None:
    lower, upper = window_key_range("BTCUSDT", 1_500, 3_000)
    assert lower == window_key("BTCUSDT", 1_000)
    assert upper == window_key("BTCUSDT", 3_000)
    lower, upper = window_key_range("BTCUSDT", 1_500, 3_001)
    assert upper == window_key("BTCUSDT", 4_000)
