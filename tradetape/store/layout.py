"""The database's layout record (format version, segment span), as the writer and every reader read it.

The writer records it when it creates or migrates a database (`tradetape.store.writer`);
readers take the segment span from it and refuse a database of an older format, which
its writer migrates when it opens it (`tradetape.store.migration`). The layout itself is
described in `tradetape.store.segments`.
"""

from __future__ import annotations

from rocksdict import Rdict

from tradetape.store.keys import LAYOUT_KEY
from tradetape.store.meta import decode_layout
from tradetape.store.rocks import StoreError
from tradetape.store.sealed import decoded
from tradetape.store.segments import FORMAT_VERSION, READABLE_FORMATS, SEGMENT_MS


class StoreLayoutError(StoreError):
    """The database was written with another format version or segment span (readers: one not migrated yet)."""


def read_layout(db: Rdict) -> tuple[int, int] | None:
    """The database's format version and segment span, or None before the first write."""
    value = db.get(LAYOUT_KEY)
    if value is None:
        return None
    return decoded(LAYOUT_KEY, value, decode_layout)


def segment_span(db: Rdict) -> int:
    """The database's segment span; `StoreLayoutError` for a database of an older format, not migrated yet."""
    return readable_layout(db)[1]


def readable_layout(db: Rdict) -> tuple[int, int]:
    """The database's format version and segment span (format 1 without a layout record: a database before its
    first write, or of format 1); `StoreLayoutError` for a database of an older format, not migrated yet.

    Formats 3 to 6 are read as well: their writer is upgrading them (`tradetape.store.migration`), and the reads
    decode the trades of a segment that has no layer yet, and the windows where they have no summary.
    """
    layout = read_layout(db)
    if layout is None:
        return 1, SEGMENT_MS
    version, span = layout
    if version not in READABLE_FORMATS:
        raise StoreLayoutError(
            f"the store holds format {version}; its writer (persist, or an import) migrates it to format"
            f" {FORMAT_VERSION} when it opens it, and until then it is not read"
        )
    return version, span
