"""Small socket helpers shared by both flavours; none of them blocks."""

from __future__ import annotations

import contextlib
import socket
from typing import Any


def address(sockaddr: Any) -> str:
    """`host:port` for an IPv4 or IPv6 socket address; a Unix socket's path as is."""
    if not isinstance(sockaddr, tuple):
        return str(sockaddr) or "unix"
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def peer_of(sock: Any) -> str:
    try:
        return address(sock.getpeername())
    except OSError:  # the peer left before we asked
        return "?"


def listen(host: str, port: int, backlog: int) -> socket.socket:
    listener = socket.create_server((host, port), backlog=backlog)
    return listener


def abort(sock: Any) -> None:
    """Wake every read or write parked on `sock`, from any thread.

    close() would not wake a thread blocked in recv(); shutdown() does, in both worlds.
    """
    with contextlib.suppress(OSError):  # already closed or never connected
        sock.shutdown(socket.SHUT_RDWR)


def try_send(sock: socket.socket, data: bytes) -> None:
    """Send a short farewell without blocking; a peer that cannot take it loses it."""
    try:
        sock.setblocking(False)
        sock.send(data)
    except OSError:
        pass
