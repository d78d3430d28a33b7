"""Accepts connections and gives each one its own thread."""

from __future__ import annotations

import logging
import select
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from types import TracebackType

from guessgame import netutil, trace
from guessgame.serving import ACCEPT_BATCH, ACCEPT_RETRY_DELAY, Sessions

log = logging.getLogger("guessgame.server")

Serve = Callable[[socket.socket, str], None]
"""Serves one accepted socket under a session id, in the calling thread."""


class Server:
    """A listener whose acceptor thread starts one session thread per connection.

    `stop()` returns only once the acceptor and every session thread have ended.
    """

    def __init__(self, listener: socket.socket, serve: Serve, max_connections: int,
                 numbers: Iterator[int] | None = None) -> None:
        self._listener = listener
        self._serve = serve
        self._sessions = Sessions(max_connections, numbers)
        self._threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()
        self._stopping = False
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._acceptor: threading.Thread | None = None
        self.address = netutil.address(listener.getsockname())

    @property
    def open_sessions(self) -> int:
        """Sessions admitted and not yet released; 0 once every peer has been let go."""
        return len(self._sessions)

    def start(self) -> None:
        self._listener.setblocking(False)
        self._acceptor = threading.Thread(target=self._accept_loop, name="acceptor")
        self._acceptor.start()

    def stop(self) -> None:
        """Stop accepting, wake every session, and join every thread this server started."""
        self._stopping = True
        self._wake_writer.send(b"x")
        if self._acceptor is not None:
            self._acceptor.join()
        self._listener.close()
        self._wake_reader.close()
        self._wake_writer.close()
        self._sessions.abort_all()
        with self._threads_lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join()

    def hand_over_listener(self) -> socket.socket:
        """Stop accepting and return the listener for another server to accept on.

        The sessions go on; `stop()` still ends them, and closes this server's own
        descriptor of the listener, not the one handed over (a dup of it). Connections
        waiting in the backlog stay there for the next server: the acceptor stops
        between two accept() calls, never inside one.
        """
        self._stopping = True
        self._wake_writer.send(b"x")
        if self._acceptor is not None:
            self._acceptor.join()
        return self._listener.dup()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        # select() on the listener and a wake-up socket: closing a listener from another
        # thread does not reliably wake a thread blocked in accept().
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_reader:
                        return
                    # After a failed accept (out of descriptors, say) the listener
                    # stays readable: wait, for a stop at most, rather than spin.
                    if self._accept_batch() < 0 and self._stopped_within(ACCEPT_RETRY_DELAY):
                        return

    def _stopped_within(self, seconds: float) -> bool:
        ready, _, _ = select.select([self._wake_reader], [], [], seconds)
        return bool(ready)

    def _accept_batch(self) -> int:
        """Accept up to ACCEPT_BATCH waiting peers; how many, or -1 if accept() failed."""
        for taken in range(ACCEPT_BATCH):
            if self._stopping:  # a stop or a hand-over: leave the rest in the backlog
                return taken
            try:
                sock, sockaddr = self._listener.accept()
            except BlockingIOError:  # nobody else waiting
                return taken
            except OSError as error:
                log.warning("accept failed: %s", error.strerror)
                return -1
            if not self._admit(sock, netutil.address(sockaddr)):
                return -1
        return ACCEPT_BATCH

    def _admit(self, sock: socket.socket, peer: str) -> bool:
        """Start the peer's session thread; False if no thread could be started."""
        session_id = self._sessions.admit(sock, peer)
        if session_id is None:
            return True
        if trace.enabled:
            trace.event("server", f"accepted {peer} as {session_id}")
        thread = threading.Thread(target=self._run_session, args=(sock, session_id),
                                  name=f"session {peer}")
        with self._threads_lock:
            self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError as error:  # "can't start new thread": a process limit
            log.warning("%s: refused: %s", peer, error)
            with self._threads_lock:
                self._threads.discard(thread)
            self._sessions.release(session_id)
            sock.close()
            return False
        return True

    def _run_session(self, sock: socket.socket, session_id: str) -> None:
        try:
            self._serve(sock, session_id)
        except Exception:  # a bug, not a peer's doing: keep the traceback, keep serving
            log.exception("%s: session failed", session_id)
        finally:
            sock.close()
            self._sessions.release(session_id)
            with self._threads_lock:
                self._threads.discard(threading.current_thread())
