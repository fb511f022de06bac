"""The service commands load no terminal renderer: rich is for what the CLI draws, not for what it serves.

`tradetape analytics` (and ingest, persist, exchange, up) imported some 54 rich modules while it built
its parser, because the modules declaring `query`, `status` and the history commands also drew them.
Each probe runs in a fresh interpreter, so what it lists is what that command alone loaded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import nats
import pytest

from tests.harness import wait_for
from tests.processes import service_env
from tradetape.bus.subjects import micro_subject
from tradetape.settings import Settings

LOADED_RICH = "sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.'))"
SERVICE_COMMANDS = (("up", "--simulate"), ("ingest",), ("persist",), ("analytics",), ("exchange", "--port", "0"))


def probe(code: str, env: dict[str, str] | None = None) -> object:
    """What the last line `code` prints, as JSON, from a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False, env=env
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow
def test_building_the_parser_and_parsing_each_service_command_loads_no_rich() -> None:
    parsed = probe(
        "import json, sys\n"
        "from tradetape.cli.main import build_parser\n"
        "parser = build_parser()\n"
        f"commands = [parser.parse_args(list(argv)).command for argv in {SERVICE_COMMANDS!r}]\n"
        f"print(json.dumps([commands, {LOADED_RICH}]))\n"
    )
    assert parsed == [[argv[0] for argv in SERVICE_COMMANDS], []]


LOADED_METHODS = "sorted(m for m in sys.modules if m.startswith(('tradetape.api.methods', 'polars')))"


@pytest.mark.slow
def test_only_query_and_completion_declare_the_query_methods() -> None:
    """`tradetape --help`, `settings` or `up` spent half their start importing every method's request model (and
    polars with them) to declare `query`'s sub-commands, which they never parse."""
    loaded = probe(
        "import contextlib, io, json, sys\n"
        "from tradetape.cli.main import main\n"
        "seen = []\n"
        "for argv in (['--help'], ['settings'], ['query', 'vwap', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
        f"    seen.append({LOADED_METHODS})\n"
        "print(json.dumps(seen))\n",
        env={k: v for k, v in os.environ.items() if k != "NATS_URL" and not k.startswith("TRADETAPE_")},
    )
    assert isinstance(loaded, list) and loaded[:2] == [[], []], loaded[:2]
    assert "tradetape.api.methods.vwap" in loaded[2] and "polars" in loaded[2]


@pytest.mark.slow
def test_each_service_commands_help_loads_no_rich() -> None:
    helped = probe(
        "import contextlib, io, json, sys\n"
        "from tradetape.cli.main import main\n"
        "shown = []\n"
        f"for argv in {SERVICE_COMMANDS!r}:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "        main([argv[0], '--help'])\n"
        "    shown.append(out.getvalue().startswith(f'usage: tradetape {argv[0]}'))\n"
        f"print(json.dumps([shown, {LOADED_RICH}]))\n"
    )
    assert helped == [[True] * len(SERVICE_COMMANDS), []]


@pytest.mark.slow
@pytest.mark.parametrize("service", ["analytics", "persist"])
async def test_a_service_run_by_the_cli_serves_and_stops_without_loading_rich(
    service: str, nats_url: str, tmp_path: Path
) -> None:
    """The whole command: parse, settings, logging, the service answering on NATS, SIGTERM, exit 0."""
    settings = Settings(nats_url=nats_url, data_dir=tmp_path / "data", symbols=("BTCUSDT",))
    code = (
        "import json, sys\n"
        "from tradetape.cli.main import main\n"
        f"code = main([{service!r}])\n"
        f"print(json.dumps([code, {LOADED_RICH}]))\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        env=service_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    client = await nats.connect(nats_url)
    try:
        await wait_for(lambda: client.request(micro_subject("PING", f"tradetape-{service}"), b"", timeout=2), 60)
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=60)
    finally:
        await client.close()
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    assert json.loads(out.splitlines()[-1]) == [0, []], err
