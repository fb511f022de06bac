"""URL files: where a running server or simulator leaves the URL its clients connect to.

Written atomically and readable by the owner only (the URL may carry a user and password); removed
only by the one that wrote them.
"""

from __future__ import annotations

from pathlib import Path

from tradetape.ground.private_files import write_private_file


def read_url_file(path: Path) -> str | None:
    try:
        url = path.read_text().strip()
    except OSError:
        return None
    return url or None


def write_url_file(path: Path, url: str) -> None:
    """Write atomically and readable by its owner only: the URL may carry a user and password."""
    write_private_file(path, url + "\n")


def remove_url_file(path: Path, url: str) -> bool:
    """Remove `path` only if it still names `url`: another `up` may have written its own since."""
    if read_url_file(path) != url:
        return False
    path.unlink(missing_ok=True)
    return True
