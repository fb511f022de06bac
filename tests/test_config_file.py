"""The config file: `tradetape.toml` (or `--config FILE`) under the environment, under the CLI's options.

`tradetape settings` runs in this process (tests/cli_in_process.py): the whole command but the interpreter's start.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from tests.cli_in_process import Cli
from tradetape.config_file import CONFIG_ENV, MAX_CONFIG_BYTES, ConfigFileError
from tradetape.settings import Settings

pytestmark = pytest.mark.timeout(60)


def in_force(cli: Cli, cwd: Path, *args: str, **env: str) -> dict[str, object]:
    code, out, err = cli(cwd, "settings", *args, **env)
    assert code == 0, err
    return tomllib.loads(out)


def test_the_file_sets_the_environment_overrides_it_and_an_option_overrides_both(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "tradetape.toml").write_text('query_cache_mb = 5\nsymbols = ["solusdt", "BTCUSDT"]\nshard = "s1"\n')
    assert in_force(cli, tmp_path)["query_cache_mb"] == 5
    assert in_force(cli, tmp_path)["symbols"] == ["SOLUSDT", "BTCUSDT"]
    assert in_force(cli, tmp_path, TRADETAPE_QUERY_CACHE_MB="7")["query_cache_mb"] == 7
    overridden = in_force(cli, tmp_path, "--query-cache-mb", "9", TRADETAPE_QUERY_CACHE_MB="7")
    assert overridden["query_cache_mb"] == 9 and overridden["shard"] == "s1"
    # Without the file, the defaults.
    (tmp_path / "tradetape.toml").unlink()
    assert in_force(cli, tmp_path)["query_cache_mb"] == Settings.model_fields["query_cache_mb"].default


def test_config_names_another_file_instead_of_the_working_directorys(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "tradetape.toml").write_text("query_memory_mb = 100\nquery_cache_mb = 1\n")
    other = tmp_path / "elsewhere.toml"
    other.write_text('query_memory_mb = 200\nnats_url = "nats://127.0.0.1:1"\n')
    chosen = in_force(cli, tmp_path, "--config", str(other))
    assert chosen["query_memory_mb"] == 200 and chosen["query_cache_mb"] == 256
    assert chosen["nats_url"] == "nats://127.0.0.1:1"
    assert in_force(cli, tmp_path, **{CONFIG_ENV: str(other)})["query_memory_mb"] == 200
    assert in_force(cli, tmp_path, **{CONFIG_ENV: ""})["query_memory_mb"] == 256  # empty: no file at all


def test_what_settings_prints_is_a_config_file_that_gives_the_same_settings(tmp_path: Path, cli: Cli) -> None:
    asked = ("settings", "--symbols", "ETHUSDT", "--http-allowed-hosts", "tape.example.com")
    code, first, err = cli(tmp_path, *asked)
    assert code == 0, err
    (tmp_path / "tradetape.toml").write_text(first)
    assert cli(tmp_path, "settings")[1] == first


def test_a_file_that_is_no_settings_file_is_refused_naming_it(tmp_path: Path, cli: Cli) -> None:
    config = tmp_path / "tradetape.toml"
    for text, message in (
        ("nats_urll = 'nats://x'\n", "'nats_urll' is no setting"),
        ("[tradetape]\nshard = 'x'\n", "'tradetape' is no setting"),
        ("shard = \n", "not TOML"),
        ("query_cache_mb = 'lots'\n", "--query-cache-mb"),
    ):
        config.write_text(text)
        code, _, err = cli(tmp_path, "settings")
        assert code == 2 and message in err and "Traceback" not in err, err
        assert str(config.name) in err or message == "--query-cache-mb"
    code, _, err = cli(tmp_path, "settings", "--config", str(tmp_path / "absent.toml"))
    assert code == 2 and "absent.toml" in err
    config.write_bytes(b"#" * (MAX_CONFIG_BYTES + 10))
    with pytest.raises(ConfigFileError, match="larger than"):
        Settings.load(config)


def test_library_settings_read_the_file_too_but_children_of_up_only_their_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("TRADETAPE_") or k == "NATS_URL"]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tradetape.toml").write_text('nats_token = "from-the-working-directory"\n')
    assert Settings().nats_token is not None  # TapeClient.connect() builds these
    (tmp_path / "parent.toml").write_text("query_cache_mb = 3\n")
    parent = Settings.load(tmp_path / "parent.toml")  # `up --config parent.toml`: no token
    assert parent.nats_token is None and parent.query_cache_mb == 3
    # A child of `up` gets every setting from its environment and reads no file of its own.
    for key, value in parent.to_env().items():
        monkeypatch.setenv(key, value)
    assert Settings().nats_token is None
