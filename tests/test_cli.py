"""Two answers of the command line that need no running tape: the API's schema, and settings it refuses.

The README's own promise, `tradetape up --simulate` then `tradetape query` from another terminal, is
tests/test_docs.py's (on the `up --simulate` its snippets share); Ctrl-C's is tests/runtime/test_up.py's.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli_in_process import Cli


def test_schema_lists_the_api(tmp_path: Path, cli: Cli) -> None:
    code, out, _ = cli(tmp_path, "schema")
    assert code == 0
    assert "volume_profile" in json.loads(out)["methods"]


def test_bad_settings_are_a_clear_error(tmp_path: Path, cli: Cli) -> None:
    code, _, err = cli(tmp_path, "persist", "--symbols", "BTC-USDT")
    assert code == 2 and "letters and digits" in err
