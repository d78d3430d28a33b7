"""Line I/O on one blocking socket: send a line, receive a line, close."""

from __future__ import annotations

import io
import socket
import struct
from types import TracebackType
from typing import Any, Protocol

from guessgame import netutil, protocol
from guessgame.observe import trace
from guessgame.protocol import IdleTimeout, PeerClosed


class Lines(Protocol):
    """What sessions and clients need from a connection, whatever carries the lines."""

    peer: str

    def send(self, line: str) -> None: ...

    def receive(self) -> str: ...

    def close(self) -> None: ...


class Connection:
    """Lines over a blocking socket, read through a buffered file."""

    def __init__(self, sock: socket.socket, max_line_bytes: int,
                 idle_timeout: float | None) -> None:
        # A blocking socket whose kernel calls time out by themselves. settimeout() would
        # do the same with a poll() before every recv() and send(): two more system
        # calls, and two more hand-offs of the GIL, for every line.
        sock.settimeout(None)
        if idle_timeout:
            timeval = struct.pack("ll", int(idle_timeout), int(idle_timeout % 1 * 1_000_000))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        netutil.no_delay(sock)  # each round is a few small writes
        self._sock = sock
        self._file = _Reads(sock)
        self._limit = max_line_bytes
        self._idle_timeout = idle_timeout
        self.peer = netutil.peer_of(sock)

    @classmethod
    def connect(cls, host: str, port: int, max_line_bytes: int,
                idle_timeout: float | None) -> Connection:
        return cls(socket.create_connection((host, port), timeout=idle_timeout),
                   max_line_bytes, idle_timeout)

    def send(self, line: str) -> None:
        if trace.enabled:
            trace.event("connection", f"send {line!r}")
        try:
            self._sock.sendall(protocol.encode(line))
        except OSError as error:
            raise PeerClosed() from error

    def send_now(self, line: str) -> bytes:
        """Send what the socket takes at once, without ever blocking; return the rest.

        For a caller that must not block, the event loop (adapters.AsyncFace): a reply
        that fits the socket's buffer, as nearly every reply does, then crosses to no
        thread at all. The rest, b"" if nothing is left, goes to `send_rest` in a worker.
        """
        if trace.enabled:
            trace.event("connection", f"send {line!r}")
        data = protocol.encode(line)
        try:
            sent = self._sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return data
        except OSError as error:
            raise PeerClosed() from error
        return data[sent:]

    def send_rest(self, data: bytes) -> None:
        """The blocking end of `send_now`: what the socket did not take at once."""
        try:
            self._sock.sendall(data)
        except OSError as error:
            raise PeerClosed() from error

    def read_ahead(self) -> bool:
        """Whether a whole line is already read ahead, so that receive() returns it
        without waiting for the peer. Never waits itself."""
        return self._file.has_line()

    def receive(self) -> str:
        try:
            raw = self._file.readline(self._limit)
        except (OSError, ValueError) as error:  # ValueError: closed by another thread
            raise PeerClosed() from error
        if not raw.endswith(protocol.NEWLINE) and len(raw) < self._limit and self._timed_out():
            raise IdleTimeout(self._idle_timeout or 0)
        line = protocol.decode(protocol.frame(raw, self._limit))
        if trace.enabled:
            trace.event("connection", f"receive {line!r}")
        return line

    def _timed_out(self) -> bool:
        """After a short read: did the receive timeout expire, rather than the peer leave?

        A timed-out recv() looks like the end of the stream to the file (it returns what
        it has), so ask the socket: at the end of the stream, a peek reads b"".
        """
        if self._idle_timeout is None:
            return False
        try:
            return self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False

    def close(self) -> None:
        # A coroutine may close this while a worker thread is parked in receive()
        # (AsyncFace, on cancellation); close() alone would not wake that thread.
        netutil.abort(self._sock)
        self._file.close()
        self._sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class _Reads:
    """The socket's buffered reader, counting what it read and what it handed out, so
    that `read_ahead` can look into its buffer: BufferedReader.peek() would wait for
    the peer whenever the buffer is empty, and nothing else tells whether it is."""

    __slots__ = ("_buffer", "_handed", "_raw")

    def __init__(self, sock: socket.socket) -> None:
        self._raw = _CountedRaw(sock.makefile("rb", buffering=0))
        self._buffer = io.BufferedReader(self._raw)
        self._handed = 0

    def readline(self, limit: int) -> bytes:
        raw = self._buffer.readline(limit)
        self._handed += len(raw)
        return raw

    def has_line(self) -> bool:
        held = self._raw.count - self._handed
        return held > 0 and protocol.NEWLINE in self._buffer.peek(held)[:held]

    def close(self) -> None:
        self._buffer.close()


class _CountedRaw(io.RawIOBase):
    """A socket's raw reads, counted."""

    def __init__(self, raw: io.RawIOBase) -> None:
        super().__init__()
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        got = self._raw.readinto(buffer)
        if got:
            self.count += got
        return got

    def close(self) -> None:
        self._raw.close()
        super().close()
