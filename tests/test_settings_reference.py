"""The settings reference in docs/operations.md is what the `Settings` model generates, never a hand-kept copy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tradetape.cli.settings import BEGIN, END, MarkersError, between_markers, generated_table, settings_markdown
from tradetape.settings import Settings

DOC = Path(__file__).parents[1] / "docs" / "operations.md"


def test_the_docs_table_is_the_one_the_model_generates() -> None:
    assert generated_table(DOC.read_text()) == settings_markdown(), (
        "docs/operations.md's settings table differs from tradetape/settings.py: "
        "run `tradetape settings --markdown --update docs/operations.md`"
    )


def test_the_table_has_every_setting_with_its_default_and_description() -> None:
    rows = settings_markdown().splitlines()[2:]
    assert len(rows) == len(Settings.model_fields)
    for row, (field, info) in zip(rows, Settings.model_fields.items(), strict=True):
        assert row.startswith(f"| `{Settings.env_name(field)}` |") and info.description, field
    assert "| `TRADETAPE_MCP_HOST` | `127.0.0.1` |" in settings_markdown()  # the hand-kept table had no mcp_host
    assert "| `TRADETAPE_STREAM_MAX_BYTES` | `8589934592` (8 GiB) |" in settings_markdown()
    assert "| `TRADETAPE_DATA_DIR` | `./data` |" in settings_markdown()
    assert "&lt;data dir>" in settings_markdown() and "<data dir>" not in settings_markdown()


@pytest.mark.slow
def test_update_rewrites_only_what_stands_between_the_markers(tmp_path: Path) -> None:
    doc = tmp_path / "ops.md"
    doc.write_text(f"# Ops\n\nbefore\n\n{BEGIN}\n| old, hand-kept | table |\n{END}\n\nafter\n")
    done = subprocess.run(
        [sys.executable, "-m", "tradetape.cli", "settings", "--markdown", "--update", str(doc)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    text = doc.read_text()
    assert text.startswith("# Ops\n\nbefore\n\n") and text.endswith(f"{END}\n\nafter\n") and "hand-kept" not in text
    assert generated_table(text) == settings_markdown()
    with pytest.raises(MarkersError):
        between_markers("no markers here", settings_markdown())
