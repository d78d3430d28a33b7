"""Bookkeeping that both servers share: session ids, the connection limit, and the
sockets to wake when the server stops. Nothing here blocks."""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import math
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from guessgame import netutil, protocol

log = logging.getLogger("guessgame.server")

ACCEPT_RETRY_DELAY = 0.1
"""After accept() fails and no peer could be answered, wait before trying again."""

FAILURES_LOGGED_EVERY = 5.0
"""Seconds between two warnings about failed accepts; the first is told at once."""

_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)

_SHUT_BY_PEER = getattr(select, "POLLRDHUP", 0)
"""poll()'s word for a peer that shut its side (Linux); elsewhere every session counts
until it ends."""


class Sessions:
    """The sessions a server is serving now, keyed by session id."""

    def __init__(self, limit: int, numbers: Iterator[int] | None = None) -> None:
        """`numbers` numbers the session ids; servers that follow one another on one
        listener (a reload) share it, so that no two sessions of a process share an id."""
        self.limit = limit
        self._lock = threading.Lock()
        self._open: dict[str, socket.socket] = {}
        self._finished_sending: dict[str, socket.socket] = {}  # served, but not counted
        self._numbers = itertools.count(1) if numbers is None else numbers
        self._refusal = protocol.encode(protocol.error_line(protocol.TooManyConnections(limit)))

    def admit(self, sock: socket.socket, peer: str) -> str | None:
        """A new session id for `sock`; or None when the server is full, in which case
        the peer has been told so and its socket closed."""
        with self._lock:
            if len(self._open) >= self.limit:
                self._uncount_peers_done_sending()
            if len(self._open) < self.limit:
                session_id = f"s{next(self._numbers)}"
                self._open[session_id] = sock
                return session_id
        log.warning("%s: refused: %d connections already", peer, self.limit)
        netutil.refuse(sock, self._refusal)
        return None

    def _uncount_peers_done_sending(self) -> None:
        """With the lock held, at the limit: stop counting sessions whose peer has shut
        its side (left, as a rule), which the kernel tells for all of them in one poll().

        A peer that leaves is released only once its session's thread or task runs
        again and reads the end of the stream. Under load that wait grows with the
        number of threads, and every arrival meanwhile takes a thread of its own: 100
        clients reconnecting 2,300 times a second held 1,000 places at all-threads,
        and newcomers were refused with 91 peers connected. Such a session can no
        longer wait on its peer for a line, so it ends without one: it keeps its
        thread or task until then, and a stop still wakes it, but not a place.
        """
        if not _SHUT_BY_PEER:
            return
        poller = select.poll()
        by_fd: dict[int, str] = {}
        for session_id, sock in self._open.items():
            fd = sock.fileno()
            if fd >= 0:
                poller.register(fd, _SHUT_BY_PEER)
                by_fd[fd] = session_id
        for fd, _ in poller.poll(0):
            session_id = by_fd[fd]
            self._finished_sending[session_id] = self._open.pop(session_id)

    def release(self, session_id: str) -> None:
        with self._lock:
            if self._open.pop(session_id, None) is None:
                self._finished_sending.pop(session_id, None)

    def abort_all(self) -> None:
        """Wake every session parked on its socket, so that it ends and can be joined."""
        with self._lock:
            sockets = [*self._open.values(), *self._finished_sending.values()]
        for sock in sockets:
            netutil.abort(sock)

    def __len__(self) -> int:
        """Sessions not yet released, counted against the limit or not."""
        return len(self._open) + len(self._finished_sending)


class Reserve:
    """A descriptor kept spare, so that a peer arriving when the process has run out of
    descriptors is told so and closed, rather than left waiting in the backlog.

    When accept() fails for lack of descriptors, the spare is freed, one waiting peer
    is accepted on it, sent one ERROR line and closed, and the spare is taken again.
    Either acceptor accepts through `accept()`, from its own thread or task; nothing
    here blocks. Failures are logged once, then at most every FAILURES_LOGGED_EVERY
    seconds, with the number of peers refused meanwhile.
    """

    def __init__(self) -> None:
        self._spare = -1
        self._lost = False  # the spare was given up for a peer and not yet taken back
        self._take()
        self._refusal = protocol.encode(protocol.error_line(protocol.OutOfDescriptors()))
        self._refused = 0
        self._failed = 0
        self._reason = ""
        self._logged_at = -math.inf

    def accept(self, listener: socket.socket) -> tuple[socket.socket, Any] | None:
        """What `listener.accept()` returns; or None if, out of descriptors, a waiting peer
        was answered instead. Raises BlockingIOError when nobody is waiting, and OSError
        when accept() failed and nobody could be answered: then wait before trying again."""
        if self._lost:
            # Taken back before a peer can have it. Between the refused peer's close and
            # the spare's open another thread may hold a descriptor for a moment (glibc
            # reads /proc/stat as a new thread starts); a peer accepted then would turn
            # the spare into a session, and every refusal after it would be silence.
            # Until it is back, accept nobody: the caller waits and tries again.
            self._take()
            if self._spare < 0:
                raise OSError(errno.EMFILE, "no descriptor to spare yet")
            self._lost = False
        try:
            return listener.accept()
        except BlockingIOError:
            raise
        except OSError as error:
            self._reason = error.strerror or str(error)
            if error.errno not in _OUT_OF_DESCRIPTORS or not self._answer(listener):
                self._failed += 1
                self._log()
                raise
        self._refused += 1
        self._log()
        return None

    def _answer(self, listener: socket.socket) -> bool:
        """Serve one waiting peer its refusal on the spare descriptor, if there is one."""
        if self._spare < 0:
            return False
        os.close(self._spare)
        self._spare = -1
        try:
            sock, _ = listener.accept()  # BlockingIOError: nobody waiting after all
            netutil.refuse(sock, self._refusal)
        except BlockingIOError:
            raise
        except OSError:  # the spare went to another thread meanwhile
            return False
        finally:
            self._take()  # once the peer's descriptor is closed: it is the spare's
            self._lost = self._spare < 0
        return True

    def _take(self) -> None:
        if self._spare < 0:
            # Still none to spare: the next failed accept tries again.
            with contextlib.suppress(OSError):
                self._spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def _log(self) -> None:
        now = time.monotonic()
        if now - self._logged_at < FAILURES_LOGGED_EVERY:
            return
        if self._refused:
            log.warning("%s: refused %d peers with an ERROR line", self._reason, self._refused)
        if self._failed:
            log.warning("accept failed %d times: %s", self._failed, self._reason)
        self._refused = self._failed = 0
        self._logged_at = now

    def close(self) -> None:
        self._logged_at = -math.inf  # what was counted since the last warning is told now
        self._log()
        if self._spare >= 0:
            os.close(self._spare)
            self._spare = -1
