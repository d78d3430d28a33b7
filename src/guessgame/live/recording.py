"""Where one server's finished games go: the results store, from either world.

A session thread calls `Store.record` itself: it may block, for RECORD_WAIT at most.
A session coroutine must not block the loop, so its games cross to the store through
the bridge's `run_in_thread`, on the store's own pool. A crossing costs a worker's
wake-up, the GIL passed to it and back, and the loop's wake-up: many times what the
store does with a game. So the games of the loop's sessions cross in batches:

- a session hands its game to the loop's batch and goes on; it waits only when the
  batch holds HANDOFF_BOUND games, until the crossing in flight is done, as a session
  thread waits for room in the store's buffer;
- the first game of a batch starts a crossing, which gathers games for HANDOFF_DELAY,
  then carries them with one `Store.record_all`; one crossing is in flight at most;
- a server that stops, and a reload before the new generation takes over, wait with
  `crossed()` until the batch has crossed, without the delay, so no game that ended
  is left on the loop's side. A crossing that fails says so in one line, with the
  count of games it could not carry.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from guessgame import results
from guessgame.bridge import Bridge
from guessgame.outcomes import Played

log = logging.getLogger("guessgame")

HANDOFF_DELAY: Final = 0.05
"""Seconds a batch gathers games on the loop's side before it crosses. The store's
writer gathers for FLUSH_INTERVAL after that, so a game is on disk within the sum."""
HANDOFF_BOUND: Final = 1_000
"""Games in a batch, at most; a session that ends a game then waits for the crossing."""


class Recording:
    """One server's way to the store, and whether that server is stopping (a game its
    stop cuts short ends as `stopped`)."""

    def __init__(self, store: results.Store, bridge: Bridge | None = None) -> None:
        """`bridge` carries the games of async sessions; a server without one has none."""
        self.store = store
        self.stopping = False
        self._bridge = bridge
        self._batch: list[Played] = []
        self._batch_stored: asyncio.Future[None] | None = None  # done once it crossed
        self._in_flight: asyncio.Future[None] | None = None  # the same, for the one crossing
        self._crossing: asyncio.Task[None] | None = None
        self._gathered: asyncio.Future[None] | None = None  # done: cross without waiting
        self._hurrying = 0  # callers of crossed(): batches cross without gathering

    def is_stopping(self) -> bool:
        return self.stopping

    @property
    def pending(self) -> bool:
        """Whether games wait on the loop's side, or cross now."""
        return self._crossing is not None

    async def record_from_loop(self, game: Played) -> None:
        """From the loop's thread: add `game` to the batch for the store. Returns at once,
        unless the batch is full: then once that batch has crossed."""
        while len(self._batch) >= HANDOFF_BOUND and self._batch_stored is not None:
            await asyncio.wait([self._batch_stored])
        if self._batch_stored is None:
            self._batch_stored = asyncio.get_running_loop().create_future()
        self._batch.append(game)
        if self._crossing is None:
            self._crossing = asyncio.create_task(self._cross(), name="results crossing")

    async def crossed(self) -> None:
        """Return once every game added so far is in the store's buffer (or its crossing
        failed, and said so). Games added meanwhile may still wait: under load there
        always are some."""
        stored = self._batch_stored or self._in_flight  # batches cross in turn
        if stored is None:
            return
        self._hurrying += 1
        try:
            self._hurry()
            await asyncio.wait([stored])
        finally:
            self._hurrying -= 1

    def _hurry(self) -> None:
        if self._gathered is not None and not self._gathered.done():
            self._gathered.set_result(None)

    async def _cross(self) -> None:
        assert self._bridge is not None, "games from the loop need a bridge"
        loop = asyncio.get_running_loop()
        try:
            while self._batch:
                if len(self._batch) < HANDOFF_BOUND and not self._hurrying:
                    self._gathered = loop.create_future()
                    timer = loop.call_later(HANDOFF_DELAY, self._hurry)
                    try:
                        await self._gathered
                    finally:
                        timer.cancel()
                        self._gathered = None
                games, self._batch = self._batch, []
                self._in_flight, self._batch_stored = self._batch_stored, None
                try:
                    await self._bridge.run_in_thread("results", self.store.record_all,
                                                     games, max_workers=results.WORKERS)
                except Exception as error:  # a pool shut down too early: a defect
                    log.warning("results: %d games not recorded: %s", len(games), error)
                finally:
                    _done(self._in_flight)
                    self._in_flight = None
        finally:
            self._crossing = None
            if self._batch:  # cancelled, the loop closing with games still to cross
                log.warning("results: %d games not recorded: the event loop closed first",
                            len(self._batch))
            _done(self._batch_stored)
            self._batch, self._batch_stored = [], None


def _done(stored: asyncio.Future[None] | None) -> None:
    if stored is not None and not stored.done():
        stored.set_result(None)
