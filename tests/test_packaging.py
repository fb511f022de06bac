"""The distribution holds one top-level package: the services install as `tradetape.services`.

Their sources stay in `services/`; `pyproject.toml` maps them there for the wheel and the link
`tradetape/services -> ../services` gives the source tree (tests, mypy, import-linter) the same name.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import tradetape.services

ROOT = Path(__file__).resolve().parents[1]


def test_source_tree_services_are_the_services_folder() -> None:
    assert [Path(entry).resolve() for entry in tradetape.services.__path__] == [ROOT / "services"]


@pytest.mark.slow
def test_wheel_holds_one_top_level_package(tmp_path: Path) -> None:
    """Built from a copy of what the Dockerfile copies, so setuptools' build directory stays out of the tree."""
    source, wheels = tmp_path / "source", tmp_path / "wheels"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("tradetape", "services"):
        shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--quiet", "--wheel-dir", str(wheels)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    [wheel] = wheels.glob("tradetape-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"tradetape"}
    for module in ("ingest/service.py", "persist/service.py", "analytics/service.py", "exchange/server.py"):
        assert f"tradetape/services/{module}" in names
    assert any(name.startswith("tradetape/services/exchange/data/") and name.endswith(".csv") for name in names)
    [top_level] = [name for name in names if name.endswith(".dist-info/top_level.txt")]
    assert zipfile.ZipFile(wheel).read(top_level).split() == [b"tradetape"]
