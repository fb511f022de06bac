"""How the CLI shows each method's reply: one module a method, named like it, holding `render(reply)`.

The query API carries no terminal renderer (the analytics process loads no `rich`), so the
renderer is found here by the method's name, as the registry finds method modules: adding a
method is `tradetape/api/methods/<name>.py` and `tradetape/cli/renderers/<name>.py`, with no
table to edit. A method with no renderer module yet is shown as its reply's JSON, indented
(what `--json` prints), so a new method never breaks `tradetape query`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable

from pydantic import BaseModel
from rich.console import RenderableType
from rich.text import Text

Renderer = Callable[[BaseModel], RenderableType]


def renderer(method_name: str) -> Renderer:
    """`render` of the module named `method_name` in this package; the indented JSON when there is none."""
    module_name = f"{__name__}.{method_name}"
    if not method_name.isidentifier() or importlib.util.find_spec(module_name) is None:
        return reply_json
    render: Renderer = importlib.import_module(module_name).render
    return render


def reply_json(reply: BaseModel) -> RenderableType:
    """The reply as `--json` prints it, no markup read in its strings (into a pipe exactly; a terminal wraps it)."""
    return Text(reply.model_dump_json(indent=2))
