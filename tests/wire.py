"""A raw line client for talking to a server byte by byte in tests."""

from __future__ import annotations

import socket
from types import TracebackType

from guessgame.live.host import ServerHost
from timing import UNIT

TIMEOUT = UNIT


class Wire:
    """A blocking socket with helpers to send raw bytes and read one line."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self._file = self.sock.makefile("rb")

    @classmethod
    def to(cls, server: ServerHost) -> Wire:
        return cls(server.port)

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() + b"\n" if isinstance(data, str) else data)

    def line(self) -> str:
        """The next line, without its newline; '' means the server closed the connection."""
        return self._file.readline().decode().rstrip("\n")

    def ask(self, data: bytes | str) -> str:
        self.send(data)
        return self.line()

    def closed_by_server(self) -> bool:
        try:
            return self._file.readline() == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self._file.close()
        self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
