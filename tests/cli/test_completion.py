"""`tradetape completion bash|zsh|fish`: the scripts name every command, and the shells complete with them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tradetape.api.registry import methods
from tradetape.cli.completion import command_tree
from tradetape.cli.main import build_parser

pytestmark = pytest.mark.timeout(60)

COMMANDS = [command.path[-1] for command in command_tree(build_parser()).commands]


def script(shell: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tradetape.cli", "completion", shell], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_script_names_every_command_and_method(shell: str) -> None:
    text = script(shell)
    assert {"up", "query", "status", "settings", "completion", "fetch-history"} <= set(COMMANDS)
    for name in (*COMMANDS, *methods()):
        assert name in text, name
    options = ("-l config", "-l data-dir") if shell == "fish" else ("--config", "--data-dir")
    assert all(option in text for option in options)


def bash_complete(script_file: Path, *words: str) -> list[str]:
    """What bash offers at the end of `words` (the last one being typed), through the script's function."""
    line = " ".join(f"'{word}'" for word in words)
    program = f"source {script_file}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _tradetape; "
    program += 'printf "%s\\n" "${COMPREPLY[@]}"'
    done = subprocess.run(["bash", "--norc", "-c", program], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.slow
def test_bash_completes_commands_methods_options_and_choices(tmp_path: Path) -> None:
    file = tmp_path / "tradetape.bash"
    file.write_text(script("bash"))
    assert bash_complete(file, "tradetape", "q") == ["query"]
    assert bash_complete(file, "tradetape", "query", "vol") == ["volume_profile"]
    assert bash_complete(file, "tradetape", "query", "volume_profile", "BTCUSDT", "--la") == ["--last"]
    assert bash_complete(file, "tradetape", "exchange", "--rest-error", "") == ["503", "429", "418", "html"]
    assert bash_complete(file, "tradetape", "plot", "") == ["volume_profile", "bars", "footprint", "market_profile"]
    assert "--config" in bash_complete(file, "tradetape", "up", "--con")
    # An option's value is skipped, even when it looks like a command.
    assert bash_complete(file, "tradetape", "query", "bars", "--data-dir", "query", "--js") == ["--json"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completes_with_descriptions(tmp_path: Path) -> None:
    file = tmp_path / "tradetape.fish"
    file.write_text(script("fish"))

    def complete(line: str) -> list[str]:
        done = subprocess.run(
            ["fish", "--no-config", "-c", f"source {file}; complete -C '{line}'"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "HOME": str(tmp_path)},
        )
        assert done.returncode == 0, done.stderr
        return [row.split("\t")[0] for row in done.stdout.splitlines()]

    assert complete("tradetape q") == ["query"]
    assert complete("tradetape query vol") == ["volume_profile"]
    assert "--last" in complete("tradetape query volume_profile BTCUSDT --la")
    assert sorted(complete("tradetape completion ")) == ["bash", "fish", "zsh"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_registers_the_completion(tmp_path: Path) -> None:
    file = tmp_path / "tradetape.zsh"
    file.write_text(script("zsh"))
    program = (
        f"autoload -U compinit && compinit -u -D; source {file}; print -r -- $_comps[tradetape]; setopt ksharrays; "
        "COMP_WORDS=(tradetape query vol); COMP_CWORD=2; _tradetape; print -r -- ${COMPREPLY[@]}"
    )
    env = {**os.environ, "HOME": str(tmp_path)}
    done = subprocess.run(["zsh", "-f", "-c", program], capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    registered, offered = done.stdout.splitlines()
    assert registered == "_bash_complete -o default -F _tradetape"
    assert "volume_profile" in offered.split()  # zsh filters by the typed prefix itself


@pytest.mark.slow
def test_bash_completes_after_an_instrument_name_that_bash_splits_at_its_colon(tmp_path: Path) -> None:
    """Bash's COMP_WORDBREAKS holds `:`, so `um:BTCUSDT` arrives as three words: none may shift what follows."""
    file = tmp_path / "tradetape.bash"
    file.write_text(script("bash"))
    assert bash_complete(file, "tradetape", "query", "volume_profile", "um", ":", "BTCUSDT", "--la") == ["--last"]
    assert bash_complete(file, "tradetape", "export", "cm", ":", "BTCUSD_PERP", "--out") == ["--output"]
    assert "--rollup-age-s" in bash_complete(file, "tradetape", "persist", "--symbols", "ALL,um", ":", "ALL", "--ro")
