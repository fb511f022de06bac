"""`tradetape web`: serve the live page until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from tradetape.cli.options import add_settings
from tradetape.settings import Settings


def add_web_command(parser: argparse.ArgumentParser, settings_fields: Sequence[str]) -> None:

    add_settings(parser, settings_fields)


def run_web(args: argparse.Namespace, settings: Settings) -> int:
    """0 after a clean stop; 2 when the port is taken."""
    from tradetape.web.server import WebConfigError, WebServer, web_config

    try:
        config = web_config(settings)
    except WebConfigError as exc:  # the page shows it too; say it at the start
        print(f"tradetape web: warning: {exc}", file=sys.stderr)
        config = None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server = WebServer(settings)
        server.start()
    except OSError as exc:
        print(f"tradetape web: cannot listen on {settings.web_host}:{settings.web_port}: {exc}", file=sys.stderr)
        return 2
    try:
        nats = f" (NATS at {config.servers})" if config is not None else ""
        print(f"tradetape web: {server.url}{nats}", flush=True)
        stop.wait()
    finally:
        server.stop()
    return 0
