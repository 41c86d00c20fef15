"""The SDK's latency floor: an MCP server with one tool that does nothing.

`bench.py` drives it in-memory (`build_noop_server()`) and as a stdio subprocess
(``python bench/noop_server.py``), next to the agentbus server on the same transport.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer


async def noop() -> dict[str, int]:
    """Do nothing."""
    return {"ok": 1}


def build_noop_server() -> MCPServer:
    # async, like the agentbus tools (a sync tool would run in a worker thread);
    # WARNING, like agentbus' default log level (the SDK's default is INFO).
    server = MCPServer("noop", log_level="WARNING")
    server.add_tool(noop, structured_output=True)
    return server


if __name__ == "__main__":
    build_noop_server().run("stdio")
