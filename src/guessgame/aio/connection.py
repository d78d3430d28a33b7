"""Line I/O on one socket with an asyncio transport: send a line, receive a line, close.

The transport hands what it reads to a `protocol.LineBuffer`, which frames the lines;
this module only moves bytes and wakes the coroutine waiting for a line.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType
from typing import Final, Protocol, cast

from guessgame import netutil, protocol
from guessgame.observe import trace
from guessgame.protocol import IdleTimeout, LineBuffer, PeerClosed

READ_BYTES: Final = 64 * 1024
"""What each read from the socket asks for at most. The heap serves a buffer this size;
asyncio's own 256 KiB reads are served by mmap() once the process has threads, which
costs an mmap, an mremap, a munmap and a page fault per read (docs/performance.md)."""

PAUSE_READING_BYTES: Final = READ_BYTES
"""Past this many bytes received and not yet taken as lines, the transport stops reading
until the session takes them: a peer that sends without reading holds at most this,
plus one read, in the server's memory."""


class Lines(Protocol):
    """What sessions and clients need from a connection, whatever carries the lines."""

    peer: str

    async def send(self, line: str) -> None: ...

    async def receive(self) -> str: ...

    async def close(self) -> None: ...


class Connection:
    """Lines over an asyncio transport."""

    def __init__(self, transport: asyncio.Transport, stream: _Stream,
                 max_line_bytes: int, idle_timeout: float | None) -> None:
        """Use `open` or `connect`, which build the transport and its stream."""
        self._transport, self._stream = transport, stream
        self._limit = max_line_bytes
        self._idle_timeout = idle_timeout
        self.socket = transport.get_extra_info("socket")  # for a shutdown without the loop
        peer = transport.get_extra_info("peername")
        self.peer = netutil.address(peer) if peer else netutil.peer_of(self.socket)
        # The idle timeout: one timer per connection, pushed back lazily (see _wait).
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._loop = stream.loop

    @classmethod
    async def open(cls, sock: socket.socket, max_line_bytes: int,
                   idle_timeout: float | None) -> Connection:
        """Adopt a connected socket, such as one a server accepted."""
        netutil.no_delay(sock)  # asyncio skips an accepted socket (see netutil.no_delay)
        loop = asyncio.get_running_loop()
        stream = _Stream(loop, max_line_bytes)
        transport, _ = await loop.connect_accepted_socket(lambda: stream, sock)
        return cls(transport, stream, max_line_bytes, idle_timeout)

    @classmethod
    async def connect(cls, host: str, port: int, max_line_bytes: int,
                      idle_timeout: float | None) -> Connection:
        """Connect to `host`:`port`, waiting at most `idle_timeout`."""
        loop = asyncio.get_running_loop()
        stream = _Stream(loop, max_line_bytes)
        async with asyncio.timeout(idle_timeout):
            transport, _ = await loop.create_connection(lambda: stream, host, port)
        return cls(transport, stream, max_line_bytes, idle_timeout)

    async def send(self, line: str) -> None:
        """Write a line. Waits only while the peer is not reading and the transport's
        buffer is over its high-water mark; then for as long as an idle peer gets.

        Raises PeerClosed if the connection is gone or that wait times out.
        Cancellation: the line may or may not have been handed to the transport.
        """
        if trace.enabled:
            trace.event("connection", f"send {line!r}")
        if self._transport.is_closing():
            raise PeerClosed()
        self._transport.write(protocol.encode(line))
        if self._stream.writing_paused:
            try:
                async with asyncio.timeout(self._idle_timeout):
                    await self._stream.writable()
            except OSError as error:  # TimeoutError included
                raise PeerClosed() from error

    async def receive(self) -> str:
        """The next line, without its newline. A line already buffered costs no wait.

        Raises LineTooLong, NotUTF8, PeerClosed (mid_line if the peer left inside a line)
        or IdleTimeout after `idle_timeout` seconds without a whole line.
        Cancellation: no line is lost; what was read stays buffered for the next call.
        """
        raw = self._stream.lines.next_line()
        if raw is None:
            raw = await self._wait()
        line = protocol.decode(raw)
        if trace.enabled:
            trace.event("connection", f"receive {line!r}")
        return line

    def read_ahead(self) -> bool:
        """Whether a whole line is already read ahead, so that receive() returns it
        without waiting for the peer. Never waits itself."""
        return self._stream.lines.has_line()

    async def close(self) -> None:
        """Close the connection and wait until the transport has let the socket go;
        a peer that stopped reading loses what it has not taken."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport.get_write_buffer_size():
            # The peer stopped reading; a graceful close would wait for it to drain.
            self._transport.abort()
        else:
            self._transport.close()
        await self._stream.closed()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # The idle timeout. asyncio.timeout() per line would schedule and cancel a timer for
    # every line. Instead each wait only moves the deadline; the one timer, when it
    # fires early, sets itself again, and when it fires late fails the waiting line.

    async def _wait(self) -> bytes:
        """Wait for the stream to hold a whole line (or an outcome) and take it."""
        stream = self._stream
        if self._idle_timeout is not None:
            self._deadline = self._loop.time() + self._idle_timeout
            if self._timer is None:
                self._timer = self._loop.call_at(self._deadline, self._check_idle)
        while True:
            await stream.readable()
            raw = stream.lines.next_line()
            if raw is not None:
                return raw

    def _check_idle(self) -> None:
        self._timer = None
        waiter = self._stream.waiter
        if waiter is None or waiter.done():  # between lines: the next wait sets the timer
            return
        if self._loop.time() >= self._deadline:
            waiter.set_exception(IdleTimeout(self._idle_timeout or 0))
        else:
            self._timer = self._loop.call_at(self._deadline, self._check_idle)


_read_buffers = threading.local()
"""One read buffer per thread, shared by the connections of the loop that runs there:
a transport copies out what it read before it reads for another connection."""


def _read_buffer() -> memoryview:
    view: memoryview | None = getattr(_read_buffers, "view", None)
    if view is None:
        view = _read_buffers.view = memoryview(bytearray(READ_BYTES))
    return view


class _Stream(asyncio.BufferedProtocol):
    """The transport's side of a Connection: fills its LineBuffer, wakes its waiter,
    and tracks the transport's write flow control and its end."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_line_bytes: int) -> None:
        self.loop = loop
        self.lines = LineBuffer(max_line_bytes)
        self.waiter: asyncio.Future[None] | None = None
        self.writing_paused = False
        self._writable: asyncio.Future[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._reading_paused = False
        self._closed: asyncio.Future[None] = loop.create_future()

    # --- what the connection waits for ----------------------------------------------

    async def readable(self) -> None:
        """Wait until a line, the end or an error may be taken from `lines`."""
        self.waiter = self.loop.create_future()
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()
        try:
            await self.waiter
        finally:
            self.waiter = None

    async def writable(self) -> None:
        """Wait until the transport takes writes again; PeerClosed if it is gone."""
        if self._writable is None or self._writable.done():
            self._writable = self.loop.create_future()
        await self._writable

    async def closed(self) -> None:
        await self._closed

    # --- asyncio's calls ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self._transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _read_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        lines = self.lines
        lines.receive_data(_read_buffer()[:nbytes])
        if lines.buffered >= PAUSE_READING_BYTES and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()
        self._wake()  # a part of a line too: it may already be too long for one

    def eof_received(self) -> bool:
        self.lines.receive_data(b"")
        self._wake()
        return True  # keep the transport open for the replies still to be written

    def connection_lost(self, exc: Exception | None) -> None:
        self.lines.receive_data(b"")
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(PeerClosed())
        self.writing_paused = False
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self._writable is not None:
            if not self._writable.done():
                self._writable.set_result(None)
            self._writable = None

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

