"""Line I/O on one blocking socket: send a line, receive a line, close."""

from __future__ import annotations

import socket
from types import TracebackType
from typing import Protocol

from guessgame import netutil, protocol, trace
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
        sock.settimeout(idle_timeout)
        # Each round is a few small writes; without this, Nagle's algorithm holds one
        # back for the peer's delayed ACK. asyncio transports set it themselves.
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._file = sock.makefile("rb")
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

    def receive(self) -> str:
        try:
            raw = self._file.readline(self._limit)
        except TimeoutError:
            raise IdleTimeout(self._idle_timeout or 0) from None
        except OSError as error:
            raise PeerClosed() from error
        line = protocol.decode(protocol.frame(raw, self._limit))
        if trace.enabled:
            trace.event("connection", f"receive {line!r}")
        return line

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
