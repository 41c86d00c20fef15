"""`agentbus dashboard`: the web dashboard of one namespace, on 127.0.0.1 only, without an MCP server."""

from __future__ import annotations

import logging
import sys
import threading
import webbrowser
from typing import Any

import click

from mcp_agentbus.cli.status import view_settings

OPEN_DELAY = 1.0  # seconds: the browser is opened once the server is likely listening


@click.command()
@click.option("--port", type=int, default=8766, show_default=True, help="Port on 127.0.0.1.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in your browser.")
@click.option("--redis-url", help="[env: AGENTBUS_REDIS_URL; default: your local bus]")
@click.option("--namespace", help="[env: AGENTBUS_NAMESPACE]")
def dashboard(port: int, open_browser: bool, **flags: Any) -> None:
    """A live, read-only web page of the bus (agents, workflows and their tasks, queues, locks, events)
    at http://127.0.0.1:PORT/, until Ctrl-C. `serve --transport http` serves the same page beside /mcp."""
    from mcp_agentbus.server.dashboard import dashboard_app
    from mcp_agentbus.server.http import serve

    settings = view_settings(flags)
    logging.basicConfig(
        stream=sys.stderr, level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    url = f"http://127.0.0.1:{port}/"
    click.echo(f"agentbus dashboard of namespace {settings.namespace}: {url}", err=True)
    if open_browser:
        threading.Timer(OPEN_DELAY, webbrowser.open, [url]).start()
    serve(dashboard_app(settings), "127.0.0.1", port, settings)
