"""OpenTelemetry spans of MCP requests, made only while an OpenTelemetry SDK is installed.

The SDK wraps every request in its `OpenTelemetryMiddleware`, which builds the span's attributes and
enters a span and a context even when nothing records them: 5 % of the instructions of an in-memory
heartbeat (callgrind). `SpansWhenTraced` asks OpenTelemetry first, on each request, so a process that
installs a tracer provider (``trace.set_tracer_provider``, as ``opentelemetry-instrument`` does at start,
or in code before or after the server starts) gets the SDK's spans, unchanged, and every other process
skips them. The SDK (2.3) exports its middleware from ``mcp.server._otel`` only, and documents dropping it
from ``Server.middleware`` as the way to opt out.
"""

from __future__ import annotations

from typing import Any

from mcp.server import Server
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from opentelemetry.trace import ProxyTracerProvider, get_tracer_provider


class SpansWhenTraced:
    """The SDK's OpenTelemetry middleware, skipped while no tracer provider is installed (the API's
    proxy provider records nothing)."""

    def __init__(self) -> None:
        self._spans = OpenTelemetryMiddleware()

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if isinstance(get_tracer_provider(), ProxyTracerProvider):
            return await call_next(ctx)
        return await self._spans(ctx, call_next)


def trace_when_traced(server: Server[Any]) -> None:
    """Put `SpansWhenTraced` where `server` has the SDK's OpenTelemetry middleware."""
    server.middleware = [
        SpansWhenTraced() if isinstance(m, OpenTelemetryMiddleware) else m for m in server.middleware
    ]
