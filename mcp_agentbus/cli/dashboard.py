"""`agentbus dashboard`: the web dashboard of one or more namespaces, on 127.0.0.1 only, without an MCP
server."""

from __future__ import annotations

import logging
import sys
import threading
import webbrowser
from typing import Any

import click

from mcp_agentbus.cli.common import fail
from mcp_agentbus.cli.status import view_settings
from mcp_agentbus.ids import NAMESPACE_RE

OPEN_DELAY = 1.0  # seconds: the browser is opened once the server is likely listening
GRACE_SECONDS = 1  # on Ctrl-C, open pages' streams are cut this soon: nothing else is in flight for long


@click.command()
@click.option("--port", type=int, default=8766, show_default=True, help="Port on 127.0.0.1.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in your browser.")
@click.option("--redis-url", help="[env: AGENTBUS_REDIS_URL; default: your local bus]")
@click.option(
    "--namespace",
    help="A namespace, or several comma-separated (the page then has a picker; the first is shown "
    "first). [env: AGENTBUS_NAMESPACE]",
)
def dashboard(port: int, open_browser: bool, namespace: str | None, **flags: Any) -> None:
    """A live web page of the bus (agents, workflows and their tasks, queues, locks, events) at
    http://127.0.0.1:PORT/, until Ctrl-C. `serve --transport http` serves the same page beside /mcp."""
    from mcp_agentbus.server.dashboard import dashboard_app
    from mcp_agentbus.server.http import serve

    names = [n.strip() for n in (namespace or "").split(",") if n.strip()]
    bad = [n for n in names if not NAMESPACE_RE.match(n)]
    if bad:
        fail(f"--namespace: {bad[0]!r} is not a namespace (letters, digits, '.', '_', '-'; up to 64)")
    settings = view_settings({**flags, "namespace": names[0] if names else None})
    logging.basicConfig(
        stream=sys.stderr, level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    url = f"http://127.0.0.1:{port}/"
    shown = ", ".join(dict.fromkeys([settings.namespace, *names]))
    click.echo(f"agentbus dashboard of namespace {shown}: {url}", err=True)
    if open_browser:
        threading.Timer(OPEN_DELAY, webbrowser.open, [url]).start()
    app = dashboard_app(settings, also=names[1:])
    if not serve(app, "127.0.0.1", port, settings, grace_seconds=GRACE_SECONDS):
        fail(f"the dashboard did not start on port {port} (the lines above say why: another --port?)")
