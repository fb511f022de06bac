"""An iterator's bounds live as long as the walk: RocksDB reads them through pointers into the bytes it was given."""

from __future__ import annotations

from pathlib import Path

from tradetape.store.keys import prefix_end
from tradetape.store.rocks import open_primary, scan, walk


def test_a_walk_keeps_within_a_bound_made_for_it_while_memory_is_reused(tmp_path: Path) -> None:
    db = open_primary(tmp_path / "db")
    try:
        for i in range(50):
            db[b"trades:%03d" % i] = b"window"
            db[b"wsum:%03d" % i] = b"summary"
        walked = []
        for it in walk(db, b"trades:", prefix_end(b"trades:")):  # the upper bound: a temporary of 7 bytes
            walked.append(it.key())
            # bytes of the same size, as a decoder's work between two keys makes: they took the freed bound's place
            churn = [bytes([0x7A] * 6) + bytes([i % 7]) for i in range(1000)]
            assert churn
        assert walked == [b"trades:%03d" % i for i in range(50)]
        assert len(scan(db, b"wsum:", prefix_end(b"wsum:"))) == 50
    finally:
        db.close()
