"""The range limit of queries and replays, said exactly (before: 31 d + 1 ms read "spans 31.0 days; at most 31")."""

from __future__ import annotations

import pytest

from tradetape.api.errors import QueryError, check_range_span

DAY_MS = 86_400_000


@pytest.mark.parametrize("max_days", [31, 2, 0.5])
def test_a_range_of_the_limit_passes_and_one_a_millisecond_longer_says_by_how_much(max_days: float) -> None:
    limit = int(max_days * DAY_MS)
    check_range_span(1_000, 1_000 + limit, max_days)
    with pytest.raises(QueryError) as refused:
        check_range_span(1_000, 1_000 + limit + 1, max_days)
    assert refused.value.code == "range_too_large" and refused.value.status == 413
    assert f"1 ms more than the {max_days:g} days ({limit:,} ms) allowed" in refused.value.message
    assert refused.value.details == {"start": 1_000, "end": 1_000 + limit + 1, "max_days": max_days}
