"""Bookkeeping that both servers share: session ids, the connection limit, and the
sockets to wake when the server stops. Nothing here blocks."""

from __future__ import annotations

import itertools
import logging
import socket
import threading
from collections.abc import Iterator

from guessgame import netutil, protocol

log = logging.getLogger("guessgame.server")

ACCEPT_RETRY_DELAY = 0.1
"""After accept() fails (out of file descriptors, say), wait before trying again."""


class Sessions:
    """The sessions a server is serving now, keyed by session id."""

    def __init__(self, limit: int, numbers: Iterator[int] | None = None) -> None:
        """`numbers` numbers the session ids; servers that follow one another on one
        listener (a reload) share it, so that no two sessions of a process share an id."""
        self.limit = limit
        self._lock = threading.Lock()
        self._open: dict[str, socket.socket] = {}
        self._numbers = itertools.count(1) if numbers is None else numbers
        self._refusal = protocol.encode(protocol.error_line(protocol.TooManyConnections(limit)))

    def admit(self, sock: socket.socket, peer: str) -> str | None:
        """A new session id for `sock`; or None when the server is full, in which case
        the peer has been told so and its socket closed."""
        with self._lock:
            if len(self._open) < self.limit:
                session_id = f"s{next(self._numbers)}"
                self._open[session_id] = sock
                return session_id
        log.warning("%s: refused: %d connections already", peer, self.limit)
        with sock:
            netutil.try_send(sock, self._refusal)
        return None

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


