"""The way from the loop's sessions to the results store: batches, one crossing each."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

from guessgame import outcomes, results
from guessgame.bridge import Bridge
from guessgame.live import recording
from guessgame.outcomes import Played
from peers import DEADLINE

T = TypeVar("T")


def game(n: int) -> Played:
    return Played(f"127.0.0.1:{n}", "all", 1, 5, 3, outcomes.CORRECT, "t0", "t1")


class CountingStore(results.Store):
    """A store that keeps each batch it is handed, and the thread that handed it."""

    def __init__(self, path: str) -> None:
        super().__init__(path, idle_timeout=0.2)
        self.batches: list[tuple[str, list[Played]]] = []

    def record_all(self, games: Sequence[Played]) -> None:
        self.batches.append((threading.current_thread().name, list(games)))
        super().record_all(games)


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    path = str(tmp_path / "r.sqlite3")
    results.prepare(path)
    return CountingStore(path)


def on_loop(store: results.Store, body: Callable[[recording.Recording], Awaitable[T]]) -> T:
    async def main() -> T:
        bridge = Bridge.adopt_running_loop(4, worker_idle_timeout=0.2)
        try:
            return await asyncio.wait_for(body(recording.Recording(store, bridge)), DEADLINE)
        finally:
            bridge.close()

    try:
        return asyncio.run(main())
    finally:
        store.close()


def test_games_that_end_together_cross_in_one_batch_on_the_stores_pool(
        store: CountingStore) -> None:
    async def body(way: recording.Recording) -> None:
        for n in range(50):
            await way.record_from_loop(game(n))  # returns at once: nothing waits
        assert not store.batches and way.pending
        await way.crossed()
        assert not way.pending

    on_loop(store, body)
    [(thread, batch)] = store.batches
    assert thread.startswith("blocking-results_")
    assert batch == [game(n) for n in range(50)]
    assert store.written == 50


def test_a_lone_game_crosses_after_the_delay_without_being_hurried(
        store: CountingStore) -> None:
    async def body(way: recording.Recording) -> None:
        await way.record_from_loop(game(1))
        crossing = way._crossing
        assert crossing is not None
        await crossing  # nobody calls crossed(): the delay's timer sends it

    on_loop(store, body)
    assert [batch for _, batch in store.batches] == [[game(1)]]


def test_crossed_returns_while_other_sessions_keep_ending_games(store: CountingStore) -> None:
    """A reload waits for the games ended so far, not for a quiet moment that a server
    under load never has."""
    async def body(way: recording.Recording) -> int:
        stop = asyncio.Event()

        async def busy() -> None:
            n = 1000
            while not stop.is_set():
                await way.record_from_loop(game(n))
                n += 1
                await asyncio.sleep(0)

        players = asyncio.create_task(busy())
        for n in range(10):
            await way.record_from_loop(game(n))
        await way.crossed()
        stored = {played.peer for _, batch in store.batches for played in batch}
        stop.set()
        await players
        await way.crossed()
        return sum(f"127.0.0.1:{n}" in stored for n in range(10))

    assert on_loop(store, body) == 10


def test_a_full_batch_holds_the_session_back_until_it_has_crossed(
        store: CountingStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the store is stuck (its lock held), one batch waits in a worker and the next
    fills up to HANDOFF_BOUND; then a session that ends a game waits, as a session
    thread waits for room in the store's buffer."""
    monkeypatch.setattr(recording, "HANDOFF_BOUND", 3)

    async def body(way: recording.Recording) -> None:
        with store._lock:
            for n in range(3):  # a full batch crosses at once, without the delay
                await way.record_from_loop(game(n))
            while way._in_flight is None:
                await asyncio.sleep(0)
            for n in range(3, 6):  # the next batch waits for the stuck one
                await way.record_from_loop(game(n))
            held = asyncio.create_task(way.record_from_loop(game(6)))
            for _ in range(20):  # unheld, it would be done after one turn
                await asyncio.sleep(0)
            assert not held.done()
        await held
        await way.crossed()

    on_loop(store, body)
    assert [len(batch) for _, batch in store.batches] == [3, 3, 1]
    assert store.written == 7


def test_a_crossing_that_fails_says_how_many_games_it_could_not_carry(
        store: CountingStore, caplog: pytest.LogCaptureFixture) -> None:
    async def body(way: recording.Recording) -> None:
        assert way._bridge is not None
        way._bridge.shutdown_executors()
        way._bridge._executors["results"] = _ShutDown()
        for n in range(2):
            await way.record_from_loop(game(n))
        await way.crossed()

    with caplog.at_level(logging.WARNING, "guessgame"):
        on_loop(store, body)
    assert caplog.messages == ["results: 2 games not recorded: cannot schedule new "
                               "futures after shutdown"]


class _ShutDown:
    def submit(self, *_: object, **__: object) -> None:
        raise RuntimeError("cannot schedule new futures after shutdown")

    def shutdown(self, wait: bool = True) -> None:
        pass
