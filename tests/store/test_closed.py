"""The store is closed: outside `tradetape/store/`, no code reaches past its face (`tradetape.store`).

Every module of the library and the services is read with `ast`: none may import rocksdict,
import a submodule of the store (at any depth, in a function too), take a writer's RocksDB
handle (its `db` attribute), or spell a store key (a string or bytes literal, or the start
of an f-string, that begins with a key prefix). Tests and benches may look inside; they are
not walked.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tradetape.store.keys import HISTOGRAM, INDEX, LAYOUT_KEY, RETAINED, ROLLED, SEGMENT, SUMMARY, VOID, WINDOW

ROOT = Path(__file__).resolve().parents[2]
WALKED = (ROOT / "tradetape", ROOT / "services")
STORE = ROOT / "tradetape" / "store"
SUBMODULES = {path.stem for path in STORE.glob("*.py") if path.stem != "__init__"}
KEY_PREFIXES = tuple(f"{kind}:" for kind in (WINDOW, SEGMENT, SUMMARY, HISTOGRAM, VOID, INDEX, ROLLED, RETAINED))
KEY_PREFIXES += (LAYOUT_KEY.decode(),)


def _modules() -> list[Path]:
    return sorted(path for root in WALKED for path in root.rglob("*.py") if STORE not in path.parents)


def _imported(node: ast.Import | ast.ImportFrom, where: Path) -> list[str]:
    """The dotted names a node imports (a name imported from a package counts as its submodule too)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = where.with_suffix("").parts[:-1]
        base = list(package[: len(package) - node.level + 1])
        module = ".".join([*base, *([node.module] if node.module else [])])
    else:
        module = node.module or ""
    return [module, *(f"{module}.{alias.name}" for alias in node.names)]


def _reaches_inside(name: str) -> bool:
    parts = name.split(".")
    if parts[0] == "rocksdict":
        return True
    return parts[:2] == ["tradetape", "store"] and len(parts) > 2 and parts[2] in SUBMODULES


def _spells_key(node: ast.AST) -> str | None:
    if isinstance(node, ast.JoinedStr) and node.values:
        return _spells_key(node.values[0])
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
        text = node.value.decode(errors="replace") if isinstance(node.value, bytes) else node.value
        return text if text.startswith(KEY_PREFIXES) else None
    return None


def violations(source: str, where: Path) -> list[str]:
    """What the module at `where` (relative to the repository) does that only the store may: ``file:line: what``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename=str(where))):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [name for name in _imported(node, where) if _reaches_inside(name)]
            found += [f"{where}:{node.lineno}: imports {name}" for name in names[:1]]
        elif isinstance(node, ast.Attribute) and node.attr == "db":
            found.append(f"{where}:{node.lineno}: takes a RocksDB handle (.db)")
        elif (key := _spells_key(node)) is not None:
            found.append(f"{where}:{node.lineno}: spells the store key {key!r}")
    return found


def test_nothing_outside_the_store_reaches_past_its_face() -> None:
    modules = _modules()
    assert len(modules) > 100 and ROOT / "services" / "persist" / "service.py" in modules
    found = [line for path in modules for line in violations(path.read_text(), path.relative_to(ROOT))]
    assert found == [], "\n".join(found)


def test_the_walk_sees_what_it_must_refuse() -> None:
    """Each kind of reach past the face is caught (the check above cannot pass by seeing nothing)."""
    where = Path("services/persist/probe.py")
    sources = {
        "import rocksdict\n": "imports rocksdict",
        "from rocksdict import Rdict\n": "imports rocksdict",
        "from tradetape.store.keys import index_key\n": "imports tradetape.store.keys",
        "from tradetape.store import writer\n": "imports tradetape.store.writer",
        "import tradetape.store.reader as r\n": "imports tradetape.store.reader",
        "def f():\n    from tradetape.store.rocks import scan\n": "imports tradetape.store.rocks",
        "KEY = b'index:BTCUSDT'\n": "spells the store key 'index:BTCUSDT'",
        "def k(s):\n    return f'seg:{s}:0'\n": "spells the store key 'seg:'",
        "LAYOUT = 'meta:layout'\n": "spells the store key 'meta:layout'",
        "def read(store):\n    return store.db.get(b'x')\n": "takes a RocksDB handle (.db)",
    }
    for source, expected in sources.items():
        assert any(expected in line for line in violations(source, where)), source
    tradetape_module = Path("tradetape/history/probe.py")
    relative = violations("from ..store import keys\n", tradetape_module)
    assert relative == [f"{tradetape_module}:1: imports tradetape.store.keys"]
    fine = "from tradetape.store import ShardWriter, window_start\nNAME = 'indexes are fine'\n"
    assert violations(fine, where) == []
