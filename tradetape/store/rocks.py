"""Opening a shard's RocksDB: the one set of options every writer and reader uses.

Raw mode (byte keys and values) is passed on every open: rocksdict does not detect it.
"""

from __future__ import annotations

from pathlib import Path

from rocksdict import DBCompressionType, Options, Rdict


class StoreNotFoundError(FileNotFoundError):
    """No database exists yet in the shard directory (persist has not written it)."""


def store_options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_compression_type(DBCompressionType.zstd())
    options.set_max_background_jobs(2)
    options.set_keep_log_file_num(3)
    return options


def open_primary(path: Path) -> Rdict:
    path.mkdir(parents=True, exist_ok=True)
    return Rdict(str(path), store_options())
