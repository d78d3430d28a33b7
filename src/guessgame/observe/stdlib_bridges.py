"""The stdlib's bridges in someone else's program, announced at the seam (guessgame.crossing).

`install()` replaces a few entry points with versions that announce each crossing the way
the game's own bridges do (bridge.py, crossing.ends), and `uninstall()` puts the originals
back. Nothing is replaced when guessgame is imported or when the game's commands run:
only `guessgame run` and `guessgame debug PROGRAM.py` install it, around the program.

- `asyncio.run_coroutine_threadsafe`: thread -> loop. The coroutine runs inside a
  wrapper that announces the take and, as it ends, the sender's return; when a debugger
  follows the call, inside `crossing.arrive`, and the sender's own `result()` announces
  the return, in the sender's thread, where the debugger takes up its step again.
- `BaseEventLoop.run_in_executor`: loop -> thread, any executor (`asyncio.to_thread` goes
  through it). The call runs inside `crossing.Arriving`.
- janus: `put`, `get` and their `_nowait` forms on both faces of every queue.
- `BaseEventLoop.run_forever` (which `run_until_complete` and `asyncio.run` use):
  `loop_started` and `loop_stopped`.

With no observer attached each replacement costs one look at `crossing.observed`. The
game's own bridges already announce: a call that arrives already wrapped (`arrive`,
`Arriving`, the bridge's `_NamedCall`), a janus call made by `crossing.ends`'s ends and
the bridge's own loop thread pass straight through, so nothing is announced twice.
What asyncio refuses (a future given to run_coroutine_threadsafe, a coroutine function
to run_in_executor on a loop in debug mode) goes to the original unwrapped, which
raises TypeError at the call as it does without guessgame.
A bridge made by hand (call_soon_threadsafe and a threading.Event) or another event-loop
library's is not seen.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import asyncio.tasks
import concurrent.futures
import importlib
import inspect
import sys
import threading
import weakref
from collections.abc import Callable, Coroutine
from types import CodeType
from typing import Any, Final

from guessgame import bridge, crossing
from guessgame.crossing import LOOP_TO_THREAD, THREAD_TO_LOOP

_originals: dict[tuple[Any, str], Any] = {}
"""(owner, attribute) -> the original object, while installed."""

_call: dict[str, Any] = {}
"""The originals the replacements call, by a short name, while installed."""


def installed() -> bool:
    return bool(_originals)


def patched() -> dict[tuple[Any, str], Any]:
    """What install() replaced: (owner, attribute) -> the original (for tests)."""
    return dict(_originals)


def _name_of(work: object) -> str:
    inner = getattr(work, "func", None)  # functools.partial, as asyncio.to_thread makes
    if inner is not None and getattr(inner, "__qualname__", "") == "Context.run":
        args = getattr(work, "args", ())
        inner = args[0] if args else inner
    return bridge._name_of(inner if inner is not None else work)


# --- thread -> loop ------------------------------------------------------------------


class _AnnouncedFuture(concurrent.futures.Future):  # type: ignore[type-arg]
    """The future run_coroutine_threadsafe hands back when a debugger follows the call,
    whose wait announces the return in the sender's thread, where the debugger holds the
    sender until then. `_crossing` holds the crossing until the first result() or
    exception() to come back with the outcome announces it."""

    _crossing: list[crossing.Crossing]

    def result(self, timeout: float | None = None) -> Any:
        claimed = self._claim()
        try:
            return super().result(timeout)
        finally:
            self._settle(claimed)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        claimed = self._claim()
        try:
            return super().exception(timeout)
        finally:
            self._settle(claimed)

    def _claim(self) -> crossing.Crossing | None:
        try:
            return self._crossing.pop()  # atomic: one claimant only
        except IndexError:
            return None

    def _settle(self, claimed: crossing.Crossing | None) -> None:
        if claimed is None:
            return
        if self.done():
            crossing.returned(claimed)
        else:  # timed out: a later wait announces it
            self._crossing.append(claimed)


def run_coroutine_threadsafe(coro: Coroutine[Any, Any, Any],
                             loop: asyncio.AbstractEventLoop) -> concurrent.futures.Future[Any]:
    original = _call["run_coroutine_threadsafe"]
    if (not crossing.observed or getattr(coro, "cr_code", None) is _ARRIVE
            or not asyncio.iscoroutine(coro)):  # refused by the original, as without us
        future: concurrent.futures.Future[Any] = original(coro, loop)
        return future
    what = bridge._name_of(coro)
    seen = crossing.sent("run_coroutine_threadsafe", THREAD_TO_LOOP, what)
    followed = "step" in seen.marks  # a debugger steps into it
    if followed:
        work = crossing.arrive(coro, seen)
    else:
        work = _arrive(coro, seen)
        # Named after the call and its sender, as the task that runs it is named
        # after its coroutine (tasknames.py): no lookup on the loop's side.
        work.__qualname__ = f"{what} from {seen.sender_name}"  # type: ignore[attr-defined]
    try:
        future = original(work, loop)
    except BaseException:
        crossing.returned(seen)
        raise
    if followed:  # the sender's wait announces the return, in the sender's thread
        future.__class__ = _AnnouncedFuture
        future._crossing = [seen]  # type: ignore[attr-defined]
    return future


async def _arrive(coro: Coroutine[Any, Any, Any], seen: crossing.Crossing) -> Any:
    """`crossing.arrive`, which also announces the sender's return as the coroutine
    ends, just before the future is set: the sender waits no longer from then on,
    whether it is in result() or not, and the loop does no more for it."""
    crossing.taken(seen)
    try:
        return await coro
    finally:
        crossing.finished(seen)
        crossing.returned(seen)


_ARRIVE: Final[CodeType] = crossing.arrive.__code__


# --- loop -> thread ------------------------------------------------------------------


def run_in_executor(loop: asyncio.AbstractEventLoop, executor: Any, func: Callable[..., Any],
                    *args: Any) -> asyncio.Future[Any]:
    original = _call["run_in_executor"]
    if (not crossing.observed or type(func) in _ANNOUNCED_CALLS
            or (loop.get_debug() and _refused(func))):
        future: asyncio.Future[Any] = original(loop, executor, func, *args)
        return future
    seen = crossing.sent("run_in_executor", LOOP_TO_THREAD, _name_of(func),
                         ("any", "an executor's worker (not started yet)"))
    try:
        future = original(loop, executor, crossing.Arriving(func, seen), *args)
    except BaseException:
        crossing.returned(seen)
        raise
    # Runs on the loop before the awaiting task resumes: the sender's return.
    future.add_done_callback(lambda _: crossing.returned(seen))
    return future


_ANNOUNCED_CALLS: Final = frozenset({bridge._NamedCall, crossing.Arriving})


def _refused(func: object) -> bool:
    """What a loop in debug mode refuses with TypeError in run_in_executor(): left to
    the original as is, whose check a wrapper would hide. Asked in debug mode only,
    as asyncio asks: the check calls into abc and inspect, where a step would stop."""
    return not callable(func) or asyncio.iscoroutine(func) or inspect.iscoroutinefunction(func)


# --- every loop the program runs -----------------------------------------------------


def run_forever(loop: asyncio.AbstractEventLoop) -> None:
    original = _call["run_forever"]
    if not crossing.observed or _from_game_loop(sys._getframe(1)):
        original(loop)
        return
    if _options.debug_loops:
        loop.set_debug(True)
    crossing.loop_started(loop, own=threading.current_thread() is not threading.main_thread())
    try:
        original(loop)
    finally:
        crossing.loop_stopped(loop)


def _from_game_loop(frame: Any) -> bool:
    """Called by the game's own loop thread, which announces its loop itself."""
    for _ in range(3):
        if frame is None:
            return False
        if frame.f_code is bridge.Bridge._serve_loop.__code__:
            return True
        frame = frame.f_back
    return False


# --- janus ---------------------------------------------------------------------------


class _Sides:
    """Who is on each side of one janus queue, learnt as they use it."""

    def __init__(self) -> None:
        self.thread: crossing.Party = ("any", "a thread (not seen yet)")
        self.task: crossing.Party = ("any", "a task (not seen yet)")


_sides: weakref.WeakKeyDictionary[Any, _Sides] = weakref.WeakKeyDictionary()


def _sides_of(face: Any) -> _Sides:
    queue = crossing.janus_queue_of(face)
    found = _sides.get(queue)
    if found is None:
        found = _sides.setdefault(queue, _Sides())
    return found


def _wrap(item: Any, direction: str) -> Any:
    if not crossing.items_observed:
        return item
    return crossing.carry(item, "janus", direction, repr)


def _after_put(carried: Any) -> None:
    if type(carried) is crossing.Carried:
        crossing.returned(carried.crossing)


def _from_game_end(frame: Any) -> bool:
    return frame is not None and frame.f_code in _GAME_ENDS


_GAME_ENDS: Final = frozenset({crossing.ObservedThreadEnd.put.__code__,
                               crossing.ObservedThreadEnd.get.__code__,
                               crossing.ObservedLoopEnd.put.__code__,
                               crossing.ObservedLoopEnd.get.__code__})


def _waits(face: Any, on_thread: bool, must_wait: bool, idle: bool) -> crossing.Block | None:
    """Learn who uses this side of the queue; if it `must_wait` (the queue is full for a
    put, empty for a get), announce that it waits for the other side. A get's wait is
    `idle`: an empty queue is the usual state, not a stall."""
    sides = _sides_of(face)
    if on_thread:
        sides.thread = me = ("thread", threading.get_ident())
        other = sides.task
    else:
        sides.task = me = crossing.me()
        other = sides.thread
    return crossing.blocked("janus", other, idle=idle, waiter=me) if must_wait else None


def _waited(waiting: crossing.Block | None) -> None:
    if waiting is not None:
        crossing.unblocked(waiting)


def _put_nowait(short: str, face: Any, item: Any, direction: str) -> None:
    original = _call[short]
    if not crossing.observed:
        original(face, item)
        return
    carried = _wrap(item, direction)
    original(face, carried)
    _after_put(carried)


def sync_put(face: Any, item: Any, block: bool = True, timeout: float | None = None) -> None:
    original = _call["sync.put"]
    if not crossing.observed or _from_game_end(sys._getframe(1)):
        original(face, item, block, timeout)
        return
    carried = _wrap(item, THREAD_TO_LOOP)
    waiting = _waits(face, True, block and face.full(), idle=False)
    try:
        original(face, carried, block, timeout)
    finally:
        _waited(waiting)
    _after_put(carried)


def sync_get(face: Any, block: bool = True, timeout: float | None = None) -> Any:
    original = _call["sync.get"]
    if not crossing.observed or _from_game_end(sys._getframe(1)):
        return original(face, block, timeout)
    waiting = _waits(face, True, block and face.empty(), idle=True)
    try:
        carried = original(face, block, timeout)
    finally:
        _waited(waiting)
    return crossing.unwrap(carried)


def sync_put_nowait(face: Any, item: Any) -> None:
    _put_nowait("sync.put_nowait", face, item, THREAD_TO_LOOP)


def sync_get_nowait(face: Any) -> Any:
    return crossing.unwrap(_call["sync.get_nowait"](face))


async def async_put(face: Any, item: Any) -> None:
    original = _call["async.put"]
    if not crossing.observed or _from_game_end(sys._getframe(1)):
        await original(face, item)
        return
    carried = _wrap(item, LOOP_TO_THREAD)
    waiting = _waits(face, False, face.full(), idle=False)
    try:
        await original(face, carried)
    finally:
        _waited(waiting)
    _after_put(carried)


async def async_get(face: Any) -> Any:
    original = _call["async.get"]
    if not crossing.observed or _from_game_end(sys._getframe(1)):
        return await original(face)
    waiting = _waits(face, False, face.empty(), idle=True)
    try:
        carried = await original(face)
    finally:
        _waited(waiting)
    return crossing.unwrap(carried)


def async_put_nowait(face: Any, item: Any) -> None:
    _put_nowait("async.put_nowait", face, item, LOOP_TO_THREAD)


def async_get_nowait(face: Any) -> Any:
    return crossing.unwrap(_call["async.get_nowait"](face))


_JANUS_FACES: Final = {
    "_SyncQueueProxy": {"put": sync_put, "get": sync_get, "put_nowait": sync_put_nowait,
                        "get_nowait": sync_get_nowait},
    "_AsyncQueueProxy": {"put": async_put, "get": async_get, "put_nowait": async_put_nowait,
                         "get_nowait": async_get_nowait},
}


# --- install and uninstall -----------------------------------------------------------


def _replace(owner: Any, name: str, replacement: Any, short: str = "") -> None:
    _originals[(owner, name)] = _call[short or name] = owner.__dict__[name]
    setattr(owner, name, replacement)


class _options:
    debug_loops = False


def install(debug_loops: bool = False) -> None:
    """Make the stdlib's bridges announce at the seam, until uninstall(). `debug_loops`:
    every loop the program runs is in asyncio's debug mode (`--debug`)."""
    _options.debug_loops = debug_loops
    if _originals:
        return
    _replace(asyncio.tasks, "run_coroutine_threadsafe", run_coroutine_threadsafe)
    _replace(asyncio, "run_coroutine_threadsafe", run_coroutine_threadsafe)
    base = asyncio.base_events.BaseEventLoop
    _replace(base, "run_in_executor", run_in_executor)
    _replace(base, "run_forever", run_forever)
    try:
        janus = importlib.import_module("janus")
    except ImportError:  # a program without janus has no janus queue to announce
        return
    for face, methods in _JANUS_FACES.items():
        for name, replacement in methods.items():
            short = f"{'sync' if face == '_SyncQueueProxy' else 'async'}.{name}"
            _replace(janus.__dict__[face], name, replacement, short)


def uninstall() -> None:
    """Put every original back."""
    for (owner, name), original in list(_originals.items()):
        setattr(owner, name, original)
    _originals.clear()
    _call.clear()
    _options.debug_loops = False
