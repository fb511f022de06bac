"""`TapeClient`: queries, live queries and replay on one connection."""

from tradetape.client.live import LiveClient
from tradetape.client.replay import ReplayClient


class TapeClient(LiveClient, ReplayClient):
    """The client the CLI, the MCP server, tests and benches use: `query`, `served`, `live_profile`, `live_bars`,
    `live_trades` and `replay` (`tradetape.client`)."""
