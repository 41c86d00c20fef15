"""OpenTelemetry spans of MCP requests (`server/tracing.py`): while no tracer provider is installed
the SDK's middleware is skipped; once one is, the SDK's spans are made, also when it is installed after
the server was built. Each case runs in a process of its own: a provider is set once per process."""

from __future__ import annotations

import json
import sys

from helpers.commands import run

# A server on the embedded store and a client in one process: a heartbeat, then (with a provider
# installed if argv[1] says so) another; prints the names of the spans the provider was asked for and
# how many requests the SDK's OpenTelemetry middleware handled.
SCRIPT = """
import json, sys
import anyio
from mcp import Client
from mcp.server._otel import OpenTelemetryMiddleware
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN_CONTEXT, NonRecordingSpan, Tracer, TracerProvider, use_span
from mcp_agentbus.server.app import build_server
from mcp_agentbus.settings import Settings

names = []
runs = []
sdk_middleware = OpenTelemetryMiddleware.__call__

async def counted(self, ctx, call_next):
    runs.append(ctx.method)
    return await sdk_middleware(self, ctx, call_next)

OpenTelemetryMiddleware.__call__ = counted

class Recording(Tracer):
    def start_span(self, name, *args, **kwargs):
        names.append(name)
        return NonRecordingSpan(INVALID_SPAN_CONTEXT)

    def start_as_current_span(self, name, *args, end_on_exit=True, **kwargs):
        return use_span(self.start_span(name), end_on_exit=end_on_exit)

class Provider(TracerProvider):
    def get_tracer(self, *args, **kwargs):
        return Recording()

async def main():
    server = build_server(Settings(redis_url="memory://", agent="a1", namespace="traced"))
    async with Client(server) as client:
        first = await client.call_tool("heartbeat", {})
        if sys.argv[1] == "install":
            trace.set_tracer_provider(Provider())
        second = await client.call_tool("heartbeat", {})
    print(json.dumps({"names": names, "runs": runs, "errors": [first.is_error, second.is_error]}))

anyio.run(main)
"""


def spans(provider: str) -> dict[str, list[object]]:
    proc = run([sys.executable, "-c", SCRIPT, provider])
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    result: dict[str, list[object]] = json.loads(proc.stdout)
    return result


def test_a_server_built_before_a_tracer_provider_is_installed_traces_the_calls_after_it() -> None:
    traced = spans("install")
    assert traced["errors"] == [False, False]
    assert traced["runs"] == ["tools/call"]  # the second call only
    assert traced["names"] == ["tools/call heartbeat"]  # the SDK's span, as it names it


def test_without_a_tracer_provider_the_sdks_tracing_middleware_is_skipped() -> None:
    untraced = spans("none")
    assert untraced["errors"] == [False, False]
    assert untraced["runs"] == []
    assert untraced["names"] == []
