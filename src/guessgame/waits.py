"""Who waits on whom: each crossing in flight between threads and tasks, recorded.

Every bridge records each crossing while it waits: a thread in `run_in_loop` waits for
the task it started; a task in `run_in_thread` waits for the worker running its call; a
thread or task blocked on a janus queue waits for the other side; a `TrackedLock`'s
waiter waits for its holder. Recording is always on and costs a small object and a dict
insert and pop per crossing (see `guessgame bench --crossings`).

waitgraph.py joins these records to the threads' frames and the tasks' await chains,
finds deadlocks and writes the text. Only waits a bridge can see are recorded: a plain
threading.Lock, a socket read or a queue.Queue of your own are never an edge.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import weakref
from collections.abc import Iterator
from types import TracebackType
from typing import Any

Party = tuple[str, Any]
"""("thread", ident) or ("task", asyncio.Task); ("lock", TrackedLock) stands for its
holder, and ("any", text) for a side with no single identity (a report's producers)."""


class Crossing:
    """One wait in flight. `target` may be filled in later, by the side that takes it."""

    __slots__ = ("bridge", "idle", "reported", "since", "target", "waiter")

    def __init__(self, bridge: str, waiter: Party, target: Party | None, idle: bool) -> None:
        self.bridge = bridge
        self.waiter = waiter
        self.target = target
        self.idle = idle  # waiting for input a peer may never send: not a stall
        self.since = time.monotonic()
        self.reported = False


_in_flight: dict[int, Crossing] = {}
_numbers = itertools.count()
_loops: dict[int, asyncio.AbstractEventLoop] = {}
_locks: weakref.WeakSet[TrackedLock] = weakref.WeakSet()


def me() -> Party:
    """The calling task if one runs in this thread, else the calling thread."""
    loop = asyncio._get_running_loop()  # None outside a loop, where current_task() raises
    task = asyncio.current_task(loop) if loop is not None else None
    return ("task", task) if task is not None else ("thread", threading.get_ident())


def begin(bridge: str, target: Party | None = None, *, waiter: Party | None = None,
          idle: bool = False) -> int:
    """Record that the caller starts waiting in `bridge`; pass the result to end()."""
    key = next(_numbers)  # itertools.count is atomic under the GIL, as are dict ops
    _in_flight[key] = Crossing(bridge, waiter or me(), target, idle)
    return key


def begin_thread(bridge: str, target: Party | None = None, *, idle: bool = False) -> int:
    """begin() for a caller known to be a plain thread (skips the task lookup)."""
    key = next(_numbers)
    _in_flight[key] = Crossing(bridge, ("thread", threading.get_ident()), target, idle)
    return key


def set_target(key: int, target: Party) -> None:
    crossing = _in_flight.get(key)
    if crossing is not None:
        crossing.target = target


def end(key: int) -> None:
    _in_flight.pop(key, None)


def watch_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The loop running in the calling thread: its tasks are listed under this thread."""
    _loops[threading.get_ident()] = loop


def unwatch_loop(loop: asyncio.AbstractEventLoop) -> None:
    for ident, known in list(_loops.items()):
        if known is loop:
            del _loops[ident]


class TrackedLock:
    """A threading.Lock the wait graph can see: who holds it, who waits for it.

    Use it where a lock may be held across a bridge; a deadlock through it is named.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self.holder: Party | None = None
        _locks.add(self)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(False):
            self.holder = me()
            return True
        if not blocking:
            return False
        key = begin(f"lock {self.name!r}", ("lock", self))
        try:
            got = self._lock.acquire(True, timeout)
        finally:
            end(key)
        if got:
            self.holder = me()
        return got

    def release(self) -> None:
        self.holder = None
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> TrackedLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def stalled(threshold: float) -> list[Crossing]:
    """Crossings not yet reported that have waited longer than `threshold`, marked
    reported. Idle waits (a thread waiting for the peer's next line) are not stalls."""
    now = time.monotonic()
    found = []
    for crossing in list(_in_flight.values()):
        if not crossing.reported and not crossing.idle and now - crossing.since > threshold:
            crossing.reported = True
            found.append(crossing)
    return found


def in_flight() -> Iterator[Crossing]:
    """The crossings waiting now (for tests and tools)."""
    return iter(list(_in_flight.values()))


def loops() -> dict[int, asyncio.AbstractEventLoop]:
    """The loops being watched, by the ident of the thread each runs in."""
    return dict(_loops)


def tracked_locks() -> list[TrackedLock]:
    return list(_locks)
