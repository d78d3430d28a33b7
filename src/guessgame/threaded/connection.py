"""Line I/O on one blocking socket: send a line, receive a line, close.

What the socket reads goes to a `protocol.LineBuffer`, which frames the lines; this
module only moves bytes and keeps each line within the idle timeout.
"""

from __future__ import annotations

import socket
import struct
import time
from types import TracebackType
from typing import Final, Protocol

from guessgame import netutil, protocol
from guessgame.observe import trace
from guessgame.protocol import IdleTimeout, LineBuffer, PeerClosed

READ_BYTES: Final = 64 * 1024
"""What each recv() asks for at most: the asyncio twin's size, which the heap serves;
recv() keeps only what arrived, so no buffer of this size stays with a connection."""


class Lines(Protocol):
    """What sessions and clients need from a connection, whatever carries the lines."""

    peer: str

    def send(self, line: str) -> None: ...

    def receive(self) -> str: ...

    def close(self) -> None: ...


class Connection:
    """Lines over a blocking socket."""

    def __init__(self, sock: socket.socket, max_line_bytes: int,
                 idle_timeout: float | None) -> None:
        """Adopt a connected socket, as `open` does."""
        # A blocking socket whose kernel calls time out by themselves. settimeout() would
        # do the same with a poll() before every recv() and send(): two more system
        # calls, and two more hand-offs of the GIL, for every line.
        sock.settimeout(None)
        if idle_timeout:
            for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
                sock.setsockopt(socket.SOL_SOCKET, option, _timeval(idle_timeout))
        netutil.no_delay(sock)  # each round is a few small writes
        self.socket = sock  # for a shutdown from another thread, or a send that never waits
        self.peer = netutil.peer_of(sock)
        self._lines = LineBuffer(max_line_bytes)
        # What is buffered is at most one read and the start of a line under the limit:
        # the socket is read only when the buffer holds no whole line (see _wait).
        self._idle_timeout = idle_timeout or None
        self._shortened = False  # SO_RCVTIMEO is below the idle timeout (see _wait)

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
        """The next line, without its newline. A line already buffered costs no wait
        and no system call.

        Raises LineTooLong, NotUTF8, PeerClosed (mid_line if the peer left inside a line)
        or IdleTimeout after `idle_timeout` seconds without a whole line.
        """
        raw = self._lines.next_line()
        if raw is None:
            raw = self._wait()
        line = protocol.decode(raw)
        if trace.enabled:
            trace.event("connection", f"receive {line!r}")
        return line

    def read_ahead(self) -> bool:
        """Whether a whole line is already read ahead, so that receive() returns it
        without waiting for the peer. Never waits itself."""
        return self._lines.has_line()

    def close(self) -> None:
        """Close the connection; a thread parked in receive() wakes with PeerClosed."""
        # A coroutine may close this while a worker thread is parked in receive()
        # (AsyncFace, on cancellation); close() alone would not wake that thread.
        netutil.abort(self.socket)
        self.socket.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # The idle timeout gives each line `idle_timeout` in all. SO_RCVTIMEO bounds one
    # recv(), and each byte a peer trickles starts it again. So the first recv() of a
    # line waits the whole timeout, and the line's deadline is set before it; only a
    # line that needs more than one recv() pays for a clock read and a setsockopt() per
    # further recv(), to wait no longer than what is left of its time, and the next
    # line to reach the socket sets the whole timeout back first.

    def _wait(self) -> bytes:
        """Read the socket until the buffer holds a whole line, or an outcome; take it."""
        lines, sock, timeout = self._lines, self.socket, self._idle_timeout
        deadline = 0.0
        if timeout is not None:
            if self._shortened:
                self._wait_at_most(timeout)
                self._shortened = False
            deadline = time.monotonic() + timeout
        while True:
            try:
                lines.receive_data(sock.recv(READ_BYTES))  # b"": the end of the stream
            except BlockingIOError:  # SO_RCVTIMEO expired
                raise IdleTimeout(timeout or 0) from None
            except OSError as error:  # reset, or closed by another thread
                raise PeerClosed() from error
            raw = lines.next_line()
            if raw is not None:
                return raw
            if timeout is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise IdleTimeout(timeout)
                self._wait_at_most(left)
                self._shortened = True

    def _wait_at_most(self, seconds: float) -> None:
        # A timeval of zero would mean no timeout at all: wait at least a microsecond.
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                               _timeval(max(seconds, 1e-6)))


def _timeval(seconds: float) -> bytes:
    return struct.pack("ll", int(seconds), int(seconds % 1 * 1_000_000))
