"""What a trade file may be before it is refused, and the error that refuses it.

`FileLimits` bound a line, a file's (or zip member's inflated) bytes and a zip's entries
(`Settings.import_max_*`); `TimeBounds` the times its trades must lie in; `DumpError` names
the file, its line and why, for every reader of trade files.
"""

from __future__ import annotations

from dataclasses import dataclass

from tradetape.errors import InputError
from tradetape.settings import Settings


def _default(name: str) -> int:
    return int(Settings.model_fields[name].default)


@dataclass(frozen=True)
class FileLimits:
    """How much of a file is read before it is refused (`Settings.import_max_*`)."""

    max_line_bytes: int = _default("import_max_line_bytes")
    max_member_bytes: int = _default("import_max_member_bytes")
    """A CSV's bytes, a zip's CSV's inflated bytes, or a Parquet file's data uncompressed."""
    max_members: int = _default("import_max_members")

    @classmethod
    def of(cls, settings: Settings) -> FileLimits:
        return cls(settings.import_max_line_bytes, settings.import_max_member_bytes, settings.import_max_members)


@dataclass(frozen=True)
class TimeBounds:
    """``[start_ms, end_ms)``, the times a file's trades must lie in, and what says so (for the error)."""

    start_ms: int
    end_ms: int
    what: str


class DumpError(InputError):
    """A file that cannot be imported as it is: which file, which line (None: the whole file), why."""

    def __init__(self, source: str, reason: str, line: int | None = None) -> None:
        where = f"{source}, line {line}" if line is not None else source
        super().__init__(f"{where}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason


def limit_env(name: str) -> str:
    """The environment variable that raises a limit, for the error that names it."""
    return Settings.env_name(name)


def over_member(limits: FileLimits) -> str:
    return f"more than {limits.max_member_bytes} ({limit_env('import_max_member_bytes')})"
