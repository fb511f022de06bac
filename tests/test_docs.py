"""Every snippet of README.md and docs/ runs as pasted, against a real `tradetape up --simulate` in a temp dir.

`sh` blocks run in bash (`-e -o pipefail`: every line must succeed), `python` blocks with the venv's `python`,
`$ ` lines of a transcript (a block without a language) as commands that must fail exactly when the output shown
is an error line. A plain `tradetape ...` line (no shell syntax but a trailing comment) runs in this process as
tests/cli_in_process.py runs it: the same argv in the tape's directory, all but the interpreter's start; an `sh`
block of such lines alone runs them so, each to exit 0; any other line and block in bash.
`toml` blocks must load as a config file, `json` blocks parse. A block after
`<!-- skip: reason -->` is not run, one after `<!-- needs: PROGRAM -->` only where PROGRAM is installed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli_in_process import Cli
from tests.harness import coverage_in
from tradetape.settings import Settings

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"sh", "bash", "python", "toml", "json", ""}
SHOWN_ONLY = {"yaml"}
DIRECTIVE = re.compile(r"^<!-- (skip|needs): (.*?) -->$")
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
SERVER = re.compile(
    r"(^|[;&|(]\s*|\s)(tradetape (up|web|mcp|exchange|ingest|persist|analytics)\b|docker compose|bench/run)"
)
ERROR_LINE = re.compile(r"^tradetape( [\w-]+)?: ")
SHELL_SYNTAX = re.compile(r"[|&;<>()$`*?\[\]{}~!#\\\n]")
"""A word of a command with any of these (after quotes and comments) needs the shell: such a command runs in bash."""


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    text: str
    skip: str | None
    needs: str | None

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}:{self.lang or 'transcript'}"


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, each with the directive on the line before it."""
    found: list[Block] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        indent, lang = fence.groups()
        end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "```")
        body = "\n".join(line.removeprefix(indent) for line in lines[index + 1 : end]) + "\n"
        before = next((lines[i].strip() for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        directive = DIRECTIVE.match(before)
        skip = directive.group(2) if directive and directive.group(1) == "skip" else None
        needs = directive.group(2) if directive and directive.group(1) == "needs" else None
        found.append(Block(path, index + 1, lang, body, skip, needs))
        index = end + 1
    return found


ALL_BLOCKS = [block for path in DOC_FILES for block in blocks(path)]
RUNNABLE = [block for block in ALL_BLOCKS if block.lang in RUN and (block.lang or "$ " in block.text)]


def test_every_block_is_in_a_language_the_docs_test_knows() -> None:
    assert len(RUNNABLE) >= 15, [block.name for block in RUNNABLE]
    unknown = [block.name for block in ALL_BLOCKS if block.lang not in RUN | SHOWN_ONLY]
    assert not unknown, f"add the language to RUN (and run it) or to SHOWN_ONLY: {unknown}"
    assert all(block.skip is None or block.skip.strip() for block in ALL_BLOCKS)


def test_blocks_that_start_servers_say_so() -> None:
    """A command that starts a server or runs long would hang the test: such a block carries a skip directive."""
    unmarked = [
        block.name
        for block in RUNNABLE
        if block.skip is None and block.lang in {"sh", "bash", ""} and SERVER.search(commands_of(block))
    ]
    assert not unmarked, unmarked


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but `-` and `_` dropped, spaces as `-`."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def test_every_link_between_the_docs_leads_somewhere() -> None:
    broken = []
    for path in DOC_FILES:
        text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+://", target):
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists() or (anchor and anchor not in anchors(linked)):
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert not broken, broken


def commands_of(block: Block) -> str:
    if block.lang:
        return block.text
    return "\n".join(line[2:] for line in block.text.splitlines() if line.startswith("$ "))


@dataclass(frozen=True)
class Tape:
    directory: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def tape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tape]:
    """`tradetape up --simulate` in a fresh directory whose `.venv` is this one, as the quick start leaves it."""
    directory = tmp_path_factory.mktemp("docs")
    (directory / ".venv").symlink_to(sys.prefix)
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL" and not k.startswith("TRADETAPE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MPLCONFIGDIR"] = str(directory / ".matplotlib")
    log = (directory / "up.log").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "tradetape.cli", "up", "--simulate"],
        cwd=directory,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        stored = 0
        while stored != 5000 and time.monotonic() < deadline and up.poll() is None:
            stored = (coverage_in(directory / "data", "BTCUSDT") or {}).get("trade_count", 0)
            time.sleep(0.5)
        assert stored == 5000, (directory / "up.log").read_text()[-3000:]
        yield Tape(directory, env)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
        log.close()


def run(tape: Tape, argv: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=tape.directory, env=tape.env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_quick_start_s_query_shows_the_replayed_tape_and_a_refused_request_is_one_line(
    tape: Tape, cli: Cli
) -> None:
    """Before any snippet: what the README's first query prints (its transcript is checked for the exit code
    alone), and a request the method refuses. Ctrl-C's promise is tests/runtime/test_up.py's."""
    code, out, err = cli(tape.directory, "query", "volume_profile", "BTCUSDT", "--last", "1h")
    assert code == 0, err
    assert "BTCUSDT volume profile" in out and "POC" in out and "trades 5000" in out
    code, _, err = cli(tape.directory, "query", "volume_profile", "BTCUSDT", "--row-size", "-3")
    assert code == 1 and "invalid_request" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("block", RUNNABLE, ids=[block.name for block in RUNNABLE])
def test_snippet_runs_as_pasted(block: Block, tape: Tape, cli: Cli) -> None:
    if block.skip is not None:
        pytest.skip(block.skip)
    if block.needs is not None and shutil.which(block.needs) is None:
        pytest.skip(f"{block.needs} is not installed")
    commands = [plain_tradetape(line) for line in block.text.splitlines() if line.strip()]
    if block.lang in ("sh", "bash") and all(commands):  # every line `tradetape ...`: each must exit 0, as in bash -e
        for argv in commands:
            assert argv is not None
            code, out, err = cli(tape.directory, *argv[1:])
            assert code == 0, f"{block.name}\n{shlex.join(argv)}\nstdout:\n{out}\nstderr:\n{err}"
    elif block.lang in ("sh", "bash"):
        done = run(tape, ["bash", "-e", "-o", "pipefail", "-c", block.text])
        assert done.returncode == 0, f"{block.name}\n{block.text}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    elif block.lang == "python":
        script = tape.directory / f"snippet_{block.path.stem}_{block.line}.py"
        script.write_text(block.text)
        done = run(tape, ["python", script.name], timeout=120)
        assert done.returncode == 0, f"{block.name}\n{block.text}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    elif block.lang == "toml":
        config = tape.directory / f"config_{block.path.stem}_{block.line}.toml"
        config.write_text(block.text)
        Settings.load(config)
    elif block.lang == "json":
        json.loads(block.text)
    else:
        transcript(block, tape, cli)


def transcript(block: Block, tape: Tape, cli: Cli) -> None:
    """Each `$ ` command of a transcript; it must fail exactly when the line shown after it is an error line."""
    lines = block.text.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith("$ "):
            continue
        shown = lines[index + 1] if index + 1 < len(lines) else ""
        done = run_line(tape, cli, line[2:])
        said = f"{block.name}: {line}\nstdout:\n{done.stdout[-2000:]}\nstderr:\n{done.stderr[-2000:]}"
        if ERROR_LINE.match(shown):
            assert done.returncode != 0 and done.stderr.startswith(shown.split(": ", 1)[0]), said
        else:
            assert done.returncode == 0, said


def plain_tradetape(command: str) -> list[str] | None:
    """The words of a `tradetape ...` line that bash would pass as they are (a trailing comment dropped), else None."""
    try:
        argv = shlex.split(command, comments=True)
    except ValueError:
        return None
    plain = argv[:1] == ["tradetape"] and not any(SHELL_SYNTAX.search(word) for word in argv)
    return argv if plain else None


def run_line(tape: Tape, cli: Cli, command: str) -> subprocess.CompletedProcess[str]:
    """A transcript's command: a plain `tradetape ...` in this process, any other in bash."""
    argv = plain_tradetape(command)
    if argv is None:
        return run(tape, ["bash", "-c", command])
    code, out, err = cli(tape.directory, *argv[1:])
    return subprocess.CompletedProcess(argv, code, out, err)
