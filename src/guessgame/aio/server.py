"""Accepts connections and gives each one its own task."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any

from guessgame import netutil
from guessgame.admission import ACCEPT_RETRY_DELAY, Reserve, Sessions
from guessgame.observe import trace

log = logging.getLogger("guessgame.server")

ACCEPT_BATCH = 1024
ACCEPT_BATCH_SECONDS = 0.02
"""Peers the acceptor takes per wake-up, and for how long at most, before it lets the
sessions run again. One per wake-up made a burst of 1000 arrivals wait for every
admitted session to take a turn between two accepts. 64 made a burst of 10,000 wait the
same way: at all-async, 3,152 had no reply within 4 s; with 1024 all had one within
2.7 s. The time bound is for blocking sessions in worker threads (`async=server`):
there each accept() waits for the GIL behind them, and 950 accepts in one go kept the
loop from handing anyone to a worker for up to half a second."""

Serve = Callable[[socket.socket, str], Coroutine[Any, Any, None]]
"""Serves one accepted socket under a session id, in the calling task."""


class Server:
    """A listener whose acceptor task starts one session task per connection.

    `stop()` returns only once the acceptor and every session task have ended.
    """

    def __init__(self, listener: socket.socket, serve: Serve, max_connections: int,
                 numbers: Iterator[int] | None = None) -> None:
        self._listener = listener
        self._serve = serve
        self._sessions = Sessions(max_connections, numbers)
        self._tasks: set[asyncio.Task[None]] = set()
        self._acceptor: asyncio.Task[None] | None = None
        self._reserve = Reserve()
        self.address = netutil.address(listener.getsockname())

    @property
    def open_sessions(self) -> int:
        """Sessions admitted and not yet released; 0 once every peer has been let go."""
        return len(self._sessions)

    async def start(self) -> None:
        self._listener.setblocking(False)
        self._acceptor = asyncio.create_task(self._accept_loop(), name="acceptor")

    async def stop(self) -> None:
        """Stop accepting, wake every session, and await every task this server started."""
        if self._acceptor is not None:
            self._acceptor.cancel()
            await asyncio.gather(self._acceptor, return_exceptions=True)
        self._listener.close()
        self._reserve.close()
        self._sessions.abort_all()
        # Only tasks still running: since 3.12, gather() over tasks that have all
        # finished returns a finished future without yielding to the loop, so a loop
        # that waited for finished tasks to leave the set would spin forever.
        while running := [task for task in self._tasks if not task.done()]:
            await asyncio.gather(*running, return_exceptions=True)

    async def hand_over_listener(self) -> socket.socket:
        """Stop accepting and return the listener for another server to accept on.

        The session tasks go on; `stop()` still ends them, and closes this server's own
        descriptor of the listener, not the one handed over (a dup of it). Connections
        waiting in the backlog stay there: the acceptor is cancelled only while it waits
        for readability or yields between two accepts, never with a socket in hand.
        """
        if self._acceptor is not None:
            self._acceptor.cancel()
            await asyncio.gather(self._acceptor, return_exceptions=True)
        return self._listener.dup()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def _accept_loop(self) -> None:
        # Not loop.sock_accept(): cancelled by stop() just after it accepted, it would
        # drop the new socket unclosed, and its peer would wait forever. Waiting only
        # for readability and accepting with no await in between loses nothing.
        while True:
            await _readable(self._listener)
            while (taken := self._accept_batch()) is None:
                await asyncio.sleep(0)  # more may be waiting: let the sessions run first
            if taken < 0:  # accepting failed (out of descriptors, say): wait, not spin
                await asyncio.sleep(ACCEPT_RETRY_DELAY)

    def _accept_batch(self) -> int | None:
        """Accept waiting peers for up to ACCEPT_BATCH or ACCEPT_BATCH_SECONDS: how many
        once none is left, -1 if accept() failed, None if some may still be waiting."""
        deadline = time.monotonic() + ACCEPT_BATCH_SECONDS
        for taken in range(ACCEPT_BATCH):
            if time.monotonic() > deadline:
                return None
            # The socket stays as accept() made it: the connection layer sets the mode it
            # needs (asyncio streams or blocking reads), and each system call here is
            # one more wait for the GIL while worker threads run sessions.
            try:
                accepted = self._reserve.accept(self._listener)
            except BlockingIOError:  # nobody else waiting
                return taken
            except OSError:  # logged by the reserve
                return -1
            if accepted is not None:  # else a peer was told there is no descriptor left
                self._admit(accepted[0], netutil.address(accepted[1]))
        return None

    def _admit(self, sock: socket.socket, peer: str) -> None:
        session_id = self._sessions.admit(sock, peer)
        if session_id is None:
            return
        if trace.enabled:
            trace.event("server", f"accepted {peer} as {session_id}")
        task = asyncio.create_task(self._run_session(sock, session_id), name=f"session {peer}")
        self._tasks.add(task)

    async def _run_session(self, sock: socket.socket, session_id: str) -> None:
        try:
            await self._serve(sock, session_id)
        except Exception:  # a bug, not a peer's doing: keep the traceback, keep serving
            log.exception("%s: session failed", session_id)
        finally:
            # Released first: once closed, the descriptor may be another peer's (see
            # Sessions.admit, which looks at the open ones).
            self._sessions.release(session_id)
            sock.close()
            # Leave the set in the task's last step, not in a done callback a step later:
            # then stop() never finds a finished task still listed.
            self._tasks.discard(asyncio.current_task())


async def _readable(sock: socket.socket) -> None:
    """Return once `sock` can be read (for a listener: has a connection to accept)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())
