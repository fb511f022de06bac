"""tradetape: a complete, gap-free tape of Binance aggregate trades, and queries over NATS.

The library every service and user shares: `domain` (trades, exact decimals, columns,
profile rules), `bus` (subjects, message codec, streams, dead letters, connecting),
`store` (the RocksDB layout), `api` (the query methods' registry), `client` (the
Python client), `runtime` (embedded nats-server, supervisor, logs) and `cli`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tradetape")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
