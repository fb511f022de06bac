"""The README's promise, as a user runs it: `tradetape up --simulate`, `tradetape query`, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)


def tradetape(*args: str, cwd: Path, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradetape.cli", *args],
        cwd=cwd,
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "NATS_URL" and not k.startswith("TRADETAPE_")}


@pytest.mark.slow
def test_up_simulate_then_query_from_another_terminal_then_ctrl_c(tmp_path: Path) -> None:
    env = clean_env()
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "tradetape.cli", "up", "--simulate"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        reply: dict[str, object] = {}
        while time.monotonic() < deadline:
            result = tradetape("query", "coverage", "BTCUSDT", "--json", cwd=tmp_path, env=env)
            if result.returncode == 0:
                reply = json.loads(result.stdout)
                if reply.get("trade_count") == 5000:
                    break
            time.sleep(0.5)
        assert reply.get("trade_count") == 5000, (tmp_path / "up.log").read_text()[-3000:]

        table = tradetape("query", "volume_profile", "BTCUSDT", "--last", "1h", cwd=tmp_path, env=env)
        assert table.returncode == 0, table.stderr
        assert "BTCUSDT volume profile" in table.stdout and "POC" in table.stdout
        assert "trades 5000" in table.stdout

        bad = tradetape("query", "volume_profile", "BTCUSDT", "--row-size", "-3", cwd=tmp_path, env=env)
        assert bad.returncode == 1 and "invalid_request" in bad.stderr

        url = (tmp_path / "data" / "nats.url").read_text().strip()
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        log.close()
    text = (tmp_path / "up.log").read_text()
    for service in ("ingest", "persist", "analytics"):
        assert f"service stopped service={service} exit_code=0" in text.replace('"', ""), text[-3000:]
    assert "nats-server stopped" in text
    assert not (tmp_path / "data" / "nats.url").exists()
    after = tradetape("query", "coverage", "BTCUSDT", "--nats-url", url, cwd=tmp_path, env=env)
    assert after.returncode == 2 and "cannot reach NATS" in after.stderr


@pytest.mark.slow
def test_schema_lists_the_api(tmp_path: Path) -> None:
    result = tradetape("schema", cwd=tmp_path, env=clean_env())
    assert result.returncode == 0
    assert "volume_profile" in json.loads(result.stdout)["methods"]


@pytest.mark.slow
def test_bad_settings_are_a_clear_error(tmp_path: Path) -> None:
    result = tradetape("persist", "--symbols", "BTC-USDT", cwd=tmp_path, env=clean_env())
    assert result.returncode == 2 and "letters and digits" in result.stderr
