"""Every service command exits 0 promptly on SIGTERM, whenever it comes: while starting, just after it serves, under
load (tests/stop_fuzz.py; CI once saw analytics hang a minute on a SIGTERM 0.3 s after it served)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.stop_fuzz import COMMANDS, MOMENTS, stop_once

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.mark.parametrize("command", COMMANDS)
async def test_a_sigterm_at_any_moment_stops_the_command_cleanly_and_promptly(command: str, tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    serve_s: dict[str, float] = {}
    for moment in MOMENTS:
        workdir = tmp_path / moment
        workdir.mkdir()
        outcome = await stop_once(command, moment, rng, workdir, serve_s)
        assert outcome.clean, f"seed {seed}: {outcome.line()}\n{outcome.log}"
