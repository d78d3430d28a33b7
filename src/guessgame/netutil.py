"""Small socket helpers shared by both flavours; none of them blocks."""

from __future__ import annotations

import contextlib
import ipaddress
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
    """A listening socket on the address `host` names, in that address's family.

    `::1` listens on IPv6, `127.0.0.1` on IPv4, and a name on the first address it
    resolves to. `::` listens on IPv6 and, where the system can (dual-stack), on IPv4
    as well; any other IPv6 address is IPv6 only. An empty host listens on every IPv4
    address, as `0.0.0.0` does. A name that does not resolve raises socket.gaierror.
    """
    family, _, _, _, sockaddr = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    dualstack = (family == socket.AF_INET6 and ipaddress.ip_address(sockaddr[0]).is_unspecified
                 and socket.has_dualstack_ipv6())
    return socket.create_server(sockaddr, family=family, backlog=backlog,
                                dualstack_ipv6=dualstack)


def no_delay(sock: socket.socket) -> None:
    """Send each small write at once: without this, Nagle's algorithm holds a reply back
    until the peer's delayed ACK, 40 ms later, whenever an earlier one is unacknowledged.

    asyncio sets it on the sockets it creates, but only if `sock.proto` says TCP, and a
    socket accepted from `socket.create_server()` says 0: served by asyncio streams, a
    peer with two lines in flight waited 40 ms per reply.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def abort(sock: Any) -> None:
    """Wake every read or write parked on `sock`, from any thread.

    close() would not wake a thread blocked in recv(); shutdown() does, in both worlds.
    """
    with contextlib.suppress(OSError):  # already closed or never connected
        sock.shutdown(socket.SHUT_RDWR)


def refuse(sock: socket.socket, farewell: bytes) -> None:
    """Send a peer that cannot be served a one-line farewell without blocking, and
    close. A peer that cannot take it loses it.

    A socket closed with unread input sends a reset instead of a FIN, and a reset may
    reach the peer before it has read the farewell, which it then never sees. The peer
    sends its first lines at once, so what has arrived is read and dropped first.
    """
    with sock:
        try:
            sock.setblocking(False)
            sock.send(farewell)
            sock.shutdown(socket.SHUT_WR)
            for _ in range(REFUSAL_DRAIN_READS):
                if not sock.recv(65536):
                    break
        except OSError:  # nothing more arrived, or the peer is gone already
            pass


REFUSAL_DRAIN_READS = 4
"""Reads of what a refused peer already sent, at most, before its socket is closed."""


class HeldListener:
    """A listening socket held until the one server that serves on it takes it.

    Taking it twice is a bug in the caller, so it fails at once; one never taken is
    closed by whoever held it (`close_unless_taken`)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock: socket.socket | None = sock
        self.sockname = sock.getsockname()

    def take(self) -> socket.socket:
        if self._sock is None:
            raise RuntimeError("the listener was already handed to a server")
        sock, self._sock = self._sock, None
        return sock

    def close_unless_taken(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
