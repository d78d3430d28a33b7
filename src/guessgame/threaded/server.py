"""Accepts connections and serves each one in a thread of its own.

Session threads come from a `WorkerPool`: a burst of arrivals starts them in parallel
instead of one `Thread.start()` after another in the acceptor, and a thread whose peer
left serves the next arrival or retires after `worker_idle_timeout`."""

from __future__ import annotations

import logging
import select
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from types import TracebackType

from guessgame import netutil, workers
from guessgame.admission import ACCEPT_RETRY_DELAY, Reserve, Sessions
from guessgame.observe import trace
from guessgame.workers import WorkerPool

log = logging.getLogger("guessgame.server")

ADMIT_BATCH = 64
"""Peers the acceptor accepts before it admits them. It has a thread of its own, so this
bounds only how long the first of them waits for the others' accept() calls, each of
which may wait for the GIL."""

Serve = Callable[[socket.socket, str], None]
"""Serves one accepted socket under a session id, in the calling thread."""


class Server:
    """A listener whose acceptor thread hands each connection to a session thread.

    `stop()` returns only once the acceptor and every session thread have ended.
    """

    def __init__(self, listener: socket.socket, serve: Serve, max_connections: int,
                 numbers: Iterator[int] | None = None,
                 worker_idle_timeout: float = workers.IDLE_TIMEOUT) -> None:
        self._listener = listener
        self._serve = serve
        self._sessions = Sessions(max_connections, numbers)
        self._pool = WorkerPool("session", max_connections, worker_idle_timeout)
        self._reserve = Reserve()
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
        self._pool.shutdown()
        self._reserve.close()

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
        # No arrival can reach this server's pool any more: its idle session threads go
        # now, and each busy one once its session ends, not after worker_idle_timeout.
        self._pool.shutdown(wait=False)
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
        """Accept and admit up to ADMIT_BATCH waiting peers; how many, or -1 if accept()
        failed or a session thread could not be started."""
        arrivals, failed = self._accept_waiting()
        # Admitted back to back, after the accepts, so that the pool starts the batch's
        # threads in parallel (see workers.py) while this thread goes back to accepting.
        for sock, peer in arrivals:
            failed = not self._admit(sock, peer) or failed
        return -1 if failed else len(arrivals)

    def _accept_waiting(self) -> tuple[list[tuple[socket.socket, str]], bool]:
        """Up to ADMIT_BATCH waiting peers, and whether accept() failed."""
        arrivals: list[tuple[socket.socket, str]] = []
        for _ in range(ADMIT_BATCH):
            if self._stopping:  # on a stop or a hand-over the rest stay in the backlog
                break
            try:
                accepted = self._reserve.accept(self._listener)
            except BlockingIOError:  # nobody else waiting
                break
            except OSError:  # logged by the reserve
                return arrivals, True
            if accepted is not None:  # else a peer was told there is no descriptor left
                sock, sockaddr = accepted
                arrivals.append((sock, netutil.address(sockaddr)))
        return arrivals, False

    def _admit(self, sock: socket.socket, peer: str) -> bool:
        """Hand the peer to a session thread; False if no thread could be started."""
        session_id = self._sessions.admit(sock, peer)
        if session_id is None:
            return True
        if trace.enabled:
            trace.event("server", f"accepted {peer} as {session_id}")
        try:
            self._pool.submit(self._run_session, sock, session_id, peer)
        except RuntimeError as error:  # "cannot start a thread": a process limit
            log.warning("%s: refused: %s", peer, error)
            self._sessions.release(session_id)
            sock.close()
            return False
        return True

    def _run_session(self, sock: socket.socket, session_id: str, peer: str) -> None:
        thread = threading.current_thread()
        idle_name, thread.name = thread.name, f"session {peer}"
        try:
            self._serve(sock, session_id)
        except Exception:  # a bug, not a peer's doing: keep the traceback, keep serving
            log.exception("%s: session failed", session_id)
        finally:
            # Released first: once closed, the descriptor may be another peer's (see
            # Sessions.admit, which looks at the open ones).
            self._sessions.release(session_id)
            sock.close()
            thread.name = idle_name
