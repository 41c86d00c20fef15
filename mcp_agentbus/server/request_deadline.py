"""A deadline on each HTTP request: a connection whose request (headers and body) has not all arrived
`timeout` seconds after it began is closed. uvicorn times out only idle kept-alive connections, so a
client that sent half a request would otherwise hold its connection (and a task) forever.

One mixin on each of uvicorn's HTTP/1.1 protocols: h11 (always installed) and httptools (with the
``fast`` extra, which also brings uvloop: about a fifth less server CPU per call, ``bench/server_cpu.py``).
`protocol` picks the one installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)


class _Deadline:
    """The timer; the protocol arms it when a request begins and disarms it when all of it arrived."""

    timeout: ClassVar[float] = 15.0
    _deadline: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    client: Any

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            logger.info(
                "closed a connection from %s: no whole request within %g s", self.client, self.timeout
            )
            self.transport.close()


class H11Deadline(_Deadline, H11Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request on a kept-alive connection begins
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()  # all of it arrived (or the connection is done with)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def protocol(timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's fastest HTTP/1.1 protocol installed, with a `timeout`-second request deadline."""
    base: type[asyncio.Protocol] = _httptools_deadline() if has_httptools() else H11Deadline
    return type(base.__name__, (base,), {"timeout": timeout})


def has_httptools() -> bool:
    return importlib.util.find_spec("httptools") is not None


def _httptools_deadline() -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # needs httptools

    class HttpToolsDeadline(_Deadline, HttpToolsProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._arm()

        def on_message_begin(self) -> None:
            if self._deadline is None:
                self._arm()  # the next request on a kept-alive connection begins
            super().on_message_begin()

        def on_message_complete(self) -> None:
            self._disarm()  # all of it arrived
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HttpToolsDeadline
