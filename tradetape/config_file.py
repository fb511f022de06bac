"""The config file: `tradetape.toml` in the working directory, or the file `--config FILE` names.

It holds settings by their field names (`data_dir = "/var/lib/tradetape"`, `symbols = ["BTCUSDT"]`) and sits
below the environment and the CLI's options: the file keeps a machine's choices, the environment and the
options change them for one run. A key that is no setting is refused, so a typo never passes unnoticed.
`$TRADETAPE_CONFIG` names the file too (empty: none); `tradetape up` hands its children an empty one, as their
environment already carries every setting.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from tradetape.errors import ConfigError

CONFIG_FILE = Path("tradetape.toml")
CONFIG_ENV = "TRADETAPE_CONFIG"
MAX_CONFIG_BYTES = 1024**2
"""A settings file is a few kilobytes; anything near a mebibyte is not one and is not read further."""


class ConfigFileError(ConfigError, ValueError):
    """A config file that cannot be read, is no TOML, or holds a key that is no setting."""


def config_path(option: Path | None, environ: Mapping[str, str]) -> Path | None:
    """The file to read: the option's, else `$TRADETAPE_CONFIG` (empty: none), else ./tradetape.toml if present."""
    if option is not None:
        return option
    named = environ.get(CONFIG_ENV)
    if named is not None:
        return Path(named) if named.strip() else None
    return CONFIG_FILE if CONFIG_FILE.is_file() else None


def read_config(path: Path, settings: Collection[str]) -> dict[str, Any]:
    """The settings a TOML file sets, by field name; `ConfigFileError` naming the file for anything else."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigFileError(f"config file {path}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigFileError(f"config file {path}: larger than {MAX_CONFIG_BYTES} bytes, not a settings file")
    try:
        values = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigFileError(f"config file {path}: not TOML: {exc}") from exc
    unknown = sorted(key for key in values if key not in settings)
    if unknown:
        names = ", ".join(repr(key[:40]) for key in unknown[:5])
        raise ConfigFileError(
            f"config file {path}: {names} {'is no setting' if len(unknown) == 1 else 'are no settings'} "
            "(keys are the settings' field names, e.g. data_dir; `tradetape settings` lists them)"
        )
    tables = sorted(key for key, value in values.items() if isinstance(value, dict))
    if tables:
        raise ConfigFileError(f"config file {path}: {', '.join(tables)}: a setting is a value, not a table")
    return values
