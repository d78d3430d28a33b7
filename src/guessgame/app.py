"""The commands, each run in the world its top-level component belongs to.

If the top-level component is async, asyncio.run() owns the loop in the main thread
and the bridge adopts it. Otherwise the main thread stays a plain thread, and a loop
thread is started only when one of the layers the command uses is async. Either way
the process has at most one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TextIO, TypeVar

from guessgame import debugging, waitgraph
from guessgame.bridge import Bridge, loop_thread_for, new_event_loop
from guessgame.compose import Rounds, System
from guessgame.config import CLIENT_LAYERS, LAYERS, SERVER_LAYERS, Settings
from guessgame.host import ServerHost
from guessgame.protocol import SEED_SCENARIO, Game, round_line

T = TypeVar("T")
log = logging.getLogger("guessgame")


def run_at_stage(settings: Settings, top_is_async: bool, parts: Iterable[str],
                 in_thread: Callable[[Bridge | None], T],
                 in_task: Callable[[Bridge], Awaitable[T]], name: str = "main") -> T:
    """Run a command's main function in the world its top-level component needs.

    `name` names asyncio.run's main task, as a debugger or the trace shows it.
    """
    if top_is_async:
        with asyncio.Runner(debug=settings.debug,
                            loop_factory=lambda: new_event_loop(settings.uvloop)) as runner:
            return runner.run(_adopting(settings, in_task, name))
    bridge = loop_thread_for(settings, parts)
    try:
        return in_thread(bridge)
    finally:
        if bridge is not None:
            bridge.close()


async def _adopting(settings: Settings, in_task: Callable[[Bridge], Awaitable[T]],
                    name: str) -> T:
    task = asyncio.current_task()
    if task is not None:  # asyncio.run() takes no name for its task
        task.set_name(name)
    bridge = Bridge.adopt_running_loop(settings.max_workers, settings.worker_idle_timeout)
    try:
        return await in_task(bridge)
    finally:
        # Every session has ended or was cancelled, and closing a blocking connection
        # wakes a worker parked on it, so joining the workers is immediate.
        bridge.close()


def client_transcript(games: Iterable[Game], rounds: Iterable[Rounds]) -> list[str]:
    lines = []
    for game, played in zip(games, rounds, strict=True):
        lines.append(game.header())
        lines.extend(round_line(guess, decision) for guess, decision in played)
    return lines


# --- demo ------------------------------------------------------------------------------


def demo(settings: Settings, seed: int | None, out: TextIO) -> int:
    """Server and client in one process: the server's transcript as it happens, then
    the client's. The client's lines wait for the server to stop, so the order of
    stdout never depends on how threads or tasks were scheduled."""
    games = SEED_SCENARIO

    def write(line: str) -> None:
        print(line, file=out)

    def in_thread(bridge: Bridge | None) -> list[Rounds]:
        with ServerHost(settings, bridge, seed=seed, write=write) as server:
            return System(settings, bridge).play_in_thread("127.0.0.1", server.port, games)

    async def in_task(bridge: Bridge) -> list[Rounds]:
        server = ServerHost(settings, bridge, seed=seed, write=write)
        await server.astart()
        try:
            return await System(settings, bridge).play_in_task("127.0.0.1", server.port, games)
        finally:
            await server.astop()

    rounds = run_at_stage(settings, settings.layers.client, LAYERS, in_thread, in_task,
                          name="demo")
    for line in client_transcript(games, rounds):
        write(line)
    out.flush()
    return 0


# --- serve -----------------------------------------------------------------------------


def serve(settings: Settings, host: str, port: int, out: TextIO, quiet: bool) -> int:
    """Serve until SIGINT or SIGTERM; then stop everything and return 0."""

    def write(line: str) -> None:
        print(line, file=out, flush=True)

    reports = None if quiet else write

    def announce(server: ServerHost) -> None:
        print(f"listening on {server.address}", file=out, flush=True)

    def in_thread(bridge: Bridge | None) -> int:
        # The main thread only waits for signals here, so it writes the wait graph
        # itself; the loop thread, if any, only lists its tasks for it.
        with stop_signals({WAITS_SIGNAL: write_waits}) as wait_for_signal, ServerHost(
                settings, bridge, host, port, write=reports) as server:
            announce(server)
            wait_for_signal()
            log.info("stopping on signal")
        return 0

    async def in_task(bridge: Bridge) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        reporters: list[threading.Thread] = []
        loop.add_signal_handler(WAITS_SIGNAL, _write_waits_from_thread, reporters)
        server = ServerHost(settings, bridge, host, port, write=reports)
        await server.astart()
        try:
            announce(server)
            await stop.wait()
            log.info("stopping on signal")
        finally:
            loop.remove_signal_handler(WAITS_SIGNAL)
            await server.astop()
            for reporter in reporters:  # each ends by itself once it has written
                while reporter.is_alive():
                    await asyncio.sleep(0.01)
        return 0

    return run_at_stage(settings, settings.layers.server, SERVER_LAYERS, in_thread, in_task,
                        name="serve")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
WAITS_SIGNAL = signal.SIGUSR1
"""`kill -USR1 PID` makes `serve` write who waits on whom to stderr, and go on serving."""


def write_waits() -> None:
    try:
        waitgraph.write_stderr(debugging.waits().text)
    except Exception:  # a diagnostic must never stop the server it diagnoses
        log.exception("cannot write the wait graph")


def _write_waits_from_thread(reporters: list[threading.Thread]) -> None:
    """On the loop, from its signal handler: the graph is built and written by a
    short-lived thread, so that neither the formatting nor the blocking write to
    stderr holds the loop. The loop is asked only to list its tasks (a quick callback)."""
    reporters[:] = [reporter for reporter in reporters if reporter.is_alive()]
    reporter = threading.Thread(target=write_waits, name="waits-report")
    reporters.append(reporter)
    reporter.start()


@contextlib.contextmanager
def stop_signals(
        others: Mapping[int, Callable[[], None]] | None = None) -> Iterator[Callable[[], None]]:
    """A function that blocks the main thread until SIGINT or SIGTERM arrives, and
    calls `others[signum]()` in this thread for each of the other signals named there.

    The kernel hands a process signal to any of its threads, and Python runs the handler
    in the main thread only when that thread next wakes: parked in Event.wait(), it may
    never wake. The wakeup fd is written whichever thread took the signal, so the main
    thread waits on that instead. Signals that arrive before the wait are kept in it.
    """
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    others = others or {}
    previous = {signum: signal.signal(signum, lambda *_: None)
                for signum in (*STOP_SIGNALS, *others)}

    def wait() -> None:
        while (signum := reader.recv(1)[0]) not in STOP_SIGNALS:
            if signum in others:
                others[signum]()

    try:
        yield wait
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_fd)
        reader.close()
        writer.close()


# --- play ------------------------------------------------------------------------------


def play(settings: Settings, host: str, port: int, game: Game, out: TextIO) -> int:
    """One game against any server; errors propagate as GameError or OSError."""

    def in_thread(bridge: Bridge | None) -> list[Rounds]:
        return System(settings, bridge).play_in_thread(host, port, (game,))

    async def in_task(bridge: Bridge) -> list[Rounds]:
        return await System(settings, bridge).play_in_task(host, port, (game,))

    rounds = run_at_stage(settings, settings.layers.client, CLIENT_LAYERS, in_thread, in_task,
                          name="play")
    for line in client_transcript((game,), rounds):
        print(line, file=out)
    out.flush()
    return 0
