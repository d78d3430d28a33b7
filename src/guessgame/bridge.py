"""Crossings between threads and the process's one event loop.

Each crossing is named by its direction:

- `Bridge.run_in_loop(coro)`: a thread runs a coroutine on the loop and waits for it
  (asyncio.run_coroutine_threadsafe).
- `await Bridge.run_in_thread(fn, ...)`: a coroutine runs blocking code in a worker
  thread (loop.run_in_executor).

Streams of items cross in queues: lines in janus queues (adapters.py), reports in a
bounded SimpleQueue whose producers never wait (reports.py).

Misuse fails with a sentence instead of a hang: waiting on the loop from the loop's own
thread, or on a loop that is closed or stopped, raises BridgeError. A call still waiting
when the loop stops is failed, not left hanging.

Cancellation crosses one way only. A thread that stops waiting for the loop (a timeout,
or KeyboardInterrupt raised in it) cancels the coroutine there. A task that stops
waiting for a thread leaves the thread running to its end, since a thread cannot be
interrupted; its result is dropped. docs/mixed-code-rules.md states the rules of both
worlds and the tests that back them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import importlib
import inspect
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, Final, NoReturn, TypeVar

from guessgame import crossing
from guessgame.config import Settings
from guessgame.crossing import LOOP_TO_THREAD, THREAD_TO_LOOP
from guessgame.workers import IDLE_TIMEOUT, WorkerPool

T = TypeVar("T")

LOOP_THREAD_NAME: Final = "event-loop"
RESOLVER_WORKERS: Final = 4
CANCEL_GRACE: Final = 1.0
"""Seconds a thread that gave up on a coroutine waits for its cancellation to land."""


def new_event_loop(uvloop: bool = False) -> asyncio.AbstractEventLoop:
    """asyncio's own loop, or uvloop's with `uvloop = true` when uvloop is installed.

    uvloop is optional (the `bench` extra), and the suite runs on both where installed.
    Asked for but missing, it is not worth failing over: asyncio's loop serves the same.
    """
    if uvloop:
        try:
            module = importlib.import_module("uvloop")
        except ImportError:
            logging.getLogger("guessgame").warning("uvloop is not installed; using asyncio's "
                                                   "event loop")
        else:
            loop: asyncio.AbstractEventLoop = module.new_event_loop()
            return loop
    return asyncio.new_event_loop()


class BridgeError(RuntimeError):
    """A crossing that cannot complete: it would deadlock, or the loop is gone."""


class Bridge:
    """The process's one event loop, seen from both worlds.

    Either it adopts a loop already running in the main thread (the top-level
    component is async), or it starts a dedicated loop thread.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread | None,
                 max_workers: int, worker_idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.loop = loop
        self._thread = thread
        self._loop_thread_id: int | None = None
        self._max_workers = max_workers
        self._worker_idle_timeout = worker_idle_timeout
        self._executors: dict[str, WorkerPool] = {}
        self._executors_lock = threading.Lock()
        self._waiting: set[concurrent.futures.Future[Any]] = set()
        self._waiting_lock = threading.Lock()
        self._stopped = False

    @classmethod
    def adopt_running_loop(cls, max_workers: int,
                           worker_idle_timeout: float = IDLE_TIMEOUT) -> Bridge:
        loop = asyncio.get_running_loop()
        bridge = cls(loop, None, max_workers, worker_idle_timeout)
        bridge._loop_thread_id = threading.get_ident()
        crossing.loop_started(loop, own=False)
        return bridge

    @classmethod
    def start_loop_thread(cls, max_workers: int, debug: bool = False, uvloop: bool = False,
                          worker_idle_timeout: float = IDLE_TIMEOUT) -> Bridge:
        loop = new_event_loop(uvloop)
        loop.set_debug(debug)
        _default_executor_for(loop)
        bridge = cls(loop, None, max_workers, worker_idle_timeout)
        ready = threading.Event()
        bridge._thread = threading.Thread(target=bridge._serve_loop, args=(ready,),
                                          name=LOOP_THREAD_NAME)
        bridge._thread.start()
        ready.wait()
        return bridge

    def _serve_loop(self, ready: threading.Event) -> None:
        self._loop_thread_id = threading.get_ident()
        crossing.loop_started(self.loop, own=True)
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        try:
            self.loop.run_forever()
        finally:
            # The loop never runs outside its own thread, not even to be cleaned up.
            # Callers still waiting get a BridgeError first, not a bare cancellation.
            self._fail_stranded()
            _cancel_leftovers(self.loop)
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            asyncio.set_event_loop(None)
            crossing.loop_stopped(self.loop)
            self.loop.close()

    @property
    def owns_thread(self) -> bool:
        return self._thread is not None

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread_id

    # --- thread -> loop ------------------------------------------------------------

    def run_in_loop(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the loop and block this thread until it ends, or for at most
        `timeout` seconds.

        The coroutine runs in a copy of the caller's context: it sees the caller's
        contextvars, and what it sets there does not come back. Its exception is raised
        here with the loop-side traceback kept.

        Cancellation: when this thread stops waiting, because `timeout` passed or an
        exception such as KeyboardInterrupt was raised in it, the coroutine is cancelled
        on the loop: it sees CancelledError where it awaits, and its `finally` blocks run.
        After a timeout this thread waits up to CANCEL_GRACE seconds for that to finish,
        so that the coroutine's cleanup is done when TimeoutError is raised; a coroutine
        that swallows the cancellation is left running. A coroutine cancelled on the
        loop side (by the loop stopping, or by some other task) ends the call as below.

        Raises:
            TimeoutError: `timeout` passed; the coroutine was cancelled.
            BridgeError: called from the loop's own thread (it would deadlock), the loop
                is closed or not running, or it stopped before the coroutine ended.
            concurrent.futures.CancelledError: the coroutine was cancelled on the loop
                by something else than this call.
            Whatever the coroutine raises.
        """
        if self.in_loop_thread():
            coro.close()
            raise BridgeError("run_in_loop() blocks until the coroutine ends, so it cannot be "
                              "called from the event loop thread; await the coroutine instead")
        seen = crossing.sent("run_coroutine_threadsafe", THREAD_TO_LOOP,
                             _name_of(coro)) if crossing.observed else None
        work = coro if seen is None else crossing.arrive(coro, seen)
        try:
            try:
                future = self._submit(work, coro)
            except BridgeError:
                work.close()
                raise
            try:
                return future.result(timeout)
            except concurrent.futures.CancelledError:
                if self._stopped:  # cancelled by _fail_stranded() or with the loop's tasks
                    raise BridgeError("the event loop stopped before the call ended") from None
                raise
            except TimeoutError:
                if not future.cancel():  # it ended as the wait timed out
                    return future.result()
                ended = threading.Event()
                with contextlib.suppress(RuntimeError):  # closed: nothing more runs there
                    self.loop.call_soon_threadsafe(_set_once_done, self.loop, work, coro, ended)
                if not ended.wait(CANCEL_GRACE):
                    # Cancelled before its first step, it never ran: nothing awaits it.
                    _close_unstarted(work, coro)
                raise TimeoutError(f"{_name_of(coro)}() did not end within {timeout} s, "
                                   "so it was cancelled on the event loop") from None
            except BaseException:
                future.cancel()  # this thread gave up waiting: the coroutine is not wanted
                raise
            finally:
                with self._waiting_lock:
                    self._waiting.discard(future)
        finally:
            if seen is not None:
                crossing.returned(seen)

    def _submit(self, work: Coroutine[Any, Any, T],
                coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[T]:
        """run_coroutine_threadsafe, refused in a sentence if the loop cannot run `work`
        (which is `coro`, or the seam's wrapper around it)."""
        if self.loop.is_closed() or not self.loop.is_running() or self._stopped:
            state = ("is closed" if self.loop.is_closed() else
                     "is not running" if not self.loop.is_running() else "has stopped")
            self._refuse(coro, work, state)
        # Not under the lock: handing the coroutine over writes to the loop's wake-up
        # pipe, and no lock is held across a system call: every other caller would
        # queue behind it (docs/mixed-code-rules.md).
        try:
            future = asyncio.run_coroutine_threadsafe(work, self.loop)
        except RuntimeError:  # closed since the check
            self._refuse(coro, work, "is closed")
        # A loop that stops from here on finds this call in _waiting and fails it; one
        # that stopped since the check is seen here, under the lock _fail_stranded takes.
        with self._waiting_lock:
            if not self._stopped:
                self._waiting.add(future)
                return future
        future.cancel()
        return future

    @staticmethod
    def _refuse(coro: Coroutine[Any, Any, Any], work: Coroutine[Any, Any, Any],
                state: str) -> NoReturn:
        coro.close()
        work.close()
        raise BridgeError(f"cannot run {_name_of(coro)}(): the event loop {state}")

    # --- loop -> thread ------------------------------------------------------------

    async def run_in_thread(self, purpose: str, fn: Callable[..., T], *args: Any,
                            thread_name: str | None = None,
                            max_workers: int | None = None) -> T:
        """Run blocking `fn(*args)` in a worker thread serving `purpose`, and await it.

        run_in_executor does not carry contextvars across, so the call runs in a copy
        of the caller's context: it sees the caller's contextvars, and what it sets
        there does not come back. threading.local values are the worker's own, never
        the caller's. The pools grow up to one worker per possible parked call, so a
        read parked by one connection never queues another connection's, and shrink
        again as workers sit idle (see workers.py). `max_workers` caps the purpose's
        pool instead, when its pool is made: for calls that never park.

        Cancellation: cancelling the task that awaits this call (or a timeout around
        it, such as asyncio.timeout) ends the await at once, but the worker runs `fn`
        to its end: a thread cannot be interrupted. Its result or exception is then
        dropped without a warning, and the worker goes back to its pool. So bound the
        blocking call itself (a socket timeout, a query timeout) when it may outlast
        its caller. A call still queued for a worker when cancelled never runs.

        Raises:
            Whatever `fn` raises, with the worker's traceback kept.
            RuntimeError: the worker pool is shut down, or no thread can be started.
        """
        seen = crossing.sent("run_in_executor", LOOP_TO_THREAD, _name_of(fn),
                             ("any", f"a worker of blocking-{purpose} (not started yet)")
                             ) if crossing.observed else None
        call = _NamedCall(contextvars.copy_context(), thread_name,
                          fn if seen is None else crossing.Arriving(fn, seen), args)
        try:
            return await self.loop.run_in_executor(self._executor(purpose, max_workers), call)
        finally:
            if seen is not None:
                crossing.returned(seen)

    def _executor(self, purpose: str, max_workers: int | None = None) -> WorkerPool:
        executor = self._executors.get(purpose)
        if executor is None:
            with self._executors_lock:
                executor = self._executors.setdefault(
                    purpose,
                    WorkerPool(f"blocking-{purpose}", max_workers or self._max_workers,
                               self._worker_idle_timeout),
                )
        return executor

    # --- lifecycle -----------------------------------------------------------------

    def shutdown_executors(self) -> None:
        """Join every worker. Call once no session can still be parked in one."""
        with self._executors_lock:
            executors, self._executors = list(self._executors.values()), {}
        for executor in executors:
            executor.shutdown(wait=True)

    def close(self) -> None:
        """Join the workers; stop and close an owned loop thread. Either way, fail any
        call still waiting on the loop, and refuse new ones."""
        if self._thread is None:  # an adopted loop: whoever runs it closes it
            # Stranded calls fail first: this runs on the loop's thread, so a worker still
            # waiting in run_in_loop would wait for a loop that waits to join it.
            self._fail_stranded()
            self.shutdown_executors()
            crossing.loop_stopped(self.loop)
            return
        self.shutdown_executors()
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()

    def _fail_stranded(self) -> None:
        with self._waiting_lock:
            self._stopped = True
            stranded, self._waiting = list(self._waiting), set()
        # Cancel rather than set an exception: the loop-side task, cancelled next, then
        # finds its future cancelled, as asyncio expects, instead of already finished.
        # run_in_loop() turns the cancellation into a BridgeError.
        for future in stranded:
            future.cancel()


async def run_in_new_thread(fn: Callable[[], T], name: str) -> T:
    """Run blocking `fn()` in a thread of its own that ends with the call, and await it.

    For rare calls, such as stopping a threaded server during a reload, where a pooled
    worker would stay behind after the call: once the await returns, no thread is left.
    `fn` runs in a copy of the caller's context; what it sets there does not come back.

    Cancellation: cancelling the awaiting task ends the await at once; the thread runs
    `fn` to its end and its result or exception is dropped, even if the loop has closed
    by then. The thread is not a daemon, so the interpreter waits for it at exit: bound
    `fn` itself when it may block for long.

    Raises:
        Whatever `fn` raises.
        RuntimeError: no thread can be started.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    seen = crossing.sent("thread", LOOP_TO_THREAD, _name_of(fn)) if crossing.observed else None
    call = contextvars.copy_context().run
    work = fn if seen is None else crossing.Arriving(fn, seen)

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result: T | None = call(work)
            error: BaseException | None = None
        except BaseException as raised:  # raised again in the awaiting task
            result, error = None, raised
        # A closed loop had the awaiting task cancelled with it: nobody wants the outcome.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, error)

    thread = threading.Thread(target=run, name=name)
    thread.start()
    try:
        return await done
    finally:
        if seen is not None:
            crossing.returned(seen)
        if done.done() and not done.cancelled():
            # The thread handed its outcome over as its last step: joining it waits
            # only for its return, and leaves the caller no thread behind.
            thread.join()


@contextlib.contextmanager
def loop_thread(settings: Settings, layers: Iterable[str]) -> Iterator[Bridge | None]:
    """For a caller that is a plain thread: a loop thread while any of `layers` is async,
    closed on leaving the block; else None, since at all threads no event loop exists."""
    if not settings.needs_loop_for(layers):
        yield None
        return
    bridge = Bridge.start_loop_thread(settings.max_workers, settings.debug, settings.uvloop,
                                      settings.worker_idle_timeout)
    try:
        yield bridge
    finally:
        bridge.close()


def _set_once_done(loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, Any],
                   coro: Coroutine[Any, Any, Any], ended: threading.Event) -> None:
    """On the loop: `ended` once the task running `work` is done, its cleanup run, or at
    once if it is done already. The task was made before this runs (both are queued by
    the same thread, in order). Cancelled before its first step (by the loop's shutdown,
    say), none of it ran, its finally neither: closed here, as the task ends."""

    def done(_: object) -> None:
        _close_unstarted(work, coro)
        ended.set()

    for task in asyncio.all_tasks(loop):
        if task.get_coro() is work:
            task.add_done_callback(done)
            return
    done(None)


def _close_unstarted(*coros: Coroutine[Any, Any, Any]) -> None:
    for coro in coros:
        if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
            coro.close()


class _NamedCall:
    """Runs a blocking call in the caller's context, under a telling thread name."""

    __slots__ = ("args", "context", "fn", "name")

    def __init__(self, context: contextvars.Context, name: str | None,
                 fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.context, self.name, self.fn, self.args = context, name, fn, args

    def __call__(self) -> Any:
        if self.name is None:
            return self.context.run(self.fn, *self.args)
        thread = threading.current_thread()
        pool_name, thread.name = thread.name, self.name
        try:
            return self.context.run(self.fn, *self.args)
        finally:
            thread.name = pool_name


def _name_of(work: object) -> str:
    return getattr(work, "__qualname__", None) or type(work).__name__


def _default_executor_for(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio insists on a ThreadPoolExecutor for its own blocking calls. It resolves
    host names only, and never for a numeric address, so a small pool that keeps its
    threads will do, named so that a debugger tells them apart. An adopted loop keeps
    its lazy default: setting one would make asyncio.run() start a thread at exit just
    to shut it down, and the all-async stage starts no thread."""
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(
        RESOLVER_WORKERS, thread_name_prefix="blocking-asyncio"))


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    # Mirrors asyncio.run(): nothing should be left, but if something is, cancel it
    # and let it finish rather than have it "destroyed while pending".
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
