import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tradetape.domain.gaps import find_gaps
from tradetape.domain.id_runs import IdRuns
from tradetape.store.index import decode_runs, encode_runs

id_sets = st.sets(st.integers(0, 300), max_size=80)


def ids(values: set[int]) -> np.ndarray:  # type: ignore[type-arg]
    return np.array(sorted(values), dtype=np.int64)


@given(id_sets, id_sets)
def test_adding_ids_keeps_exactly_their_union_as_maximal_runs(first: set[int], second: set[int]) -> None:
    runs = IdRuns.of_ids(ids(first)).add(ids(second))
    held = {i for lo, hi in zip(runs.low.tolist(), runs.high.tolist(), strict=True) for i in range(lo, hi + 1)}
    assert held == first | second
    assert runs.count == len(first | second)
    assert all(runs.low[1:] > runs.high[:-1] + 1)  # disjoint, not adjacent: maximal
    assert runs.gaps() == find_gaps(ids(first | second))


@given(id_sets, st.lists(st.integers(-5, 305), max_size=40))
def test_contains_answers_per_id(held: set[int], probe: list[int]) -> None:
    runs = IdRuns.of_ids(ids(held))
    assert runs.contains(np.array(probe, dtype=np.int64)).tolist() == [p in held for p in probe]


@given(id_sets, st.integers(0, 300), st.integers(0, 300))
def test_clip_keeps_the_ids_inside_the_bounds(held: set[int], low: int, high: int) -> None:
    runs = IdRuns.of_ids(ids(held)).clip(low, high)
    assert runs.count == len({i for i in held if low <= i <= high})


def test_index_value_round_trips() -> None:
    runs = IdRuns.of_ids(np.array([1, 2, 3, 7, 9, 10], dtype=np.int64))
    decoded = decode_runs(encode_runs(runs))
    assert decoded.low.tolist() == [1, 7, 9] and decoded.high.tolist() == [3, 7, 10]
    assert decode_runs(None).count == 0
