"""The commands, each run in the world its top-level component belongs to.

If the top-level component is async, asyncio.run() owns the loop in the main thread
and the bridge adopts it. Otherwise the main thread stays a plain thread, and a loop
thread is started only when one of the layers the command uses is async. Either way
the process has at most one event loop.

`serve` is the exception: its stage may change while it runs (live/server.py), so its
main thread runs the loop itself whenever a server-side layer is async, whichever
flavour the acceptor is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO, TypeVar

from guessgame import outputs, results
from guessgame.bridge import Bridge, loop_thread, new_event_loop
from guessgame.compose import Rounds, System
from guessgame.config import CLIENT_LAYERS, LAYERS, Settings
from guessgame.live.host import ServerHost
from guessgame.live.server import LiveServer
from guessgame.protocol import OURS, SEED_SCENARIO, Game, Vocabulary, round_line

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
    with loop_thread(settings, parts) as bridge:
        return in_thread(bridge)


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


@contextlib.contextmanager
def results_store(settings: Settings, path: str | None,
                  throwaway: bool = False) -> Iterator[results.Store | None]:
    """The store at `path` (None: no store), closed on leaving the block once every
    session has ended, so that their last games are written. `throwaway`: a database
    in a temporary directory instead, removed with it."""
    if throwaway:
        with tempfile.TemporaryDirectory(prefix="guessgame-demo-") as folder, \
                results_store(settings, str(Path(folder, "results.sqlite3"))) as store:
            yield store
        return
    if path is None:
        yield None
        return
    store = results.Store.open(path, settings.worker_idle_timeout)
    try:
        yield store
    finally:
        store.close()


def demo(settings: Settings, seed: int | None, out: TextIO, results_path: str | None = None,
         throwaway_results: bool = True) -> int:
    """Server and client in one process: the server's transcript as it happens, then
    the client's. The client's lines wait for the server to stop, so the order of
    stdout never depends on how threads or tasks were scheduled. Each game goes to
    the store at `results_path`, or with `throwaway_results` to one removed at exit."""
    games = SEED_SCENARIO

    def write(line: str) -> None:
        print(line, file=out)

    with results_store(settings, results_path, throwaway_results) as store:

        def in_thread(bridge: Bridge | None) -> list[Rounds]:
            with ServerHost(settings, bridge, seed=seed, write=write, results=store) as server:
                return System(settings, bridge).play_in_thread("127.0.0.1", server.port,
                                                               games)

        async def in_task(bridge: Bridge) -> list[Rounds]:
            server = ServerHost(settings, bridge, seed=seed, write=write, results=store)
            await server.astart()
            try:
                return await System(settings, bridge).play_in_task("127.0.0.1", server.port,
                                                                   games)
            finally:
                await server.astop()

        rounds = run_at_stage(settings, settings.layers.client, LAYERS, in_thread, in_task,
                              name="demo")
    for line in client_transcript(games, rounds):
        write(line)
    out.flush()
    return 0


# --- serve -----------------------------------------------------------------------------


def serve(settings: Settings, host: str, port: int, out: TextIO, quiet: bool,
          seed: int | None = None, results_path: str | None = None) -> int:
    """Serve until SIGINT or SIGTERM; then stop everything and return 0.

    SIGHUP reads the config file again and moves the running server to its stage;
    SIGUSR1 prints who waits on whom, SIGUSR2 how each flavour of each layer has served
    (see live/server.py). The transcript goes to `out` through an output that never
    blocks (outputs.py), so a reader that stops reading costs reports, never games,
    and never a stop. Every game goes to the store at `results_path`, if given; it is
    closed once every generation has stopped, so that a stop loses no game.
    """
    reports = None if quiet else outputs.for_stream(out)
    with results_store(settings, results_path) as store:
        server = LiveServer(settings, host, port, reports, seed, store)
        server.run(lambda address: print(f"listening on {address}", file=out, flush=True))
    return 0


# --- play ------------------------------------------------------------------------------


def play(settings: Settings, host: str, port: int, game: Game, out: TextIO,
         words: Vocabulary = OURS) -> int:
    """One game against any server, reporting in `words`; errors propagate as GameError
    or OSError."""

    def in_thread(bridge: Bridge | None) -> list[Rounds]:
        return System(settings, bridge).play_in_thread(host, port, (game,), words)

    async def in_task(bridge: Bridge) -> list[Rounds]:
        return await System(settings, bridge).play_in_task(host, port, (game,), words)

    rounds = run_at_stage(settings, settings.layers.client, CLIENT_LAYERS, in_thread, in_task,
                          name="play")
    for line in client_transcript((game,), rounds):
        print(line, file=out)
    out.flush()
    return 0
