"""stdin and stdout for the SDK's stdio transport, read and written by the event loop itself.

The SDK reads each line and writes and flushes each message through a worker thread (``anyio.wrap_file``):
three thread hand-offs a tool call, more server CPU than everything else in the call (a heartbeat took
1.25 ms of server CPU with them, 0.8 ms without, on a 2-core VM; `bench/`). When stdin and stdout are
pipes or sockets, as every MCP host spawns us, `stdio_streams` gives the SDK's `stdio_server` lines
read from a non-blocking pipe instead, and a pipe writer; otherwise (a file, a terminal, Windows) the
SDK's own threads. As the SDK does, it points fd 0 at the null device and fd 1 at stderr while it
serves, so a stray read or print in the process can never touch the wire.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import stat
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, BinaryIO, cast

import anyio
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE

logger = logging.getLogger(__name__)

# One message (one line) at most as large as the SDK lets an HTTP request body be.
MAX_LINE_BYTES = DEFAULT_MAX_REQUEST_BODY_SIZE
# Where a request's id is looked for in a line too long to parse (clients write it near the start).
_ID_WITHIN = 1_024
_ID = re.compile(rb'"id"\s*:\s*("(?:[^"\\]|\\.){0,200}"|-?\d{1,20})')

Streams = Any  # what stdio_server yields: the SDK's (read, write) context streams


def _is_pipe(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


@asynccontextmanager
async def stdio_streams() -> AsyncIterator[Streams]:
    """The SDK's `stdio_server`, over the pipes when stdin and stdout are pipes (see the module)."""
    if sys.platform == "win32" or not (_is_pipe(0) and _is_pipe(1)):
        async with stdio_server() as streams:
            yield streams
        return
    async with AsyncExitStack() as stack:
        wire_in = _claim(0, os.O_RDONLY)
        stack.callback(_restore, 0, wire_in)
        wire_out = _claim(1, os.O_WRONLY)
        stack.callback(_restore, 1, wire_out)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES, loop=loop)
        read_pipe, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader, loop=loop), _pipe(wire_in, "rb")
        )
        stack.callback(read_pipe.close)
        # A client gone (its end of stdout closed: the loop hears of it at once) ends the serving as the
        # end of stdin does, so that what it waited for is given up (and undone) now.
        write_pipe, protocol = await loop.connect_write_pipe(
            lambda: _Wire(loop, on_lost=lambda: output.lose()), _pipe(wire_out, "wb")
        )
        stack.callback(write_pipe.close)
        output = _Output(asyncio.StreamWriter(write_pipe, protocol, None, loop), on_lost=read_pipe.close)
        stack.callback(output.finish)  # before the pipe closes: our own close is no client gone
        stdin = cast("anyio.AsyncFile[str]", _Lines(reader, output))
        stdout = cast("anyio.AsyncFile[str]", output)
        async with stdio_server(stdin=stdin, stdout=stdout) as streams:
            yield streams


def _claim(fd: int, diversion_flags: int) -> int:
    """A private duplicate of `fd` (the wire), and `fd` pointed elsewhere: stdin at the null device,
    stdout at stderr."""
    wire = os.dup(fd)
    diversion = os.open(os.devnull, diversion_flags) if fd == 0 else os.dup(2)
    try:
        os.dup2(diversion, fd)
    finally:
        os.close(diversion)
    return wire


def _restore(fd: int, wire: int) -> None:
    """Point `fd` at the wire again, as the process found it (blocking, as it was)."""
    try:
        os.set_blocking(wire, True)  # the pipe transport made it non-blocking
        os.dup2(wire, fd)
    finally:
        os.close(wire)


def _pipe(fd: int, mode: str) -> BinaryIO:
    """A file object for the event loop's pipe transport, which closes it when it closes."""
    return cast("BinaryIO", os.fdopen(os.dup(fd), mode, buffering=0))


class _Lines:
    """stdin as the SDK's stdio transport reads it: one message per line, as text. A line over
    MAX_LINE_BYTES is skipped (the next line is the next message), and a request in it is answered
    with an error when its id can be found."""

    def __init__(self, reader: asyncio.StreamReader, output: _Output) -> None:
        self._reader = reader
        self._output = output

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        while True:
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as end:  # stdin closed: the last line may lack its newline
                if not end.partial:
                    raise StopAsyncIteration from None
                return end.partial.decode("utf-8", errors="replace")
            except asyncio.LimitOverrunError as over:
                await self._skip(over.consumed)
                continue
            return line.decode("utf-8", errors="replace")

    async def _skip(self, buffered: int) -> None:
        """Drop the line whose first `buffered` bytes are read, through its newline; answer its request."""
        head = b""
        try:
            head = await self._reader.readexactly(min(buffered, _ID_WITHIN))
            await self._reader.readexactly(buffered - len(head))
            while True:  # the rest of the line, in pieces under the limit
                try:
                    await self._reader.readuntil(b"\n")
                    break
                except asyncio.LimitOverrunError as over:
                    await self._reader.readexactly(over.consumed)
        except asyncio.IncompleteReadError:
            pass  # stdin ended within the line: the next read says so
        found = _ID.search(head)
        logger.warning(
            "skipped a message over %d bytes on stdin (%s)",
            MAX_LINE_BYTES,
            "answered with an error" if found else "no request id found to answer",
        )
        if found is not None:
            error = {
                "code": -32600,  # invalid request
                "message": f"This message is over {MAX_LINE_BYTES // 2**20} MiB, the most one message "
                "may be; nothing was done. Send less in one call (large content belongs in a file: pass "
                "its path).",
            }
            await self._output.write(
                json.dumps({"jsonrpc": "2.0", "id": json.loads(found.group(1)), "error": error})
            )
            await self._output.write("\n")
            await self._output.flush()


class _Wire(asyncio.streams.FlowControlMixin):
    """The protocol of the stdout pipe: flow control for the writer, and word when the pipe is lost."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_lost: Callable[[], None]) -> None:
        super().__init__(loop)
        self._on_lost = on_lost

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._on_lost()


class _Output:
    """stdout as the SDK's stdio transport writes it: text, flushed after each message. Once the client
    has closed its end (`lose`), what is written is dropped, and `on_lost` is called once."""

    def __init__(self, writer: asyncio.StreamWriter, on_lost: Callable[[], object]) -> None:
        self._writer = writer
        self._on_lost = on_lost
        self._done = False

    async def write(self, text: str) -> None:
        if not self._done:
            self._writer.write(text.encode())

    async def flush(self) -> None:
        if self._done:
            return
        try:
            await self._writer.drain()
        except ConnectionError:  # the client is gone: nobody reads what is left to say
            self.lose()

    def lose(self) -> None:
        if not self._done:
            self._done = True
            logger.info("the client closed its end of stdout: the server stops")
            self._on_lost()

    def finish(self) -> None:
        """The server is done writing: the pipe closing now is no news."""
        self._done = True
