"""Bookkeeping that both servers share: session ids, the connection limit, and the
sockets to wake when the server stops. Nothing here blocks."""

from __future__ import annotations

import itertools
import socket
import threading

from guessgame import netutil, protocol

ACCEPT_RETRY_DELAY = 0.1
"""After accept() fails (out of file descriptors, say), wait before trying again."""


class Sessions:
    """The sessions a server is serving now, keyed by session id."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._open: dict[str, socket.socket] = {}
        self._numbers = itertools.count(1)

    def admit(self, sock: socket.socket) -> str | None:
        """A new session id for `sock`, or None when the server is full."""
        with self._lock:
            if len(self._open) >= self.limit:
                return None
            session_id = f"s{next(self._numbers)}"
            self._open[session_id] = sock
            return session_id

    def release(self, session_id: str) -> None:
        with self._lock:
            self._open.pop(session_id, None)

    def abort_all(self) -> None:
        """Wake every session parked on its socket, so that it ends and can be joined."""
        with self._lock:
            sockets = list(self._open.values())
        for sock in sockets:
            netutil.abort(sock)

    def __len__(self) -> int:
        return len(self._open)

    def refusal(self) -> bytes:
        return protocol.encode(protocol.error_line(protocol.TooManyConnections(self.limit)))
