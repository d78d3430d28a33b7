"""Line I/O on one socket with asyncio streams: send a line, receive a line, close."""

from __future__ import annotations

import asyncio
import socket
from types import TracebackType
from typing import Final, Protocol

from guessgame import netutil, protocol
from guessgame.observe import trace
from guessgame.protocol import IdleTimeout, LineTooLong, PeerClosed

READ_BYTES: Final = 64 * 1024
"""What each recv() on the loop asks for. asyncio's selector transports ask for 256 KiB,
and once the process has threads glibc serves a request that size with mmap(): every
read of a few bytes then costs an mmap, an mremap, a munmap and a fresh page's fault.
A 64 KiB request comes from the heap. At async-connection with 100 clients, server CPU
per round went from 175-202 µs to 135-168 (docs/performance.md)."""


class Lines(Protocol):
    """What sessions and clients need from a connection, whatever carries the lines."""

    peer: str

    async def send(self, line: str) -> None: ...

    async def receive(self) -> str: ...

    async def close(self) -> None: ...


class Connection:
    """Lines over an asyncio stream pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 max_line_bytes: int, idle_timeout: float | None) -> None:
        self._reader, self._writer = reader, writer
        _read_at_most(writer.transport, READ_BYTES)
        self._limit = max_line_bytes
        self._idle_timeout = idle_timeout
        self.socket = writer.get_extra_info("socket")  # for a shutdown without the loop
        self.peer = netutil.peer_of(self.socket)
        # The idle timeout: one timer per connection, pushed back lazily (see _idle_read).
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._reading: asyncio.Task[object] | None = None
        self._timed_out = False
        # Built on its loop, always. Asking asyncio for the running loop (and so for
        # the current task) checks the process id on 3.11 and 3.12: a getpid() system
        # call, twice per line here.
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def open(cls, sock: socket.socket, max_line_bytes: int,
                   idle_timeout: float | None) -> Connection:
        """Adopt a connected socket, such as one a server accepted."""
        netutil.no_delay(sock)  # asyncio skips an accepted socket (see netutil.no_delay)
        # The stream's limit counts the line without its newline.
        reader, writer = await asyncio.open_connection(sock=sock, limit=max_line_bytes - 1)
        return cls(reader, writer, max_line_bytes, idle_timeout)

    @classmethod
    async def connect(cls, host: str, port: int, max_line_bytes: int,
                      idle_timeout: float | None) -> Connection:
        async with asyncio.timeout(idle_timeout):
            reader, writer = await asyncio.open_connection(host, port, limit=max_line_bytes - 1)
        return cls(reader, writer, max_line_bytes, idle_timeout)

    async def send(self, line: str) -> None:
        if trace.enabled:
            trace.event("connection", f"send {line!r}")
        self._writer.write(protocol.encode(line))
        try:
            if self._idle_timeout is not None and self._writer.transport.get_write_buffer_size():
                # The peer is not reading. Give it as long as an idle peer gets, as the
                # blocking connection's SO_SNDTIMEO does, rather than wait forever.
                async with asyncio.timeout(self._idle_timeout):
                    await self._writer.drain()
            else:
                await self._writer.drain()
        except OSError as error:  # TimeoutError included
            raise PeerClosed() from error

    async def receive(self) -> str:
        cancelling = self._watch_idle()
        try:
            raw = await self._reader.readuntil(protocol.NEWLINE)
        except asyncio.CancelledError:
            if self._timed_out and self._uncancel(cancelling):
                raise IdleTimeout(self._idle_timeout or 0) from None
            raise
        except asyncio.IncompleteReadError as error:
            raw = error.partial
        except asyncio.LimitOverrunError:
            raise LineTooLong(self._limit) from None
        except OSError as error:
            raise PeerClosed() from error
        finally:
            self._reading = None
        line = protocol.decode(protocol.frame(raw, self._limit))
        if trace.enabled:
            trace.event("connection", f"receive {line!r}")
        return line

    def read_ahead(self) -> bool:
        """Whether a whole line is already read ahead, so that receive() returns it
        without waiting for the peer. Never waits itself."""
        # StreamReader keeps what it read in `_buffer`, a bytearray, and offers no
        # public way to look: readuntil() itself searches it the same way.
        buffer: bytearray = getattr(self._reader, "_buffer", bytearray())
        return protocol.NEWLINE in buffer

    # The idle timeout. asyncio.timeout() per line would schedule and cancel a timer for
    # every line, and keep both alive while the connection is idle. Instead each line
    # only moves the deadline; the one timer, when it fires early, sets itself again.

    def _watch_idle(self) -> int:
        """Start watching the read about to begin; the task's cancel count before it."""
        if self._idle_timeout is None:
            return 0
        loop = self._loop
        self._deadline = loop.time() + self._idle_timeout
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._check_idle)
        task = asyncio.current_task(loop)
        assert task is not None  # receive() is always awaited in a task
        self._reading, self._timed_out = task, False
        return task.cancelling()

    def _uncancel(self, cancelling: int) -> bool:
        """Take back our cancel; True if nobody else cancelled the task meanwhile."""
        assert self._reading is not None
        return self._reading.uncancel() <= cancelling

    def _check_idle(self) -> None:
        self._timer = None
        if self._reading is None:  # between lines: the next receive() sets the timer
            return
        loop = self._loop
        if loop.time() >= self._deadline:
            self._timed_out = True
            self._reading.cancel()
        else:
            self._timer = loop.call_at(self._deadline, self._check_idle)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writer.transport.get_write_buffer_size():
            # The peer stopped reading; a graceful close would wait for it to drain.
            self._writer.transport.abort()
        else:
            self._writer.close()
        try:
            await self._writer.wait_closed()
        except OSError as reset:  # a reset peer: closed either way
            # The error stays in the stream's closed future. Its traceback, through the
            # stream's frames, would make a reference cycle of the whole connection.
            reset.with_traceback(None)

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


def _read_at_most(transport: asyncio.BaseTransport, size: int) -> None:
    """Have the transport ask recv() for at most `size` bytes at a time."""
    # `max_size` is how much the selector transports pass to recv(): a class attribute
    # that an instance may override. uvloop's transports have none and size their own.
    if isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = size  # type: ignore[attr-defined]
