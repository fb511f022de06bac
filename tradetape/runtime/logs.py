"""Structured logging: one line per event, `key=value` fields after the message.

Services log with `logger.info("event", extra={...})`; only the CLI and the tests call
`configure_logging`.
"""

from __future__ import annotations

import logging
import sys
import time

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"{stamp}.{int(record.msecs):03d}Z",
            record.levelname.lower(),
            record.name,
            _quote(record.getMessage()),
        ]
        parts += [f"{key}={_quote(value)}" for key, value in vars(record).items() if key not in _STANDARD]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _quote(value: object) -> str:
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("nats").setLevel(logging.WARNING)


class ProgressLog:
    """Periodic counters, logged per key only when they changed since the last line."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._last: dict[str, dict[str, object]] = {}

    def log(self, event: str, key: str, fields: dict[str, object], *, force: bool = False) -> None:
        if force or self._last.get(key) != fields:
            self._last[key] = dict(fields)
            self._logger.info(event, extra=fields)
