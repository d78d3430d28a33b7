"""Line I/O on one socket with asyncio streams: send a line, receive a line, close."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import TracebackType
from typing import Protocol

from guessgame import netutil, protocol, trace
from guessgame.protocol import IdleTimeout, LineTooLong, PeerClosed


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
        self._limit = max_line_bytes
        self._idle_timeout = idle_timeout
        self.peer = netutil.peer_of(writer.get_extra_info("socket"))

    @classmethod
    async def open(cls, sock: socket.socket, max_line_bytes: int,
                   idle_timeout: float | None) -> Connection:
        """Adopt a connected socket, such as one a server accepted."""
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
            await self._writer.drain()
        except OSError as error:
            raise PeerClosed() from error

    async def receive(self) -> str:
        try:
            if self._idle_timeout is None:
                raw = await self._reader.readuntil(protocol.NEWLINE)
            else:
                async with asyncio.timeout(self._idle_timeout):
                    raw = await self._reader.readuntil(protocol.NEWLINE)
        except asyncio.IncompleteReadError as error:
            raw = error.partial
        except asyncio.LimitOverrunError:
            raise LineTooLong(self._limit) from None
        except TimeoutError:
            raise IdleTimeout(self._idle_timeout or 0) from None
        except OSError as error:
            raise PeerClosed() from error
        line = protocol.decode(protocol.frame(raw, self._limit))
        if trace.enabled:
            trace.event("connection", f"receive {line!r}")
        return line

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):  # a reset peer: closed either way
            await self._writer.wait_closed()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
