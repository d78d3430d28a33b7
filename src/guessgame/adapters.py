"""A connection of one flavour, offered to a layer of the other flavour.

- `BlockingFace`: an asyncio connection used by a threaded session or client. Lines
  cross in a pair of queues (`lines` in a trace): a reader task fills
  `inbox`, a writer task drains `outbox`. A stream of lines is what crosses here, and
  the queues keep it a stream: the thread never makes a round trip to the loop per
  line, it only waits on a queue. janus did this job once; per line it cost a task
  and two locks on the loop, and this stage about 1.4x the CPU per round.
- `AsyncFace`: a blocking connection used by a session or client coroutine. Each call
  runs in a worker thread through `Bridge.run_in_thread` (run_in_executor).
"""

from __future__ import annotations

import asyncio
import collections
import queue
import socket

from guessgame import trace
from guessgame.aio import connection as aio
from guessgame.bridge import Bridge
from guessgame.protocol import GameError, PeerClosed, ProtocolError
from guessgame.threaded import connection as threaded

INBOX_LINES = 16
"""Lines read ahead for a thread; past this the reader stops reading the socket."""

STREAM = "lines"
"""How lines cross between a threaded layer and an asyncio connection, in the trace."""


class BlockingFace:
    """The blocking `Lines` interface over an asyncio connection. Build it on the loop.

    Lines cross without a round trip per line and without a task per line:
    - loop -> thread: the reader task puts lines in a SimpleQueue, whose get() is all
      the thread waits on. At most INBOX_LINES are read ahead; past that the reader
      waits for the thread to take one, and only then does the thread call the loop.
    - thread -> loop: send() appends to a deque and pokes the writer task with one
      call_soon_threadsafe; the writer sends in order and waits for the socket to drain.
    """

    def __init__(self, connection: aio.Connection, bridge: Bridge) -> None:
        self._connection = connection
        self._bridge = bridge
        self._loop = bridge.loop
        self.peer = connection.peer
        self._inbox: queue.SimpleQueue[tuple[str | GameError, bool]] = queue.SimpleQueue()
        self._given = 0  # lines the reader put in the inbox; written on the loop only
        self._taken = 0  # lines the thread took; written by the thread only
        self._room: asyncio.Future[None] | None = None  # the reader waits for the thread
        self._ended = False  # the thread took the last item: nothing more will come
        self._outbox: collections.deque[str | None] = collections.deque()  # None: close
        self._more: asyncio.Future[None] | None = None  # the writer waits for lines
        self._send_failure: PeerClosed | None = None
        self._reader = asyncio.create_task(self._read(), name=f"reader {self.peer}")
        self._writer = asyncio.create_task(self._write(), name=f"writer {self.peer}")

    @classmethod
    async def open(cls, bridge: Bridge, sock: socket.socket, max_line_bytes: int,
                   idle_timeout: float | None) -> BlockingFace:
        return cls(await aio.Connection.open(sock, max_line_bytes, idle_timeout), bridge)

    @classmethod
    async def connect(cls, bridge: Bridge, host: str, port: int, max_line_bytes: int,
                      idle_timeout: float | None) -> BlockingFace:
        return cls(await aio.Connection.connect(host, port, max_line_bytes, idle_timeout), bridge)

    # --- the thread's side -----------------------------------------------------------

    def send(self, line: str) -> None:
        if self._send_failure is not None:
            raise self._send_failure
        if trace.enabled:
            trace.crossing(STREAM, "thread->loop", f"send {line!r}")
        self._outbox.append(line)
        self._loop.call_soon_threadsafe(self._poke_writer)

    def receive(self) -> str:
        if self._ended:  # the reader already handed over the end
            raise PeerClosed()
        item, self._ended = self._inbox.get()
        self._taken += 1
        if self._room is not None:  # read after counting: see _read()
            self._loop.call_soon_threadsafe(_wake, self._room)
        if trace.enabled:
            trace.crossing(STREAM, "loop->thread", f"receive {item!r}")
        if isinstance(item, GameError):
            raise item
        return item

    def close(self) -> None:
        self._bridge.run_in_loop(self._close())

    # --- the loop's side -------------------------------------------------------------

    async def _read(self) -> None:
        while True:
            item: str | GameError
            try:
                item = await self._connection.receive()
                last = False
            except ProtocolError as error:
                item, last = error, error.closes_connection
            except PeerClosed as gone:
                item, last = gone, True
            while self._given - self._taken >= INBOX_LINES:
                # Publish the wait before checking again, so that a thread taking a
                # line right now either sees it or has already made room.
                self._room = self._loop.create_future()
                if self._given - self._taken >= INBOX_LINES:
                    await self._room
                self._room = None
            self._given += 1
            self._inbox.put((item, last))
            if last:
                return

    def _poke_writer(self) -> None:
        if self._more is not None:
            _wake(self._more)

    async def _write(self) -> None:
        while True:
            while not self._outbox:
                # send() appends before it pokes, and the poke runs on this loop, so a
                # line appended now is seen here or wakes this wait.
                self._more = self._loop.create_future()
                await self._more
                self._more = None
            line = self._outbox.popleft()
            if line is None:  # closed, and everything queued before it was sent
                return
            try:
                await self._connection.send(line)
            except PeerClosed as gone:
                self._send_failure = gone
                return

    async def _close(self) -> None:
        # Order matters: flush what the thread sent, stop reading, and only then close
        # the transport.
        self._outbox.append(None)
        self._poke_writer()
        await self._writer
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self._connection.close()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class AsyncFace:
    """The asyncio `Lines` interface over a blocking connection."""

    def __init__(self, connection: threaded.Connection, bridge: Bridge) -> None:
        self._connection = connection
        self._bridge = bridge
        self.peer = connection.peer
        self._thread_name = f"connection {self.peer}"

    async def send(self, line: str) -> None:
        await self._bridge.run_in_thread("connection", self._connection.send, line,
                                         thread_name=self._thread_name)

    async def receive(self) -> str:
        return await self._bridge.run_in_thread("connection", self._connection.receive,
                                                thread_name=self._thread_name)

    async def close(self) -> None:
        self._connection.close()  # closing a socket never blocks, so no crossing
