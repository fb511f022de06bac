"""`tradetape status` run: the system on one screen (`--json` for scripts, `--watch N` to refresh).

Into a pipe or a file, `--watch` appends each screen whole (columns never cut), as `--json`
appends a line.

Exit codes: 0 when NATS answered, 2 when it could not be reached (the screen says so).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from rich.console import Console
from rich.live import Live

from tradetape.bus.connect import resolve_nats_url
from tradetape.cli.console import console_for_stdout
from tradetape.cli.status_screen import render
from tradetape.client import TapeClient, TapeUnavailable
from tradetape.ground.redaction import redact_url
from tradetape.settings import Settings
from tradetape.status import SystemStatus, collect_status, unreachable

EXIT_UNREACHABLE = 2


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    if args.watch is not None and args.watch <= 0:
        print("tradetape status: --watch needs a positive number of seconds", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        return asyncio.run(_watch(args, settings) if args.watch else _once(args, settings))
    except KeyboardInterrupt:
        return 0


async def read_status(settings: Settings) -> SystemStatus:
    """The status through a connection of its own; an unreachable server is a status too."""
    url = resolve_nats_url(settings)
    try:
        tape = await TapeClient.connect(settings, url=url)
    except TapeUnavailable as exc:
        return unreachable(redact_url(url), str(exc))
    async with tape:
        return await collect_status(tape.nc, settings, redact_url(url))


async def _once(args: argparse.Namespace, settings: Settings) -> int:
    status = await read_status(settings)
    if args.json:
        sys.stdout.write(status.model_dump_json(indent=2) + "\n")
    else:
        console_for_stdout().print(render(status))
    return 0 if status.nats.reachable else EXIT_UNREACHABLE


async def _watch(args: argparse.Namespace, settings: Settings) -> int:
    status = await read_status(settings)
    if args.json:  # one JSON document a line, for a pipe
        while True:
            sys.stdout.write(status.model_dump_json() + "\n")
            sys.stdout.flush()
            await asyncio.sleep(args.watch)
            status = await read_status(settings)
    if not sys.stdout.isatty():  # a pipe or a file: each screen in turn, whole (Live would print only the last)
        while True:
            console_for_stdout().print(render(status), "")
            sys.stdout.flush()
            await asyncio.sleep(args.watch)
            status = await read_status(settings)
    with Live(render(status), console=Console(), auto_refresh=False, screen=True) as live:
        while True:
            await asyncio.sleep(args.watch)
            status = await read_status(settings)
            live.update(render(status), refresh=True)
