"""Runs the configured server flavour, with its report printer, from either world.

A test or the CLI starts and stops a server without knowing which flavour it is:
`start()`/`stop()` from a thread, `astart()`/`astop()` from a coroutine. Stopping
returns only after everything the server started has ended, in this order: the
acceptor, the sessions, the report printer (which gives up after reports.STOP_FLUSH).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from types import TracebackType

from guessgame import netutil
from guessgame.aio import server as aio_server
from guessgame.bridge import Bridge, loop_thread, run_in_new_thread
from guessgame.config import SERVER_LAYERS, Settings
from guessgame.live.flavour_stats import FlavourStats
from guessgame.live.recording import Recording
from guessgame.live.rollout import PerConnection
from guessgame.outputs import Output, Write
from guessgame.reports import Reports
from guessgame.results import Store
from guessgame.threaded import server as threaded_server

LISTEN_BACKLOG = 4096


class ServerHost:
    def __init__(self, settings: Settings, bridge: Bridge | None, host: str = "127.0.0.1",
                 port: int = 0, seed: int | None = None,
                 write: Write | Output | None = None, *,
                 listener: socket.socket | None = None, numbers: Iterator[int] | None = None,
                 stats: FlavourStats | None = None, results: Store | None = None) -> None:
        """Listen on `host:port`, or on `listener`, one a previous server handed over;
        `numbers`, `stats` and the `results` store are shared by the servers that
        follow one another on it."""
        self.settings = settings
        self._bridge = bridge
        self._seed = seed
        self._write = write
        self._numbers = numbers
        self._stats = stats
        self._recording = None if results is None else Recording(results, bridge)
        if listener is None:
            listener = netutil.listen(host, port, LISTEN_BACKLOG)
        self._listener = netutil.HeldListener(listener)
        self.address = netutil.address(self._listener.sockname)
        self.port: int = self._listener.sockname[1]
        self._reports: Reports | None = None
        self._threaded: threaded_server.Server | None = None
        self._async: aio_server.Server | None = None

    @property
    def open_sessions(self) -> int:
        """Sessions being served now; tests wait on it to see that peers were let go."""
        server = self._threaded or self._async
        return 0 if server is None else server.open_sessions

    @property
    def _is_async(self) -> bool:
        return self.settings.layers.server

    # --- from a thread -------------------------------------------------------------

    def start(self) -> None:
        if self._is_async:
            assert self._bridge is not None
            self._bridge.run_in_loop(self._start_async())
        else:
            self._start_threaded()

    def stop(self) -> None:
        self._stopping()
        if self._is_async:
            assert self._bridge is not None
            self._bridge.run_in_loop(self._stop_async())
        else:
            self._stop_threaded()
            # Async sessions, the stage's or a rollout's, may leave their last games on
            # the loop's side: one crossing waits for them, made whether or not any are
            # left, so a trace is the same from run to run.
            if self._recording is not None and self.settings.may_be_async("session"):
                assert self._bridge is not None
                self._bridge.run_in_loop(self._recording.crossed())

    def __enter__(self) -> ServerHost:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- from a coroutine ----------------------------------------------------------

    async def astart(self) -> None:
        if self._is_async:
            await self._start_async()
        else:
            self._start_threaded()  # only starts threads: quick enough for the loop

    async def astop(self) -> None:
        self._stopping()
        if self._is_async:
            await self._stop_async()
        else:
            assert self._bridge is not None
            await self._bridge.run_in_thread("server", self._stop_threaded,
                                             thread_name="server stop")
            await self.results_crossed()

    async def results_crossed(self) -> None:
        """Return once the games its async sessions ended are in the results store's
        buffer, not waiting on the loop's side (recording.py)."""
        if self._recording is not None:
            await self._recording.crossed()

    def _stopping(self) -> None:
        """From here on, a game cut short ends as `stopped`, not as its peer's doing."""
        if self._recording is not None:
            self._recording.stopping = True

    # --- handing the listener to the next server (a reload) ------------------------

    def hand_over(self) -> socket.socket:
        """From a thread: stop accepting, keep serving, and return the listener."""
        if self._is_async:
            assert self._bridge is not None
            return self._bridge.run_in_loop(self.ahand_over())
        assert self._threaded is not None, "only a started server hands over"
        return self._threaded.hand_over_listener()

    async def ahand_over(self) -> socket.socket:
        """From a coroutine: a threaded server joins its acceptor, in a thread of its own."""
        if self._is_async:
            assert self._async is not None, "only a started server hands over"
            return await self._async.hand_over_listener()
        return await run_in_new_thread(self.hand_over, "hand over")

    # --- the two flavours ----------------------------------------------------------

    def _per_connection(self, reports: Reports | None) -> PerConnection:
        return PerConnection(self.settings, self._bridge, reports, self._seed, self._stats,
                             self._recording)

    def _start_threaded(self) -> None:
        reports = None if self._write is None else Reports(self._write)
        serve = self._per_connection(reports).serve_in_thread
        server = threaded_server.Server(self._listener.take(), serve,
                                        self.settings.max_connections, self._numbers,
                                        self.settings.worker_idle_timeout)
        # Start threads only once nothing else can fail, so a failed start leaks none.
        self._reports, self._threaded = reports, server
        if reports is not None:
            reports.start_thread()
        server.start()

    def _stop_threaded(self) -> None:
        if self._threaded is not None:
            self._threaded.stop()
        if self._reports is not None:
            self._reports.stop_thread()

    async def _start_async(self) -> None:
        if self._write is not None:
            self._reports = Reports(self._write)
            await self._reports.start_task()
        serve = self._per_connection(self._reports).serve_in_task
        self._async = aio_server.Server(self._listener.take(), serve,
                                        self.settings.max_connections, self._numbers)
        await self._async.start()

    async def _stop_async(self) -> None:
        if self._async is not None:
            await self._async.stop()
        await self.results_crossed()
        if self._reports is not None:
            await self._reports.stop_task()


@contextlib.contextmanager
def serving(settings: Settings, host: str = "127.0.0.1", port: int = 0,
            seed: int | None = None, write: Write | Output | None = None) -> Iterator[ServerHost]:
    """Run a server in the background, for a caller that is a plain thread (a test, say).

    A loop thread is started only if a server-side layer is async, and is closed after
    the server has stopped.
    """
    with loop_thread(settings, SERVER_LAYERS) as bridge, \
            ServerHost(settings, bridge, host, port, seed, write) as server:
        yield server
