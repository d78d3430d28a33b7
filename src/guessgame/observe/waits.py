"""Who waits on whom: each crossing in flight between threads and tasks, recorded.

`WAIT_GRAPH` observes the seam (guessgame.crossing) and records each crossing while its
sender waits: a thread in `run_in_loop` waits for the task it started; a task in
`run_in_thread` waits for the worker running its call; a thread or task blocked on a
janus queue waits for the other side; a `TrackedLock`'s waiter waits for its holder.
The commands attach it from the start (`observe.attach_defaults()`), so SIGUSR1 always
has the graph; it costs a dict insert as a call is sent and a pop as it returns: a
call's record reads its taker from the crossing when the graph is drawn, so taking a
call runs no hook of the graph's (see `guessgame bench --crossings`).

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

from guessgame import crossing
from guessgame.crossing import Party, me


class Wait:
    """One wait in flight. A call's wait is drawn from its crossing when asked: its
    `target` is the crossing's taker, which the side that takes the call fills in, and
    `reported` is kept with the crossing."""

    __slots__ = ("_reported", "_target", "bridge", "call", "idle", "since", "waiter")

    def __init__(self, bridge: str, waiter: Party, target: Party | None, idle: bool,
                 call: crossing.Crossing | None = None, since: float | None = None) -> None:
        self.bridge = bridge
        self.waiter = waiter
        self._target = target
        self.call = call
        self.idle = idle  # waiting for input a peer may never send: not a stall
        self.since = time.monotonic() if since is None else since
        self._reported = False

    @property
    def target(self) -> Party | None:
        return self._target if self.call is None else self.call.taker

    @property
    def reported(self) -> bool:
        return self._reported if self.call is None else "reported" in self.call.marks

    @reported.setter
    def reported(self, reported: bool) -> None:
        if self.call is None:
            self._reported = reported
        elif reported:
            self.call.marks["reported"] = True
        else:
            self.call.marks.pop("reported", None)


_in_flight: dict[int, Wait] = {}
"""The waits in flight that begin() records, by its key."""
_calls: dict[crossing.Crossing, float] = {}
"""The calls in flight, each with the time its sender started waiting: a call's hooks
only insert and pop, and its Wait is made when asked (`in_flight()`)."""
_numbers = itertools.count()
_loops: dict[int, asyncio.AbstractEventLoop] = {}
_locks: weakref.WeakSet[TrackedLock] = weakref.WeakSet()


def begin(bridge: str, target: Party | None = None, *, waiter: Party | None = None,
          idle: bool = False) -> int:
    """Record that the caller starts waiting in `bridge`; pass the result to end()."""
    key = next(_numbers)  # itertools.count is atomic under the GIL, as are dict ops
    _in_flight[key] = Wait(bridge, waiter or me(), target, idle)
    return key


def end(key: int) -> None:
    _in_flight.pop(key, None)


def watch_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The loop running in the calling thread: its tasks are listed under this thread."""
    _loops[threading.get_ident()] = loop


def unwatch_loop(loop: asyncio.AbstractEventLoop) -> None:
    for ident, known in list(_loops.items()):
        if known is loop:
            del _loops[ident]


class WaitGraph(crossing.Observer):
    """The seam's observer that keeps `_in_flight`: a call's sender waits from sent to
    returned, for whoever took it; a blocked side waits until it goes on."""

    items = False  # a line or report in a queue is no wait; only a blocked side is

    def sent(self, seen: crossing.Crossing) -> None:
        if seen.bridge in crossing.CALLS:
            _calls[seen] = time.monotonic()

    def returned(self, seen: crossing.Crossing) -> None:
        _calls.pop(seen, None)  # an item's crossing, or a call's return announced twice

    def blocked(self, block: crossing.Block) -> None:
        block.marks["wait"] = begin(block.bridge, block.waits_for, waiter=block.waiter,
                                    idle=block.idle)

    def unblocked(self, block: crossing.Block) -> None:
        end(block.marks["wait"])

    def loop_started(self, loop: asyncio.AbstractEventLoop, own: bool) -> None:
        watch_loop(loop)

    def loop_stopped(self, loop: asyncio.AbstractEventLoop) -> None:
        unwatch_loop(loop)


WAIT_GRAPH = WaitGraph()


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


def stalled(threshold: float) -> list[Wait]:
    """Crossings not yet reported that have waited longer than `threshold`, marked
    reported. Idle waits (a thread waiting for the peer's next line) are not stalls."""
    now = time.monotonic()
    found = []
    for waiting in _waits():
        if not waiting.reported and not waiting.idle and now - waiting.since > threshold:
            waiting.reported = True
            found.append(waiting)
    return found


def in_flight() -> Iterator[Wait]:
    """The crossings waiting now (for tests and tools)."""
    return iter(_waits())


def _waits() -> list[Wait]:
    calls = list(_calls.items())  # one C call: the dict may change in other threads
    return [*_in_flight.values(),
            *(Wait(seen.bridge, seen.sender, None, False, seen, since) for seen, since in calls)]


def loops() -> dict[int, asyncio.AbstractEventLoop]:
    """The loops being watched, by the ident of the thread each runs in."""
    return dict(_loops)


def tracked_locks() -> list[TrackedLock]:
    return list(_locks)
