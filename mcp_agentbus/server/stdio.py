"""stdin and stdout for the SDK's stdio transport, read and written by the event loop itself.

The SDK reads each line and writes and flushes each message through a worker thread (``anyio.wrap_file``):
three thread hand-offs a tool call, more server CPU than everything else in the call (a heartbeat took
1.2 ms of server CPU with them, 0.75 ms without, on a 2-core VM: `bench/bench.py --only cpu`). When
stdin and stdout are two pipes or sockets, as every MCP host spawns us, `stdio_streams` gives the SDK's
`stdio_server` lines read from a non-blocking pipe instead, and a pipe writer; otherwise (a file, a
terminal, one socket for both as inetd passes it, Windows) the SDK's own threads. As the SDK does, it
points fd 0 at the null device and fd 1 at stderr while it serves, so a stray read or print in the
process can never touch the wire. In both ways, a request the SDK cannot parse (it would answer nothing,
and its client wait for its timeout) is answered with a JSON-RPC error for its id (`Answering`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, BinaryIO, cast

import anyio
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE

from mcp_agentbus.server.unreadable import EDGE_BYTES, Answering, request_id

logger = logging.getLogger(__name__)

# One message (one line) at most as large as the SDK lets an HTTP request body be.
MAX_LINE_BYTES = DEFAULT_MAX_REQUEST_BODY_SIZE

Streams = Any  # what stdio_server yields: the SDK's (read, write) context streams


def _two_pipes() -> bool:
    """stdin and stdout are pipes or sockets, and not one socket: the write transport takes its fd
    turning readable for the reader gone, which on a shared socket is only the next request."""
    try:
        stdin, stdout = os.fstat(0), os.fstat(1)
    except OSError:
        return False
    pipes = all(stat.S_ISFIFO(s.st_mode) or stat.S_ISSOCK(s.st_mode) for s in (stdin, stdout))
    return pipes and not os.path.samestat(stdin, stdout)


@asynccontextmanager
async def stdio_streams() -> AsyncIterator[Streams]:
    """The SDK's `stdio_server`, over the pipes when stdin and stdout are pipes (see the module)."""
    if sys.platform == "win32" or not _two_pipes():
        async with stdio_server() as (read, write):
            yield Answering(read, write), write
        return
    async with AsyncExitStack() as stack:
        wire_in, blocking = _claim(0, os.O_RDONLY)
        stack.callback(_restore, 0, wire_in, blocking)
        wire_out, blocking = _claim(1, os.O_WRONLY)
        stack.callback(_restore, 1, wire_out, blocking)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES, loop=loop)
        read_pipe, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader, loop=loop), _pipe(wire_in, "rb")
        )
        stack.callback(read_pipe.close)
        # A client gone (its end of stdout closed: the loop hears of it at once) ends the serving as the
        # end of stdin does, so that what it waited for is given up (and undone) now.
        wire = _Wire(loop, on_lost=read_pipe.close)
        write_pipe, _ = await loop.connect_write_pipe(lambda: wire, _pipe(wire_out, "wb"))
        stack.callback(write_pipe.close)
        output = _Output(asyncio.StreamWriter(write_pipe, wire, None, loop), wire)
        stack.callback(wire.finish)  # before the pipe closes: our own close is no client gone
        stdin = cast("anyio.AsyncFile[str]", _Lines(reader, output))
        stdout = cast("anyio.AsyncFile[str]", output)
        async with stdio_server(stdin=stdin, stdout=stdout) as (read, write):
            yield Answering(read, write), write


def _claim(fd: int, diversion_flags: int) -> tuple[int, bool]:
    """A private duplicate of `fd` (the wire, above the standard descriptors) and whether it blocks, and
    `fd` pointed elsewhere: stdin at the null device, stdout at stderr."""
    import fcntl  # POSIX only: on Windows the SDK's threads serve, and this module must still import

    wire = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    diversion = os.open(os.devnull, diversion_flags) if fd == 0 else os.dup(2)
    try:
        os.dup2(diversion, fd)
    finally:
        os.close(diversion)
    return wire, os.get_blocking(wire)


def _restore(fd: int, wire: int, blocking: bool) -> None:
    """Point `fd` at the wire again, as the process found it (the pipe transport made it non-blocking)."""
    try:
        os.set_blocking(wire, blocking)
        os.dup2(wire, fd)
    finally:
        os.close(wire)


def _pipe(fd: int, mode: str) -> BinaryIO:
    """A file object for the event loop's pipe transport, which closes it when it closes."""
    return cast("BinaryIO", os.fdopen(os.dup(fd), mode, buffering=0))


class _Lines:
    """stdin as the SDK's stdio transport reads it: one message per line, as text. A line over
    MAX_LINE_BYTES is skipped (the next line is the next message), and a request in it is answered with
    an error when its id can be found (`request_id`)."""

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
        head = tail = b""
        try:
            head = await self._reader.readexactly(min(buffered, EDGE_BYTES))
            tail = (head + await self._reader.readexactly(buffered - len(head)))[-EDGE_BYTES:]
            while True:  # the rest of the line, in pieces under the limit
                try:
                    tail = (tail + await self._reader.readuntil(b"\n"))[-EDGE_BYTES:]
                    break
                except asyncio.LimitOverrunError as over:
                    tail = (tail + await self._reader.readexactly(over.consumed))[-EDGE_BYTES:]
        except asyncio.IncompleteReadError:
            pass  # stdin ended within the line: the next read says so
        found = request_id(head, tail)
        answered = "answered with an error" if found is not None else "no request id to answer"
        logger.warning("skipped a message over %d bytes on stdin (%s)", MAX_LINE_BYTES, answered)
        if found is not None:
            message = (
                f"This message is over {MAX_LINE_BYTES // 2**20} MiB, the most one message may be; nothing "
                "was done. Send less in one call (large content belongs in a file: pass its path)."
            )
            error = {"code": -32600, "message": message}  # invalid request
            self._output.write_now(json.dumps({"jsonrpc": "2.0", "id": found, "error": error}) + "\n")


class _Wire(asyncio.streams.FlowControlMixin):
    """The protocol of the stdout pipe: flow control for the writer, and whether the client is gone.
    Its end closed (the loop hears of it at once) or a failed write ends the serving as the end of stdin
    does (`on_lost`), so that what the client waited for is given up now."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_lost: Callable[[], object]) -> None:
        super().__init__(loop)
        self._on_lost = on_lost
        self.done = False  # nothing more is written: the client is gone, or the server is done

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost()

    def lost(self) -> None:
        if not self.done:
            self.done = True
            logger.info("the client closed its end of stdout: the server stops")
            self._on_lost()

    def finish(self) -> None:
        """The server is done writing: the pipe closing now is no news."""
        self.done = True


class _Output:
    """stdout as the SDK's stdio transport writes it: text, flushed after each message; dropped once the
    client is gone."""

    def __init__(self, writer: asyncio.StreamWriter, wire: _Wire) -> None:
        self._writer = writer
        self._wire = wire

    async def write(self, text: str) -> None:
        self.write_now(text)

    def write_now(self, text: str) -> None:
        """Write without waiting: the pipe transport sends it in order, whole."""
        if not self._wire.done:
            self._writer.write(text.encode())

    async def flush(self) -> None:
        if self._wire.done:
            return
        try:
            await self._writer.drain()
        except ConnectionError:  # the client is gone: nobody reads what is left to say
            self._wire.lost()
