"""Structured logging: one line per event, `key=value` fields after the message, or one JSON object.

Services log with `logger.info("event", extra={...})`; only the CLI and the tests call
`configure_logging`. The default line is for people (`kv`); `json` (`TRADETAPE_LOG_FORMAT=json`)
is one object a line with `time`, `level`, `logger`, `message`, the event's fields (numbers
stay numbers) and `exception`, for Loki or Elasticsearch. Either way every URL in a line
has its user info masked (`tradetape.bus.auth.redact_url`), whoever logged it.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Literal

import orjson

from tradetape.ground.redaction import redact_url

LogFormat = Literal["kv", "json"]
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _timestamp(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The event's own fields: what the call passed in `extra`."""
    return {key: value for key, value in vars(record).items() if key not in _STANDARD}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname.lower(), record.name, _quote(record.getMessage())]
        parts += [f"{key}={_quote(value)}" for key, value in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact_url(line)


class JsonFormatter(logging.Formatter):
    """One JSON object a line; a field named like a standard key is kept as `field.<name>`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_url(record.getMessage()),
        }
        for key, value in _fields(record).items():
            line[f"field.{key}" if key in line else key] = redact_url(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = redact_url(self.formatException(record.exc_info))
        return orjson.dumps(line, default=_redacted_text, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _redacted_text(value: object) -> str:
    """What JSON cannot hold natively (paths, exceptions, ...) as redacted text."""
    return redact_url(str(value))


def _quote(value: object) -> str:
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


def configure_logging(level: str = "INFO", log_format: LogFormat = "kv") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else KeyValueFormatter())
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
