"""The four layers at one combination, wired with the bridges that combination needs.

This is the only module that looks at which layers are async. Every crossing between
a thread and the loop is made here or in what it picks for the layers: the connection
faces (adapters.py), the report queue (reports.py) and the way to the results store
(live/recording.py). So reading this file tells which bridge appears at which stage.
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

from guessgame import adapters, results
from guessgame.aio import client as aio_client
from guessgame.aio import connection as aio_connection
from guessgame.aio import session as aio_session
from guessgame.bridge import Bridge
from guessgame.config import Layers, Settings
from guessgame.live.flavour_stats import Meter
from guessgame.live.recording import Recording
from guessgame.observe import trace
from guessgame.outcomes import Scorekeeper
from guessgame.protocol import OURS, Decision, Game, Guesser, Vocabulary
from guessgame.reports import Reports
from guessgame.threaded import client as threaded_client
from guessgame.threaded import connection as threaded_connection
from guessgame.threaded import session as threaded_session

Rounds = list[tuple[int, Decision]]

_UNSEEDED = random.Random()


class System:
    def __init__(self, settings: Settings, bridge: Bridge | None = None,
                 reports: Reports | None = None, seed: int | None = None,
                 layers: Layers | None = None, meter: Meter | None = None,
                 recording: Recording | None = None) -> None:
        """`layers` overrides the settings' for one connection a rollout chose them for;
        `meter` times that connection's replies for the flavour statistics; `recording`
        takes each game its sessions finish."""
        # No check for a bridge here: a server whose only async layer is the client's
        # (or a client whose only async layers are the server's) never crosses.
        self.settings = settings
        self.layers = settings.layers if layers is None else layers
        self._meter = meter
        self._recording = recording
        # A plain attribute, not a property: a step into `self.bridge.run_in_loop(...)`
        # then goes straight across the bridge instead of into a getter first.
        self.bridge: Bridge = bridge if bridge is not None else _NoBridge(self.layers.label)
        self._reports = reports
        self._seed = seed
        self._limit = settings.max_line_bytes
        self._idle = settings.effective_idle_timeout

    def _guesser(self, session_id: str) -> Guesser:
        # Seeded per session, so a seed gives the same guesses whatever runs them.
        # Unseeded, they share one generator: a generator per connection would be the
        # largest part of an idle asyncio connection's memory.
        if self._seed is None:
            return Guesser(_UNSEEDED)
        return Guesser(random.Random(f"{self._seed}/{session_id}"))

    def _scorekeeper(self, peer: str) -> Scorekeeper | None:
        if self._recording is None:
            return None
        return Scorekeeper(peer, self.layers.label, results.utc_now,
                           self._recording.is_stopping)

    # --- server side: one session per accepted socket --------------------------------

    def serve_in_thread(self, sock: socket.socket, session_id: str) -> None:
        """Called by the threaded server, in the connection's own thread."""
        trace.SESSION_ID.set(session_id)
        if self.layers.session:
            self.bridge.run_in_loop(self._async_session(sock, session_id))
        else:
            self._blocking_session(sock, session_id)

    async def serve_in_task(self, sock: socket.socket, session_id: str) -> None:
        """Called by the asyncio server, in the connection's own task."""
        trace.SESSION_ID.set(session_id)
        if self.layers.session:
            await self._async_session(sock, session_id)
        else:
            # The worker takes the task's name, `session <peer>`: asking the socket for
            # its peer would be one more system call on the loop for every arrival.
            name = _task_name()
            await self.bridge.run_in_thread("session", self._blocking_session, sock,
                                            session_id, thread_name=name)

    def _blocking_session(self, sock: socket.socket, session_id: str) -> None:
        connection: threaded_connection.Lines
        if self.layers.connection:
            connection = self.bridge.run_in_loop(
                adapters.BlockingFace.open(self.bridge, sock, self._limit, self._idle))
        else:
            connection = threaded_connection.Connection(sock, self._limit, self._idle)
        report = self._reports.put_from_thread if self._reports else None
        # A session thread may wait on the store: it blocks for RECORD_WAIT at most.
        record = self._recording.store.record if self._recording else None
        timed = self._meter.replied if self._meter is not None else None
        try:
            threaded_session.Session(connection, self._guesser(session_id), report, timed,
                                     self._scorekeeper(connection.peer), record).run()
        finally:
            connection.close()

    async def _async_session(self, sock: socket.socket, session_id: str) -> None:
        connection: aio_connection.Lines
        if self.layers.connection:
            connection = await aio_connection.Connection.open(sock, self._limit, self._idle)
        else:
            connection = adapters.AsyncFace(
                threaded_connection.Connection(sock, self._limit, self._idle), self.bridge)
        report = self._reports.put_from_loop if self._reports else None
        # Through the store's own pool, in batches: never on the loop's thread.
        record = self._recording.record_from_loop if self._recording else None
        timed = self._meter.replied if self._meter is not None else None
        try:
            await aio_session.Session(connection, self._guesser(session_id), report, timed,
                                      self._scorekeeper(connection.peer), record).run()
        finally:
            await connection.close()

    # --- client side -----------------------------------------------------------------

    def play_in_thread(self, host: str, port: int, games: tuple[Game, ...],
                       words: Vocabulary = OURS) -> list[Rounds]:
        """Play `games`, reporting each decision with `words`."""
        # run_coroutine_threadsafe copies this context, so the id crosses with the call.
        with trace.session(trace.CLIENT_ID):
            if self.layers.client:
                return self.bridge.run_in_loop(self._async_play(host, port, games, words))
            return self._blocking_play(host, port, games, words)

    async def play_in_task(self, host: str, port: int, games: tuple[Game, ...],
                           words: Vocabulary = OURS) -> list[Rounds]:
        """Called when the client is the async top-level component, on its loop."""
        with trace.session(trace.CLIENT_ID):
            return await self._async_play(host, port, games, words)

    def _blocking_play(self, host: str, port: int, games: tuple[Game, ...],
                       words: Vocabulary) -> list[Rounds]:
        connection: threaded_connection.Lines
        if self.layers.connection:
            connection = self.bridge.run_in_loop(adapters.BlockingFace.connect(
                self.bridge, host, port, self._limit, self._idle))
        else:
            connection = threaded_connection.Connection.connect(host, port, self._limit,
                                                                self._idle)
        try:
            client = threaded_client.Client(connection, words)
            return [client.play(game) for game in games]
        finally:
            connection.close()

    async def _async_play(self, host: str, port: int, games: tuple[Game, ...],
                          words: Vocabulary) -> list[Rounds]:
        connection: aio_connection.Lines
        if self.layers.connection:
            connection = await aio_connection.Connection.connect(host, port, self._limit,
                                                                 self._idle)
        else:
            connection = adapters.AsyncFace(await self.bridge.run_in_thread(
                "connection", threaded_connection.Connection.connect, host, port, self._limit,
                self._idle), self.bridge)
        try:
            client = aio_client.Client(connection, words)
            return [await client.play(game) for game in games]
        finally:
            await connection.close()


def switch_interval(settings: Settings) -> float:
    """The GIL's switch interval for a server at these settings.

    Where threads read the sockets, a threaded acceptor's accept() waits for the GIL
    behind every session thread's recv(), so the interval is short. Once the loop reads
    every connection, session threads only wait on janus queues, and the longer interval
    costs less CPU per round while a burst is still answered in time
    (docs/performance.md, "Switch interval").
    """
    if settings.may_be_threaded("connection"):
        return settings.switch_interval
    return settings.switch_interval_async_connections


def _task_name() -> str:
    task = asyncio.current_task()
    return "session" if task is None else task.get_name()


class _NoBridge(Bridge):
    """Stands in for the bridge of a system that has none: any use of it says so."""

    def __init__(self, label: str) -> None:  # no loop, no pools: nothing to set up
        self._label = label

    def __getattribute__(self, name: str) -> Any:
        if name == "_label":
            return object.__getattribute__(self, name)
        raise ValueError(f"layers {self._label} need an event loop bridge")
