"""The one seam every crossing between a thread and the event loop passes.

A crossing is work handed from one world to the other: a call (`run_in_loop`,
`run_in_thread`, a thread of its own) or an item (a line through a janus queue, a report
through the report queue). The bridges announce each one here, and nowhere else:

- `sent(...)`      in the sender, as it hands the work over; returns the `Crossing`;
- `taken(c)`       in the taker, as it takes the work, before it runs it or uses it;
- `finished(c)`    in the taker of a call, once the work has returned or raised;
- `returned(c)`    in the sender as it goes on: a call's outcome is back, or an item is
                   in its queue (a debugger that followed the item holds the sender here).

A side about to block on a queue (full, or empty) says so with `blocked()`, and
`unblocked()` once it goes on. A loop joining or leaving the process says so with
`loop_started()` and `loop_stopped()`.

Observers (the trace, the timeline's arrows, the wait graph, task names, the debugger's
step-across) subclass `Observer` and `attach()` themselves, as trio's instruments do.
With none attached, `observed` is False, and that one check is all a crossing costs:
call sites test it before anything else, and queue ends are wrapped only while observed
(`ends()`), so an unobserved line pays nothing at all. Only the hooks an observer
overrides are called, and a queued item carries its crossing only while an observer
wants items (`Observer.items`), so the wait graph alone costs a line one check whether
its queue is full or empty.

The rules:
- A hook runs in the thread (and task) where its side of the crossing runs: a debugger
  can stop there, and `threading.current_thread()` and `asyncio.current_task()` name it.
- Hooks never block (but a debugger's, while its user steps) and never raise into the
  bridge: a failing observer is detached and logged, and the crossing goes on.
- Observers see the connections opened after they attach; calls are seen at once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, Final, Generic, NamedTuple, TypeVar

T = TypeVar("T")

THREAD_TO_LOOP: Final = "thread->loop"
LOOP_TO_THREAD: Final = "loop->thread"

Party = tuple[str, Any]
"""("thread", ident), ("task", asyncio.Task), ("lock", lock) for its holder, or
("any", text) for a side with no single identity (a report's producers)."""

log = logging.getLogger("guessgame")

observed = False
"""True while an observer is attached: the only thing a crossing looks at otherwise."""

items_observed = False
"""True while an observer wants each queued item's sent and taken (the trace, say), not
only the calls and the blocked sides (the wait graph): only then is an item wrapped."""

_observers: tuple[Observer, ...] = ()
_hooked: dict[str, tuple[Callable[..., None], ...]] = {}
"""hook -> the bound hooks of the observers that override it; each announcing function
looks here first."""
_lock = threading.Lock()
_numbers = itertools.count(1)


def me() -> Party:
    """The calling task if one runs in this thread, else the calling thread."""
    loop = running_loop()  # None outside a loop, where current_task() raises
    task = asyncio.current_task(loop) if loop is not None else None
    return ("task", task) if task is not None else ("thread", threading.get_ident())


class Crossing:
    """One crossing in flight, as observers see it. `marks` is theirs to keep state in,
    each under a key of its own (a wait's record, a debugger's intent)."""

    __slots__ = ("_what", "bridge", "direction", "marks", "number", "sender", "sender_name",
                 "taker")

    def __init__(self, bridge: str, direction: str, what: str | Callable[[], str],
                 taker: Party | None) -> None:
        self.number = next(_numbers)  # itertools.count is atomic under the GIL
        self.bridge = bridge  # the mechanism: run_coroutine_threadsafe, janus, ...
        self.direction = direction
        self._what = what
        self.sender = me()
        self.sender_name = threading.current_thread().name
        self.taker = taker  # filled in by taken(), where the taker is known
        self.marks: dict[str, Any] = {}

    @property
    def what(self) -> str:
        """The coroutine's or function's name, or the item described. An item is described
        only when an observer asks, so a step into a crossing meets no code of ours first."""
        if not isinstance(self._what, str):
            self._what = self._what()
        return self._what

    @property
    def is_call(self) -> bool:
        return self.bridge in CALLS


CALLS: Final = frozenset({"run_coroutine_threadsafe", "run_in_executor", "thread"})
"""The mechanisms whose sender waits for an outcome; the others carry items."""


class Block:
    """A side waiting on a queue, as observers see it."""

    __slots__ = ("bridge", "idle", "marks", "waiter", "waits_for")

    def __init__(self, bridge: str, waits_for: Party, idle: bool,
                 waiter: Party | None = None) -> None:
        self.bridge = bridge
        self.waiter = waiter or me()
        self.waits_for = waits_for
        self.idle = idle  # waiting for input a peer may never send: not a stall
        self.marks: dict[str, Any] = {}


class Observer:
    """Hooks at the seam; each does nothing unless overridden, and only overridden hooks
    are called. `items`: whether `sent` and `taken` want queued items too (lines and
    reports), or calls only."""

    items = True

    def sent(self, crossing: Crossing) -> None: ...

    def taken(self, crossing: Crossing) -> None: ...

    def finished(self, crossing: Crossing) -> None: ...

    def returned(self, crossing: Crossing) -> None: ...

    def blocked(self, block: Block) -> None: ...

    def unblocked(self, block: Block) -> None: ...

    def loop_started(self, loop: asyncio.AbstractEventLoop, own: bool) -> None:
        """`own`: the bridge started this loop in a thread of its own."""

    def loop_stopped(self, loop: asyncio.AbstractEventLoop) -> None: ...


HOOKS: Final = ("sent", "taken", "finished", "returned", "blocked", "unblocked", "loop_started",
                 "loop_stopped")


def attach(observer: Observer) -> None:
    with _lock:
        if observer not in _observers:
            _settle((*_observers, observer))


def detach(observer: Observer) -> None:
    with _lock:
        _settle(tuple(known for known in _observers if known is not observer))


def _settle(attached: tuple[Observer, ...]) -> None:
    """With the lock held: who gets which hook, and the flags the bridges look at."""
    global observed, items_observed, _observers, _hooked
    _hooked = {hook: tuple(getattr(observer, hook) for observer in attached
                           if getattr(type(observer), hook) is not getattr(Observer, hook))
               for hook in HOOKS}
    _observers = attached
    items_observed = any(observer.items for observer in attached)
    observed = bool(attached)


_settle(())


def observers() -> tuple[Observer, ...]:
    return _observers


def _each(hook: str, *args: Any) -> None:
    for call in _hooked[hook]:
        try:
            call(*args)
        except Exception:  # an observer's bug must not break the crossing it watches
            _failed(call, hook)


def _failed(call: Callable[..., None], hook: str) -> None:
    observer = call.__self__  # type: ignore[attr-defined]
    detach(observer)
    log.exception("crossing observer %r failed in %s(); detached", observer, hook)


# The four hooks of a crossing loop over their observers themselves, as `_each` does:
# they run on every call across a bridge, where a call less is measurable.


def sent(bridge: str, direction: str, what: str | Callable[[], str],
         taker: Party | None = None) -> Crossing:
    crossing = Crossing(bridge, direction, what, taker)
    for call in _hooked["sent"]:
        try:
            call(crossing)
        except Exception:
            _failed(call, "sent")
    return crossing


def taken(crossing: Crossing) -> None:
    crossing.taker = me()
    for call in _hooked["taken"]:
        try:
            call(crossing)
        except Exception:
            _failed(call, "taken")


def finished(crossing: Crossing) -> None:
    for call in _hooked["finished"]:
        try:
            call(crossing)
        except Exception:
            _failed(call, "finished")


def returned(crossing: Crossing) -> None:
    for call in _hooked["returned"]:
        try:
            call(crossing)
        except Exception:
            _failed(call, "returned")


def blocked(bridge: str, waits_for: Party, idle: bool = False,
            waiter: Party | None = None) -> Block:
    """`waiter`, when the caller knows who it is, spares asking asyncio (which, before
    3.13, asks the system for the process id)."""
    block = Block(bridge, waits_for, idle, waiter)
    _each("blocked", block)
    return block


def unblocked(block: Block) -> None:
    _each("unblocked", block)


def loop_started(loop: asyncio.AbstractEventLoop, own: bool) -> None:
    _each("loop_started", loop, own)


def loop_stopped(loop: asyncio.AbstractEventLoop) -> None:
    _each("loop_stopped", loop)


# --- calls: the taking side announces itself as the work starts ----------------------


async def arrive(coro: Coroutine[Any, Any, T], crossing: Crossing) -> T:
    """The coroutine `run_in_loop` hands over while observed: it announces the take in
    the new task, before the coroutine's first line runs."""
    taken(crossing)
    try:
        return await coro
    finally:
        finished(crossing)


class Arriving(Generic[T]):
    """The blocking call `run_in_thread` hands over while observed, likewise."""

    __slots__ = ("crossing", "fn")

    def __init__(self, fn: Callable[..., T], crossing: Crossing) -> None:
        self.fn, self.crossing = fn, crossing

    def __call__(self, *args: Any) -> T:
        taken(self.crossing)
        try:
            return self.fn(*args)
        finally:
            finished(self.crossing)


# --- items: queue ends that announce what they carry --------------------------------


class Carried(NamedTuple):
    """An item in a queue, with the crossing it is on (observed queues only)."""

    item: Any
    crossing: Crossing


class _Sides:
    """Who is on each side of one queue, learnt as they use it, for the wait graph."""

    def __init__(self, thread_side: str) -> None:
        self.thread: Party = ("any", thread_side)
        self.task: Party = ("any", "the loop side (not started yet)")


class _ObservedEnd:
    def __init__(self, end: Any, mechanism: str, name: str, sides: _Sides,
                 describe: Callable[[Any], str]) -> None:
        self._end, self._mechanism, self._bridge = end, mechanism, name
        self._sides, self._describe = sides, describe

    def _carry(self, item: Any, direction: str) -> Any:
        """The item with its crossing, if an observer wants items (a mechanism is set);
        else as it is, and only the blocked sides are announced."""
        if not self._mechanism:
            return item
        return carry(item, self._mechanism, direction, self._describe)


class ObservedThreadEnd(_ObservedEnd):
    """The thread's end of a janus queue (janus.SyncQueue), announcing each item."""

    def put(self, item: Any) -> None:
        self._sides.thread = thread = ("thread", threading.get_ident())
        carried = self._carry(item, THREAD_TO_LOOP)
        block = (blocked(self._bridge, self._sides.task, waiter=thread) if self._end.full()
                 else None)
        try:
            self._end.put(carried)
        finally:
            if block is not None:
                unblocked(block)
        if type(carried) is Carried:
            returned(carried.crossing)

    def get(self) -> Any:
        self._sides.thread = thread = ("thread", threading.get_ident())
        block = (blocked(self._bridge, self._sides.task, idle=True, waiter=thread)
                 if self._end.empty() else None)
        try:
            carried = self._end.get()
        finally:
            if block is not None:
                unblocked(block)
        return unwrap(carried)


class ObservedLoopEnd(_ObservedEnd):
    """The loop's end of a janus queue (janus.AsyncQueue), announcing each item."""

    def _task(self) -> Party:
        """The task using this end: one per end for a face's life, so asked only once."""
        if self._sides.task[0] == "any":
            self._sides.task = me()
        return self._sides.task

    async def put(self, item: Any) -> None:
        task = self._task()
        carried = self._carry(item, LOOP_TO_THREAD)
        block = (blocked(self._bridge, self._sides.thread, waiter=task) if self._end.full()
                 else None)
        try:
            await self._end.put(carried)
        finally:
            if block is not None:
                unblocked(block)
        if type(carried) is Carried:
            returned(carried.crossing)

    async def get(self) -> Any:
        task = self._task()
        block = (blocked(self._bridge, self._sides.thread, idle=True, waiter=task)
                 if self._end.empty() else None)
        try:
            carried = await self._end.get()
        finally:
            if block is not None:
                unblocked(block)
        return unwrap(carried)


def carry(item: Any, mechanism: str, direction: str, describe: Callable[[Any], str]) -> Carried:
    """`item` on its way through a queue of the caller's own (the report queue), with
    the crossing it starts: made here, so that a debugger's Step Into meets no helper
    of the caller's before it lands on the other side."""
    return Carried(item, sent(mechanism, direction, partial(describe, item)))


def unwrap(carried: Any) -> Any:
    """The item itself; if it carries a crossing, the crossing is taken here."""
    if type(carried) is not Carried:  # put before the observer attached
        return carried
    taken(carried.crossing)
    return carried.item


def ends(queue: Any, name: str, thread_side: str,
         describe: Callable[[Any], str] = repr) -> tuple[Any, Any]:
    """A janus queue's (thread end, loop end): the queue's own while unobserved, else
    ends that announce each item they carry. `name` is the queue's in the wait graph,
    e.g. `janus (inbox)`; `thread_side` names the thread's side until it is first seen."""
    if not observed:
        return queue.sync_q, queue.async_q
    sides = _Sides(thread_side)
    mechanism = name.split()[0] if items_observed else ""
    return (ObservedThreadEnd(queue.sync_q, mechanism, name, sides, describe),
            ObservedLoopEnd(queue.async_q, mechanism, name, sides, describe))


# --- private attributes of asyncio and janus -----------------------------------------
# Every attribute of another library that this package reads although its name is
# private lives here, with the reason no public way serves. tests/test_private_apis.py
# fails if a release of the library changes one of them.

running_loop: Final[Callable[[], asyncio.AbstractEventLoop | None]] = (
    asyncio._get_running_loop)
"""The event loop running in this thread, or None.

`asyncio.get_running_loop()` raises outside a loop, and catching that costs more than
the answer on the paths that ask (every crossing, every meter record). asyncio exports
`_get_running_loop` for loop implementations; it is the test get_running_loop() makes,
without the exception. An alias, not a function around it: no frame of this module
runs, so a debugger's step never stops here and the crossing pays no extra call.
"""


JANUS_ENDS = ("_sync_queue", "_async_queue")
"""The attributes of a janus.Queue that hold its two ends."""


def unlink_janus(queue: Any) -> None:
    """Break the reference cycle a closed janus queue leaves: the queue and its two
    ends refer to each other, so a closed queue would otherwise wait for the cycle
    collector's next full collection, which a busy server runs rarely, and memory
    grows with the connections served meanwhile (docs/performance.md). janus offers
    no public way to let go of its ends. Should a release rename them, closing still
    works; the cycle is left, and the tests say so."""
    for end in JANUS_ENDS:
        vars(queue).pop(end, None)


def janus_queue_of(face: Any) -> Any:
    """The janus.Queue a face (`sync_q` or `async_q`) belongs to. janus offers no public
    way back from a face to its queue, and `guessgame run` meets faces only: it keys
    what it learns about one queue's two sides on the queue, so that each side's wait
    names the other (observe/stdlib_bridges.py)."""
    return face._parent
