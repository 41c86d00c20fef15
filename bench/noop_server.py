"""The SDK's latency floor: an MCP server with one tool that does nothing.

`bench.py` drives it in-memory (`build_noop_server()`), as a stdio subprocess
(``python bench/noop_server.py``; with ``pipes``, on stdin and stdout as agentbus serves them,
`mcp_agentbus.server.stdio`) and over streamable HTTP (``python bench/noop_server.py http PORT
[json]``), next to the agentbus server on the same transport. With ``NOOP_REDIS_URL`` set it also has
a tool ``ping`` that makes one Redis PING through a client configured as the bus's: the floor of a tool
that does one round trip (bench.py, server_cpu.py).
"""

from __future__ import annotations

import logging
import os
import sys

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from mcp_agentbus.redis.connection import Redis, connect
from mcp_agentbus.server.stdio import stdio_streams

# As `mcp_agentbus.server.http` builds its app: loopback Host and Origin checks, stateful sessions (legacy
# clients get an Mcp-Session-Id), SSE responses (the SDK's default, json_response=False), /healthz.
LOOPBACK_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*")


async def noop() -> dict[str, int]:
    """Do nothing."""
    return {"ok": 1}


def build_noop_server(redis: Redis | None = None) -> MCPServer:
    """The no-op server; with `redis`, also the tool ``ping``."""
    # async, like the agentbus tools (a sync tool would run in a worker thread);
    # WARNING, like agentbus' default log level (the SDK's default is INFO).
    server = MCPServer("noop", log_level="WARNING")
    server.add_tool(noop, structured_output=True)
    if redis is not None:

        async def ping() -> dict[str, int]:
            """One Redis PING."""
            await redis.ping()
            return {"ok": 1}

        server.add_tool(ping, structured_output=True)
    return server


def redis_from_env() -> Redis | None:
    """A client configured as the bus's for NOOP_REDIS_URL (it lives as long as the process), if set."""
    url = os.environ.get("NOOP_REDIS_URL")
    return None if url is None else connect(url)


async def healthz(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def build_noop_http_app(json_response: bool = False) -> Starlette:
    security = TransportSecuritySettings(
        allowed_hosts=list(LOOPBACK_HOSTS),
        allowed_origins=[f"{scheme}://{h}" for h in LOOPBACK_HOSTS for scheme in ("http", "https")],
    )
    app = build_noop_server(redis_from_env()).streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=False,
        transport_security=security,
        json_response=json_response,
    )
    app.add_route("/healthz", healthz, methods=["GET"])
    return app


def serve_http(port: int, json_response: bool = False) -> None:
    """Serve at http://127.0.0.1:PORT/mcp with uvicorn configured as `agentbus serve --transport http`
    (with `json_response`: as `agentbus serve --transport http --json-responses`)."""
    import uvicorn

    logging.basicConfig(stream=sys.stderr, level="WARNING")
    config = uvicorn.Config(
        build_noop_http_app(json_response), host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    uvicorn.Server(config).run()


async def serve_pipes(server: MCPServer) -> None:
    """Serve on stdin and stdout as `agentbus serve` does (AgentBusServer.run_stdio_async)."""
    async with stdio_streams() as (read_stream, write_stream):
        lowlevel = server._lowlevel_server
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        serve_http(int(sys.argv[2]), sys.argv[3:4] == ["json"])
    elif sys.argv[1:2] == ["pipes"]:
        anyio.run(serve_pipes, build_noop_server(redis_from_env()))
    else:
        build_noop_server(redis_from_env()).run("stdio")
