"""Where the CLI finds how to show a reply: `tradetape.cli.renderers`, by the method's name, else the reply's JSON."""

from __future__ import annotations

import importlib
import io
import pkgutil
import subprocess
import sys

import pytest
from pydantic import BaseModel
from rich.console import Console, RenderableType

from tradetape.api.registry import methods
from tradetape.cli import renderers
from tradetape.cli.query import PIPE_WIDTH
from tradetape.cli.renderers import renderer, reply_json


def shown(renderable: RenderableType, width: int) -> str:
    out = io.StringIO()
    Console(file=out, width=width, no_color=True, highlight=False).print(renderable)
    return out.getvalue()


def test_each_renderer_module_is_named_for_a_method_and_is_what_the_cli_finds() -> None:
    """A renderer module whose name is no method's would never be found: the CLI would print JSON instead."""
    modules = [info.name for info in pkgutil.iter_modules(renderers.__path__)]
    assert {"bars", "coverage", "volume_profile"} <= set(modules)
    for name in modules:
        assert name in methods(), f"tradetape/cli/renderers/{name}.py renders no registered method"
        assert renderer(name) is importlib.import_module(f"tradetape.cli.renderers.{name}").render


class UnrenderedReply(BaseModel):
    symbol: str
    note: str
    rows: list[int]


def test_a_method_without_a_renderer_shows_its_reply_as_the_indented_json() -> None:
    reply = UnrenderedReply(symbol="BTCUSDT", note="[bold]kept as written[/bold] " + "x" * 120, rows=[1, 2])
    assert renderer("no_renderer_for_this") is reply_json
    json = reply.model_dump_json(indent=2)
    assert shown(renderer("no_renderer_for_this")(reply), PIPE_WIDTH) == json + "\n"  # piped: what --json prints
    in_a_terminal = shown(renderer("no_renderer_for_this")(reply), 40)
    assert "".join(in_a_terminal.split()) == "".join(json.split())  # wrapped at the width, nothing cut


def test_a_name_that_is_no_module_name_is_never_imported() -> None:
    for name in ("bars.render", "../bars", "", "bars "):
        assert renderer(name) is reply_json, name


@pytest.mark.slow
def test_the_analytics_service_and_every_method_load_no_terminal_library() -> None:
    """The method modules used to carry their renderers, so the analytics process imported rich."""
    probe = (
        "import sys\n"
        "import tradetape.services.analytics.service\n"
        "from tradetape.api.registry import methods\n"
        "assert methods()\n"
        "print(sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
