"""Where things run at each combination: at most one event loop, in the right thread.

At all threads no event loop exists; at all async the game starts no thread; in
between, the loop runs in the main thread when the top-level component is async and
in one dedicated loop thread otherwise.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from guessgame import app, results
from guessgame.bridge import LOOP_THREAD_NAME, Bridge
from guessgame.config import CLIENT_LAYERS, SERVER_LAYERS, Settings


@dataclass
class Observed:
    loops_created: int = 0
    loop_threads: list[str] = field(default_factory=list)
    threads_started: list[str] = field(default_factory=list)


@pytest.fixture
def observed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Observed]:
    seen = Observed()
    loop_init = asyncio.BaseEventLoop.__init__
    run_forever = asyncio.BaseEventLoop.run_forever
    thread_start = threading.Thread.start

    def counting_init(self: asyncio.BaseEventLoop, *args: object, **kwargs: object) -> None:
        seen.loops_created += 1
        loop_init(self, *args, **kwargs)  # type: ignore[arg-type]

    def recording_run_forever(self: asyncio.BaseEventLoop) -> None:
        seen.loop_threads.append(threading.current_thread().name)
        run_forever(self)

    def recording_start(self: threading.Thread) -> None:
        seen.threads_started.append(self.name)
        thread_start(self)

    monkeypatch.setattr(asyncio.BaseEventLoop, "__init__", counting_init)
    monkeypatch.setattr(asyncio.BaseEventLoop, "run_forever", recording_run_forever)
    monkeypatch.setattr(threading.Thread, "start", recording_start)
    yield seen


def test_demo_runs_at_most_one_loop_in_the_right_thread(settings: Settings,
                                                        observed: Observed) -> None:
    app.demo(settings, seed=3, out=io.StringIO())
    layers = settings.layers
    if not layers.any_async:
        assert observed.loops_created == 0
        assert LOOP_THREAD_NAME not in observed.threads_started
        return
    assert observed.loops_created == 1
    # The demo's top-level component is the client.
    expected = "MainThread" if layers.client else LOOP_THREAD_NAME
    assert set(observed.loop_threads) == {expected}
    if all(getattr(layers, name) for name in ("connection", "session", "client", "server")):
        # The one blocking call left is the results store's: its worker and its writer.
        assert set(observed.threads_started) <= {"blocking-results_0", results.WRITER_NAME}
        observed.threads_started.clear()
        app.demo(settings, seed=3, out=io.StringIO(), throwaway_results=False)
        assert observed.threads_started == []


@pytest.mark.parametrize("command", ["serve", "play"])
def test_a_loop_thread_starts_only_when_a_layer_of_the_command_needs_it(
        settings: Settings, command: str) -> None:
    parts, top = ((SERVER_LAYERS, settings.layers.server) if command == "serve"
                  else (CLIENT_LAYERS, settings.layers.client))
    seen: dict[str, object] = {}

    def in_thread(bridge: Bridge | None) -> None:
        seen.update(thread=threading.current_thread().name, bridge=bridge)

    async def in_task(bridge: Bridge) -> None:
        in_thread(bridge)

    app.run_at_stage(settings, top, parts, in_thread, in_task)
    needed = settings.layers.any_of(parts)
    assert seen["thread"] == "MainThread"
    assert (seen["bridge"] is not None) == needed
    if top:
        assert isinstance(seen["bridge"], Bridge) and not seen["bridge"].owns_thread
