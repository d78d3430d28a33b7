"""A connection of one flavour, offered to a layer of the other flavour.

- `BlockingFace`: an asyncio connection used by a threaded session or client. Lines
  cross in janus queues: a reader task fills `inbox`, a writer task drains `outbox`.
  A stream of lines is what crosses here, and janus keeps it a stream: the thread
  never makes a round trip to the loop per line, it only waits on a queue.
- `AsyncFace`: a blocking connection used by a session or client coroutine. It streams
  the other way round: one reader in a worker thread (one `Bridge.run_in_thread` call
  that lasts as long as the connection) receives lines and puts them in a janus queue,
  the lines that arrived together as one item. A reply is written from the loop with a
  send that never blocks; only when the peer is slow to read does the rest go to a
  worker (run_in_thread). So a line crosses at most once, one way.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Callable

import janus

from guessgame import crossing, netutil, protocol
from guessgame.aio import connection as aio
from guessgame.bridge import Bridge, BridgeError
from guessgame.observe import trace
from guessgame.protocol import GameError, PeerClosed, ProtocolError
from guessgame.threaded import connection as threaded

OUTBOX_LINES = 16
"""Lines a thread may send ahead of the socket; past this send() waits for the writer,
so a peer that never reads fills its own TCP window, not the server's memory."""


INBOX_BATCHES = 16
"""Batches of lines read ahead for the side that uses the connection; past this the
reader stops reading the socket."""

BATCH_LINES = 16
"""Lines one batch holds at most: lines read ahead together cross as one queue item."""

Batch = tuple[str | GameError, ...]


class BlockingFace:
    """The blocking `Lines` interface over an asyncio connection. Build it on the loop."""

    def __init__(self, connection: aio.Connection, bridge: Bridge) -> None:
        self._connection = connection
        self._bridge = bridge
        self.peer = connection.peer
        self._inbox: janus.Queue[Batch] = janus.Queue(INBOX_BATCHES)
        self._ready: collections.deque[str | GameError] = collections.deque()
        self._outbox: janus.Queue[str] = janus.Queue(OUTBOX_LINES)
        # The face holds each queue's two ends itself, so that closing can unlink them
        # from their queue (crossing.unlink_janus) and they still answer afterwards.
        # While the crossings are observed, the ends announce each line (crossing.ends).
        user = f"the thread using connection {self.peer}"
        self._inbox_sync, self._inbox_async = crossing.ends(
            self._inbox, "janus (inbox)", user, _received)
        self._outbox_sync, self._outbox_async = crossing.ends(
            self._outbox, "janus (outbox)", user, _sent)
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
        try:
            self._outbox_sync.put(line)
        except janus.SyncQueueShutDown:  # the writer failed and closed the outbox
            raise PeerClosed() from self._send_failure

    def receive(self) -> str:
        if not self._ready:
            try:
                self._ready.extend(self._inbox_sync.get())
            except janus.SyncQueueShutDown:  # the reader already handed over the end
                raise PeerClosed() from None
        return _next_line(self._ready)

    def close(self) -> None:
        try:
            self._bridge.run_in_loop(self._close())
        except BridgeError:
            # The loop stopped under this face and took its tasks with it. A session
            # closes in a `finally`, where raising would hide its own exception; the
            # peer is told the stream ended, which is all a close can still do.
            netutil.abort(self._connection.socket)

    # --- the loop's side -------------------------------------------------------------

    async def _read(self) -> None:
        while True:
            batch: list[str | GameError] = []
            while _another_line(batch, self._connection.read_ahead):
                try:
                    batch.append(await self._connection.receive())
                except (ProtocolError, PeerClosed) as error:
                    batch.append(error)
            last = _ends_stream(batch[-1])
            await self._inbox_async.put(tuple(batch))
            # An error's traceback holds this frame, which must not hold the error.
            del batch
            if last:
                self._inbox.shutdown()  # a further receive() fails instead of waiting
                return

    async def _write(self) -> None:
        while True:
            try:
                line = await self._outbox_async.get()
            except janus.AsyncQueueShutDown:  # closed, and everything queued was sent
                return
            try:
                await self._connection.send(line)
            except PeerClosed as gone:
                # Wake a thread waiting for room, and refuse its later sends.
                self._send_failure = gone
                self._outbox.shutdown(immediate=True)
                return

    async def _close(self) -> None:
        # Order matters: flush what the thread sent, stop reading, release janus's
        # notifier tasks, and only then close the transport.
        self._outbox.shutdown()
        await self._writer
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self._inbox.aclose()
        await self._outbox.aclose()
        crossing.unlink_janus(self._inbox)
        crossing.unlink_janus(self._outbox)
        self._send_failure = None  # its traceback holds the writer's frame, so this face
        await self._connection.close()


def _received(item: object) -> str:
    return f"receive {item!r}"


def _sent(line: object) -> str:
    return f"send {line!r}"


def _another_line(batch: list[str | GameError], read_ahead: Callable[[], bool]) -> bool:
    """Whether one more line goes into this batch: the first always; after it only the
    lines already read ahead, up to BATCH_LINES, and none after the connection's last."""
    return not batch or (not _ends_stream(batch[-1]) and len(batch) < BATCH_LINES
                         and read_ahead())


def _ends_stream(item: str | GameError) -> bool:
    """Whether nothing can follow `item`: the peer left, or its error closes the connection."""
    return isinstance(item, PeerClosed) or (isinstance(item, ProtocolError)
                                             and item.closes_connection)


def _next_line(ready: collections.deque[str | GameError]) -> str:
    """The next line of the batch that crossed; an error in its place is raised here, on
    the side that reads, as the connection itself would have raised it."""
    item = ready.popleft()
    if isinstance(item, GameError):
        try:
            raise item
        finally:
            del item  # the traceback keeps this frame, which must not keep the error
    return item


class AsyncFace:
    """The asyncio `Lines` interface over a blocking connection. Build it on the loop."""

    def __init__(self, connection: threaded.Connection, bridge: Bridge) -> None:
        self._connection = connection
        self._bridge = bridge
        self.peer = connection.peer
        self._thread_name = f"connection {self.peer}"
        self._inbox: janus.Queue[Batch] = janus.Queue(INBOX_BATCHES)
        self._inbox_sync, self._inbox_async = crossing.ends(
            self._inbox, "janus (inbox)", f"reader {self.peer}", _received)
        self._ready: collections.deque[str | GameError] = collections.deque()
        self._reader: asyncio.Task[None] | None = None  # started by the first receive()
        self._closing = False

    async def send(self, line: str) -> None:
        rest = self._send_now(line)
        if rest:  # the peer is slow to read: wait for room in a worker, not on the loop
            await self._bridge.run_in_thread("connection", self._send_rest, rest,
                                             thread_name=self._thread_name)

    def _send_now(self, line: str) -> bytes:
        """Send what the socket takes at once, without ever blocking; return the rest.

        A reply that fits the socket's buffer, as nearly every reply does, then crosses
        to no thread at all. The rest, b"" if nothing is left, goes to `_send_rest` in
        a worker, which is the blocking connection's own send.
        """
        if trace.enabled:
            trace.event("connection", f"send {line!r}")
        data = protocol.encode(line)
        try:
            sent = self._connection.socket.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return data
        except OSError as error:
            raise PeerClosed() from error
        return data[sent:]

    def _send_rest(self, data: bytes) -> None:
        """The blocking end of `_send_now`: what the socket did not take at once."""
        try:
            self._connection.socket.sendall(data)
        except OSError as error:
            raise PeerClosed() from error

    async def receive(self) -> str:
        if not self._ready:
            if self._reader is None:
                self._reader = asyncio.create_task(
                    self._bridge.run_in_thread("connection", self._read,
                                               thread_name=f"reader {self.peer}"),
                    name=f"reader {self.peer}")
            try:
                self._ready.extend(await self._inbox_async.get())
            except janus.AsyncQueueShutDown:  # the reader has handed over its last line
                raise PeerClosed() from None
        return _next_line(self._ready)

    async def close(self) -> None:
        # Refuse the reader's next batch, then wake it from its read: closing a socket
        # never blocks, and the reader's worker is free again before close() returns.
        self._closing = True
        self._inbox.shutdown(immediate=True)
        self._connection.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        await self._inbox.aclose()
        crossing.unlink_janus(self._inbox)

    # --- the reader's thread ---------------------------------------------------------

    def _read(self) -> None:
        connection = self._connection
        while True:
            batch: list[str | GameError] = []
            while _another_line(batch, connection.read_ahead):
                try:
                    batch.append(connection.receive())
                except (ProtocolError, PeerClosed) as error:
                    batch.append(error)
            last = _ends_stream(batch[-1])
            try:
                # Closed by the loop side, which shuts the queue before it wakes this
                # read: then the batch is not offered, so no crossing is left untaken.
                if not self._closing:
                    self._inbox_sync.put(tuple(batch))
            except janus.SyncQueueShutDown:  # closed while waiting for room
                return
            finally:
                del batch  # an error's traceback holds this frame, which must not hold it
            if self._closing:
                return
            if last:
                self._inbox.shutdown()  # a further receive() fails instead of waiting
                return
