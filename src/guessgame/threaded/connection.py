"""Line I/O on one blocking socket: send a line, receive a line, close."""

from __future__ import annotations

import io
import socket
import struct
import time
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
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(idle_timeout))
        netutil.no_delay(sock)  # each round is a few small writes
        self.socket = sock  # for a shutdown from another thread, or a send that never waits
        self._socket_io = _LineDeadline(sock, idle_timeout)
        self._file = _Reads(self._socket_io)
        self._limit = max_line_bytes
        self._idle_timeout = idle_timeout
        self.peer = netutil.peer_of(sock)

    @classmethod
    def open(cls, sock: socket.socket, max_line_bytes: int,
             idle_timeout: float | None) -> Connection:
        """Adopt a connected socket, such as one a server accepted."""
        return cls(sock, max_line_bytes, idle_timeout)

    @classmethod
    def connect(cls, host: str, port: int, max_line_bytes: int,
                idle_timeout: float | None) -> Connection:
        """Connect to `host`:`port`, waiting at most `idle_timeout`."""
        return cls(socket.create_connection((host, port), timeout=idle_timeout),
                   max_line_bytes, idle_timeout)

    def send(self, line: str) -> None:
        """Write a line, waiting while the peer is not reading, at most `idle_timeout`.

        Raises PeerClosed if the connection is gone or that wait times out.
        """
        if trace.enabled:
            trace.event("connection", f"send {line!r}")
        try:
            self.socket.sendall(protocol.encode(line))
        except OSError as error:
            raise PeerClosed() from error

    def receive(self) -> str:
        """The next line, without its newline. A line already buffered costs no wait.

        Raises LineTooLong, NotUTF8, PeerClosed (mid_line if the peer left inside a line)
        or IdleTimeout after `idle_timeout` seconds without a whole line.
        """
        socket_io = self._socket_io
        try:
            raw = self._file.readline(self._limit)
        except (OSError, ValueError) as error:  # ValueError: closed by another thread
            socket_io.deadline = 0.0
            raise PeerClosed() from error
        if socket_io.deadline:  # this line went to the socket: the next one starts afresh
            socket_io.deadline = 0.0
        if (not raw.endswith(protocol.NEWLINE) and len(raw) < self._limit
                and socket_io.take_timed_out()):
            raise IdleTimeout(self._idle_timeout or 0)
        line = protocol.decode(protocol.frame(raw, self._limit))
        if trace.enabled:
            trace.event("connection", f"receive {line!r}")
        return line

    def read_ahead(self) -> bool:
        """Whether a whole line is already read ahead, so that receive() returns it
        without waiting for the peer. Never waits itself."""
        return self._file.has_line()

    def close(self) -> None:
        """Close the connection; a thread parked in receive() wakes with PeerClosed."""
        # A coroutine may close this while a worker thread is parked in receive()
        # (AsyncFace, on cancellation); close() alone would not wake that thread.
        netutil.abort(self.socket)
        self._file.close()
        self.socket.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _timeval(seconds: float) -> bytes:
    return struct.pack("ll", int(seconds), int(seconds % 1 * 1_000_000))


class _LineDeadline(io.RawIOBase):
    """The socket under the buffered file, giving each line `idle_timeout` in all.

    SO_RCVTIMEO bounds one recv(), and each byte a peer trickles starts it again. So
    the first recv() of a line waits the whole timeout and sets the line's deadline;
    only a line that needs more than one recv() pays for a clock read and a
    setsockopt() per further recv(), to wait no longer than what is left of its time.
    A line found in the buffer costs no system call, and one read by one recv() costs
    that recv(), as before.
    """

    def __init__(self, sock: socket.socket, idle_timeout: float | None) -> None:
        super().__init__()
        self._sock = sock
        self._idle_timeout = idle_timeout
        self.deadline = 0.0
        """When the line being read times out; 0 until its first recv(). The connection
        sets it back to 0 once it has the line."""
        self._shortened = False
        self._timed_out = False
        self.count = 0  # bytes read, for _Reads
        if idle_timeout:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(idle_timeout))

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        if not self._idle_timeout:
            got = self._sock.recv_into(buffer)
            self.count += got
            return got
        if not self.deadline:
            self.deadline = time.monotonic() + self._idle_timeout
            if self._shortened:  # a line of many recv()s shortened the wait: restore it
                self._wait_at_most(self._idle_timeout)
                self._shortened = False
        else:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self._timed_out = True
                return None  # the buffered file returns the short line it has
            self._wait_at_most(left)
            self._shortened = True
        try:
            got = self._sock.recv_into(buffer)
        except BlockingIOError:  # SO_RCVTIMEO expired
            self._timed_out = True
            return None
        self.count += got
        return got

    def _wait_at_most(self, seconds: float) -> None:
        # A timeval of zero would mean no timeout at all: wait at least a microsecond.
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                              _timeval(max(seconds, 1e-6)))

    def take_timed_out(self) -> bool:
        """After a short line: True if its time ran out, rather than the peer left."""
        timed_out, self._timed_out = self._timed_out, False
        return timed_out


class _Reads:
    """The socket's buffered reader, counting what it read and what it handed out, so
    that `read_ahead` can look into its buffer: BufferedReader.peek() would wait for
    the peer whenever the buffer is empty, and nothing else tells whether it is."""

    __slots__ = ("_buffer", "_handed", "_raw")

    def __init__(self, raw: _LineDeadline) -> None:
        self._raw = raw
        self._buffer = io.BufferedReader(raw)
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
