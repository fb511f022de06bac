"""The config file: `tradetape.toml` (or `--config FILE`) under the environment, under the CLI's options."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tradetape.config_file import CONFIG_ENV, MAX_CONFIG_BYTES, ConfigFileError
from tradetape.settings import Settings

pytestmark = pytest.mark.timeout(60)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL" and not k.startswith("TRADETAPE_")}
    return {**env, **extra}


def tradetape(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradetape.cli", *args],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
    )


def in_force(cwd: Path, *args: str, **env: str) -> dict[str, object]:
    done = tradetape(cwd, "settings", *args, **env)
    assert done.returncode == 0, done.stderr
    return tomllib.loads(done.stdout)


@pytest.mark.slow
def test_the_file_sets_the_environment_overrides_it_and_an_option_overrides_both(tmp_path: Path) -> None:
    (tmp_path / "tradetape.toml").write_text('query_cache_mb = 5\nsymbols = ["solusdt", "BTCUSDT"]\nshard = "s1"\n')
    assert in_force(tmp_path)["query_cache_mb"] == 5
    assert in_force(tmp_path)["symbols"] == ["SOLUSDT", "BTCUSDT"]
    assert in_force(tmp_path, TRADETAPE_QUERY_CACHE_MB="7")["query_cache_mb"] == 7
    overridden = in_force(tmp_path, "--query-cache-mb", "9", TRADETAPE_QUERY_CACHE_MB="7")
    assert overridden["query_cache_mb"] == 9 and overridden["shard"] == "s1"
    # Without the file, the defaults.
    (tmp_path / "tradetape.toml").unlink()
    assert in_force(tmp_path)["query_cache_mb"] == Settings.model_fields["query_cache_mb"].default


@pytest.mark.slow
def test_config_names_another_file_instead_of_the_working_directorys(tmp_path: Path) -> None:
    (tmp_path / "tradetape.toml").write_text("query_memory_mb = 100\nquery_cache_mb = 1\n")
    other = tmp_path / "elsewhere.toml"
    other.write_text('query_memory_mb = 200\nnats_url = "nats://127.0.0.1:1"\n')
    chosen = in_force(tmp_path, "--config", str(other))
    assert chosen["query_memory_mb"] == 200 and chosen["query_cache_mb"] == 256
    assert chosen["nats_url"] == "nats://127.0.0.1:1"
    assert in_force(tmp_path, **{CONFIG_ENV: str(other)})["query_memory_mb"] == 200
    assert in_force(tmp_path, **{CONFIG_ENV: ""})["query_memory_mb"] == 256  # empty: no file at all


@pytest.mark.slow
def test_what_settings_prints_is_a_config_file_that_gives_the_same_settings(tmp_path: Path) -> None:
    first = tradetape(tmp_path, "settings", "--symbols", "ETHUSDT", "--http-allowed-hosts", "tape.example.com")
    assert first.returncode == 0, first.stderr
    (tmp_path / "tradetape.toml").write_text(first.stdout)
    assert tradetape(tmp_path, "settings").stdout == first.stdout


@pytest.mark.slow
def test_a_file_that_is_no_settings_file_is_refused_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "tradetape.toml"
    for text, message in (
        ("nats_urll = 'nats://x'\n", "'nats_urll' is no setting"),
        ("[tradetape]\nshard = 'x'\n", "'tradetape' is no setting"),
        ("shard = \n", "not TOML"),
        ("query_cache_mb = 'lots'\n", "--query-cache-mb"),
    ):
        config.write_text(text)
        done = tradetape(tmp_path, "settings")
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert str(config.name) in done.stderr or message == "--query-cache-mb"
    missing = tradetape(tmp_path, "settings", "--config", str(tmp_path / "absent.toml"))
    assert missing.returncode == 2 and "absent.toml" in missing.stderr
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
