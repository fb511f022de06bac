"""A read's values decoded on two threads: the same values in the same order, a corrupt one named whichever thread met
it, and no read waiting behind another read's share (`tradetape.store.decoding`)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.store.synthetic import same, tape
from tradetape.store.decoding import decoded_all
from tradetape.store.sealed import StoreCorruptError
from tradetape.store.segments import decode_stored_segment, encode_stored_segment


def stored(count: int) -> list[tuple[bytes, bytes]]:
    return [(f"seg:{i}".encode(), encode_stored_segment(tape(500 + i, 60_000, seed=i))) for i in range(count)]


@pytest.mark.parametrize("count", [0, 1, 2, 5, 12])
def test_values_decode_as_one_by_one_in_their_order(count: int) -> None:
    items = stored(count)
    found = decoded_all(items, decode_stored_segment)
    assert len(found) == count
    assert all(same(got, decode_stored_segment(value)) for got, (_, value) in zip(found, items, strict=True))


@pytest.mark.parametrize("at", [0, 3, 5], ids=["the reading thread's half", "the helper's half", "the last"])
def test_a_corrupt_value_is_named_whichever_thread_decodes_it(at: int) -> None:
    items = stored(6)
    key, value = items[at]
    items[at] = (key, value[:-7] + bytes(7))
    with pytest.raises(StoreCorruptError) as raised:
        decoded_all(items, decode_stored_segment)
    assert raised.value.key == key


def test_a_read_does_not_wait_for_the_helper_busy_with_another_read() -> None:
    """The helper is held by a value that decodes only once released; a second read still finishes on its own."""
    release = threading.Event()
    items = stored(4)

    def held(value: bytes) -> object:
        assert release.wait(30)
        return decode_stored_segment(value)

    with ThreadPoolExecutor(1) as other:
        blocking = other.submit(decoded_all, [items[0], items[1]], held)  # its second value goes to the helper
        try:
            found = decoded_all(items, decode_stored_segment)  # the helper is busy: this read decodes all itself
            assert len(found) == 4 and not blocking.done()
        finally:
            release.set()
        assert len(blocking.result(timeout=30)) == 2
