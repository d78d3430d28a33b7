"""`guessgame serve`: one process that moves between stages while it serves.

Each stage the server runs at is a *generation*: a ServerHost at that stage, accepting
on the one listening socket. On SIGHUP the config file is read again; if it loads, a new
generation starts on the listener the current one hands over, and the current one stops
accepting but goes on serving its connections until their peers leave (it *drains*);
then it is stopped. Connections that arrive meanwhile wait in the listener's backlog, so
none is refused, and every game finishes on the flavours it started with.

The main thread does the switching, in one of two modes:

- when the current generation, or one still draining, has a layer that may be async,
  the main thread runs the process's one event loop (asyncio.Runner) and the bridge
  adopts it: at the all-async stage the process has no other thread;
- otherwise no loop exists, and the main thread blocks on the signal wakeup fd.

A reload that needs a loop leaves the blocking mode and starts one; once the last
generation that needed the loop has drained, the loop is closed and the main thread
blocks again. Signals (SIGINT and SIGTERM stop, SIGHUP reloads, SIGUSR1 prints who
waits on whom and the flavour statistics, SIGUSR2 the statistics alone) are caught the
same way in both modes, so none is ever left to its default action, which for SIGHUP
would end the process.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import logging
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Final

from guessgame import compose, netutil, outputs
from guessgame.bridge import Bridge, new_event_loop, run_in_new_thread
from guessgame.config import SERVER_LAYERS, Settings
from guessgame.live import reload
from guessgame.live.flavour_stats import FlavourStats
from guessgame.live.host import LISTEN_BACKLOG, ServerHost
from guessgame.observe import debugging
from guessgame.outputs import Output, Write
from guessgame.results import STOP_FLUSH, Store

log = logging.getLogger("guessgame")

STOP: Final = (signal.SIGINT, signal.SIGTERM)
SIGNALS: Final = (*STOP, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)

DRAIN_POLL: Final = 0.05
"""While a generation drains, how often to look whether its last session has ended."""


class Signals:
    """The process's signals, handed to the main thread whether it blocks or runs a loop.

    Python runs a handler in the main thread only once that thread runs Python code
    again, and the kernel may deliver the signal to any thread. The wakeup fd is written
    whichever thread took it: blocking, the main thread waits on that; running the loop,
    the loop watches it. The handler queues the signal and, on the loop, wakes the
    waiting task, so the signal is taken from the queue in either mode.
    """

    def __init__(self) -> None:
        self._pending: collections.deque[int] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None

    def __enter__(self) -> Signals:
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(),
                                                 warn_on_full_buffer=False)
        self._previous = {signum: signal.signal(signum, self._arrived) for signum in SIGNALS}
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._reader.close()
        self._writer.close()

    def _arrived(self, signum: int, frame: FrameType | None) -> None:
        self._pending.append(signum)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        if self._ready is not None:
            self._ready.set()

    def _next(self) -> int | None:
        return self._pending.popleft() if self._pending else None

    # --- the main thread, blocking ----------------------------------------------------

    def wait(self, timeout: float | None) -> int | None:
        """The next signal; None if none came within `timeout` seconds."""
        if not self._pending:
            self._reader.settimeout(timeout)
            with contextlib.suppress(TimeoutError):
                self._reader.recv(256)
        return self._next()  # the call runs the Python handler first, if it is due

    # --- the main thread, running the loop --------------------------------------------

    def attach(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._reader.setblocking(False)
        self._loop.add_reader(self._reader.fileno(), self._drain_wakeup_fd)

    def detach(self) -> None:
        assert self._loop is not None
        self._loop.remove_reader(self._reader.fileno())
        self._loop = self._ready = None

    def _drain_wakeup_fd(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._reader.recv(256)
        self._wake()  # the handler has run by now: this is Python code in the main thread

    async def next_on_loop(self, timeout: float | None) -> int | None:
        assert self._ready is not None
        if not self._pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout)
            self._ready.clear()
        return self._next()


class LiveServer:
    """Serves until SIGINT or SIGTERM, moving to the config's stage on each SIGHUP."""

    def __init__(self, settings: Settings, host: str, port: int, write: Write | Output | None,
                 seed: int | None = None, results: Store | None = None) -> None:
        """`results`, if given, records every game; its owner closes it after run()."""
        self._listener = netutil.HeldListener(netutil.listen(host, port, LISTEN_BACKLOG))
        self.address = netutil.address(self._listener.sockname)
        self._settings = settings
        self._write = write
        self._seed = seed
        self._results = results
        self._numbers = itertools.count(1)
        self.stats = FlavourStats()
        self._current: ServerHost | None = None
        self._draining: list[ServerHost] = []
        self._bridge: Bridge | None = None
        self._starting: Settings | None = settings
        """A stage to start as soon as the main thread is in the mode it needs."""
        self._announce: Callable[[str], None] | None = None

    def run(self, announce: Callable[[str], None]) -> None:
        """Serve from the main thread; `announce` is told the address once the first
        server accepts and signals are caught, so a signal sent on seeing it is never
        missed, and a fresh start is what a reload ends as."""
        self._announce = announce
        with Signals() as signals:
            try:
                while not (self._run_on_loop(signals) if self._wants_loop()
                           else self._run_blocking(signals)):
                    pass
            finally:
                self._listener.close_unless_taken()

    # --- which mode -----------------------------------------------------------------

    def _wants_loop(self) -> bool:
        stages = [host.settings for host in (self._current, *self._draining) if host]
        if self._starting is not None:
            stages.append(self._starting)
        return any(stage.needs_loop_for(SERVER_LAYERS) for stage in stages)

    def _drained(self) -> list[ServerHost]:
        done = [host for host in self._draining if host.open_sessions == 0]
        self._draining = [host for host in self._draining if host not in done]
        return done

    def _host(self, settings: Settings, listener: socket.socket,
              bridge: Bridge | None) -> ServerHost:
        # The process is this server's alone, so its threads take turns at its pace.
        sys.setswitchinterval(compose.switch_interval(settings))
        return ServerHost(settings, bridge, seed=self._seed, write=self._write, listener=listener,
                          numbers=self._numbers, stats=self.stats, results=self._results)

    def _handed_over(self) -> None:
        """The current generation no longer accepts: it drains from now on."""
        if self._current is not None:
            self._draining.append(self._current)
            self._current = None

    def _started(self, host: ServerHost) -> None:
        if self._announce is None:  # not the first generation: a reload
            log.info("%s", reload.change(self._settings, host.settings))
        else:
            self._announce(self.address)
            self._announce = None
        self._current, self._settings = host, host.settings
        self._starting = None

    def _report_for(self, signum: int | None) -> Callable[[], None] | None:
        """What a signal that asks for a report prints, in either mode."""
        if signum == signal.SIGUSR1:
            return self._print_waits
        return self._print_stats if signum == signal.SIGUSR2 else None

    def _print_waits(self) -> None:
        """SIGUSR1: who waits on whom, then the flavour counts, on stderr."""
        try:
            outputs.write_stderr(debugging.waits().text)
        except Exception:  # a diagnostic must never stop the server it diagnoses
            log.exception("cannot write the wait graph")
        self._print_stats()

    def _print_stats(self) -> None:
        lines = ["flavours since start: sessions, errors (ERROR replies and failed "
                 "sessions), replies, and reply latency from line in to reply out",
                 *self.stats.table()]
        if self._results is not None:
            lines.append(self._results.status())
        outputs.write_stderr("".join(f"guessgame: {line}\n" for line in lines))

    def _flush_results(self) -> None:
        """Before a new generation takes over: every game ended so far is written."""
        if self._results is not None:
            self._results.flush(STOP_FLUSH)

    # --- no event loop: the main thread blocks ---------------------------------------

    def _run_blocking(self, signals: Signals) -> bool:
        """Serve until a signal stops the server (True) or a stage needs a loop (False)."""
        try:
            return self._serve_blocking(signals)
        except BaseException:
            self._stop_all_blocking()
            raise

    def _serve_blocking(self, signals: Signals) -> bool:
        if self._starting is not None:
            self._advance_blocking(self._starting)
        while True:
            signum = signals.wait(DRAIN_POLL if self._draining else None)
            for host in self._drained():
                host.stop()
            if signum in STOP:
                log.info("stopping on signal")
                self._stop_all_blocking()
                return True
            if (report := self._report_for(signum)) is not None:
                report()
            elif signum == signal.SIGHUP and (new := reload.reread(self._settings)):
                self._flush_results()
                if new.needs_loop_for(SERVER_LAYERS):
                    self._starting = new
                    return False
                self._advance_blocking(new)

    def _advance_blocking(self, settings: Settings) -> None:
        listener = self._listener.take() if self._current is None else self._current.hand_over()
        self._handed_over()
        host = self._host(settings, listener, None)
        host.start()
        self._started(host)

    def _stop_all_blocking(self) -> None:
        hosts = [host for host in (self._current, *self._draining) if host is not None]
        self._current, self._draining = None, []
        for host in hosts:
            host.stop()

    # --- with the event loop in the main thread --------------------------------------

    def _run_on_loop(self, signals: Signals) -> bool:
        with asyncio.Runner(debug=self._settings.debug,
                            loop_factory=lambda: new_event_loop(self._settings.uvloop)) as runner:
            return runner.run(self._on_loop(signals))

    async def _on_loop(self, signals: Signals) -> bool:
        task = asyncio.current_task()
        if task is not None:
            task.set_name("serve")
        self._bridge = Bridge.adopt_running_loop(self._settings.max_workers,
                                                 self._settings.worker_idle_timeout)
        signals.attach()
        try:
            if self._starting is not None:
                await self._advance_on_loop(self._starting)
            while self._wants_loop():
                signum = await signals.next_on_loop(DRAIN_POLL if self._draining else None)
                for host in self._drained():
                    await self._stop_on_loop(host)
                if signum in STOP:
                    log.info("stopping on signal")
                    await self._stop_all_on_loop()
                    return True
                if (report := self._report_for(signum)) is not None:
                    # Built and written by a thread of its own, which asks the loop
                    # only to list its tasks; writing to stderr blocks.
                    await run_in_new_thread(report, "signal report")
                elif signum == signal.SIGHUP:
                    # Reading a file blocks, and so does logging its error: not on the loop.
                    new = await run_in_new_thread(functools.partial(
                        reload.reread, self._settings), "reload")
                    if new is not None:
                        for each in (self._current, *self._draining):
                            if each is not None:  # games their sessions ended: to the store
                                await each.results_crossed()
                        await run_in_new_thread(self._flush_results, "results flush")
                        await self._advance_on_loop(new)
            return False
        except BaseException:
            await self._stop_all_on_loop()
            raise
        finally:
            signals.detach()
            bridge, self._bridge = self._bridge, None
            bridge.close()  # no session is left to use its workers: they join at once

    async def _advance_on_loop(self, settings: Settings) -> None:
        current = self._current
        listener = self._listener.take() if current is None else await current.ahand_over()
        self._handed_over()
        # Without a layer that needs the loop, the generation must not use it: it
        # outlives the loop when this mode ends.
        bridge = self._bridge if settings.needs_loop_for(SERVER_LAYERS) else None
        host = self._host(settings, listener, bridge)
        if settings.layers.server:
            await host.astart()
        else:
            # A threaded generation, whether its sessions use the loop or not: start()
            # starts its threads, and Thread.start() waits for each new one to run, behind
            # every busy thread for the GIL, which the loop that serves the others must not.
            await run_in_new_thread(host.start, "generation start")
        self._started(host)

    async def _stop_on_loop(self, host: ServerHost) -> None:
        if host.settings.layers.server:
            await host.astop()
        else:  # joins threads: not on the loop's thread
            await run_in_new_thread(host.stop, "server stop")

    async def _stop_all_on_loop(self) -> None:
        hosts = [host for host in (self._current, *self._draining) if host is not None]
        self._current, self._draining = None, []
        await asyncio.gather(*(self._stop_on_loop(host) for host in hosts))
