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
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import importlib
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable
from contextvars import ContextVar
from typing import Any, Final, TypeVar

from guessgame import trace, waits
from guessgame.config import Settings
from guessgame.workers import IDLE_TIMEOUT, WorkerPool

T = TypeVar("T")

LOOP_THREAD_NAME: Final = "event-loop"
RESOLVER_WORKERS: Final = 4


def new_event_loop(uvloop: bool = False) -> asyncio.AbstractEventLoop:
    """asyncio's own loop, or uvloop's with `uvloop = true` when uvloop is installed.

    uvloop is optional (the `bench` extra): measured here it halved the server's CPU
    per round at 1000 clients. Asked for but missing, it is not worth failing over.
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
                 max_workers: int, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.loop = loop
        self._thread = thread
        self._loop_thread_id: int | None = None
        self._max_workers = max_workers
        self._idle_timeout = idle_timeout
        self._executors: dict[str, WorkerPool] = {}
        self._executors_lock = threading.Lock()
        self._waiting: set[concurrent.futures.Future[Any]] = set()
        self._waiting_lock = threading.Lock()
        self._stopped = False

    @classmethod
    def adopt_running_loop(cls, max_workers: int, idle_timeout: float = IDLE_TIMEOUT) -> Bridge:
        loop = asyncio.get_running_loop()
        _name_what_runs_on(loop, own_loop=False)
        bridge = cls(loop, None, max_workers, idle_timeout)
        bridge._loop_thread_id = threading.get_ident()
        waits.watch_loop(loop)
        return bridge

    @classmethod
    def start_loop_thread(cls, max_workers: int, debug: bool = False, uvloop: bool = False,
                          idle_timeout: float = IDLE_TIMEOUT) -> Bridge:
        loop = new_event_loop(uvloop)
        loop.set_debug(debug)
        _name_what_runs_on(loop, own_loop=True)
        bridge = cls(loop, None, max_workers, idle_timeout)
        ready = threading.Event()
        bridge._thread = threading.Thread(target=bridge._serve_loop, args=(ready,),
                                          name=LOOP_THREAD_NAME)
        bridge._thread.start()
        ready.wait()
        return bridge

    def _serve_loop(self, ready: threading.Event) -> None:
        self._loop_thread_id = threading.get_ident()
        waits.watch_loop(self.loop)
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
            waits.unwatch_loop(self.loop)
            self.loop.close()

    @property
    def owns_thread(self) -> bool:
        return self._thread is not None

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread_id

    # --- thread -> loop ------------------------------------------------------------

    def run_in_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and block this thread until it ends.

        The coroutine runs in a copy of the caller's context, and its exception is
        raised here with the loop-side traceback kept. Its task is named after the
        coroutine and the waiting thread, e.g. `System._async_session from session
        127.0.0.1:50312`, so a debugger or the trace tells whose work it is.
        """
        name = getattr(coro, "__qualname__", "coroutine")
        if self.in_loop_thread():
            coro.close()
            raise BridgeError(
                "run_in_loop() blocks until the coroutine ends, so it cannot be called "
                "from the event loop thread; await the coroutine instead"
            )
        if self.loop.is_closed() or not self.loop.is_running():
            coro.close()
            state = "closed" if self.loop.is_closed() else "not running"
            raise BridgeError(f"cannot run {name}(): the event loop is {state}")
        flow = 0
        if trace.enabled:
            flow = trace.new_flow()
            trace.crossing("run_coroutine_threadsafe", "thread->loop", name, flow)
        # The wait graph records this thread waiting; the task factory names the task.
        wait = waits.begin_thread("run_coroutine_threadsafe")
        # run_coroutine_threadsafe takes no task name; it creates the task in a callback
        # that runs in a copy of this context, where the task factory finds the name.
        token = _NEXT_TASK_NAME.set(
            (f"{name} from {threading.current_thread().name}", wait, flow))
        try:
            # Under the lock that _fail_stranded() takes: a loop that stops after the
            # check above either sees this call waiting, or refuses it here.
            with self._waiting_lock:
                if self._stopped:
                    coro.close()
                    raise BridgeError(f"cannot run {name}(): the event loop has stopped")
                future = asyncio.run_coroutine_threadsafe(coro, self.loop)
                self._waiting.add(future)
        except BaseException:
            waits.end(wait)
            raise
        finally:
            _NEXT_TASK_NAME.reset(token)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if self._stopped:  # cancelled by _fail_stranded() or with the loop's tasks
                raise BridgeError("the event loop stopped before the call ended") from None
            raise
        finally:
            waits.end(wait)
            with self._waiting_lock:
                self._waiting.discard(future)

    # --- loop -> thread ------------------------------------------------------------

    async def run_in_thread(self, purpose: str, fn: Callable[..., T], *args: Any,
                            thread_name: str | None = None) -> T:
        """Run blocking `fn(*args)` in a worker thread serving `purpose`, and await it.

        run_in_executor does not carry contextvars across, so the call runs in a copy
        of the caller's context. The pools grow up to one worker per possible parked
        call, so a read parked by one connection never queues another connection's,
        and shrink again as workers sit idle (see workers.py).
        """
        flow = 0
        if trace.enabled:
            flow = trace.new_flow()
            trace.crossing("run_in_executor", "loop->thread", getattr(fn, "__qualname__", "?"),
                           flow)
        context = contextvars.copy_context()
        # The wait graph: this task waits for a worker, named when the call starts.
        wait = waits.begin(
            "run_in_executor", ("any", f"a worker of blocking-{purpose} (not started yet)"))
        call = _NamedCall(context, thread_name, fn, args, wait, flow)
        try:
            return await self.loop.run_in_executor(self._executor(purpose), call)
        finally:
            waits.end(wait)

    def _executor(self, purpose: str) -> WorkerPool:
        executor = self._executors.get(purpose)
        if executor is None:
            with self._executors_lock:
                executor = self._executors.setdefault(
                    purpose,
                    WorkerPool(f"blocking-{purpose}", self._max_workers, self._idle_timeout),
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
        self.shutdown_executors()
        if self._thread is None:  # an adopted loop: whoever runs it closes it
            self._fail_stranded()
            waits.unwatch_loop(self.loop)
            return
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
    worker would stay behind after the call: once the call is done, no thread is left.
    """
    if trace.enabled:
        trace.crossing("thread", "loop->thread", getattr(fn, "__qualname__", "?"))
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def call() -> None:
        try:
            result = context.run(fn)
        except BaseException as error:  # raised again in the awaiting task
            loop.call_soon_threadsafe(settle, None, error)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=call, name=name).start()
    return await done


def loop_thread_for(settings: Settings, layers: Iterable[str]) -> Bridge | None:
    """For a caller that is a plain thread: a loop thread if any of `layers` is async,
    else None, since at all threads no event loop exists."""
    if not settings.needs_loop_for(layers):
        return None
    return Bridge.start_loop_thread(settings.max_workers, settings.debug, settings.uvloop,
                                    settings.worker_idle_timeout)


class _NamedCall:
    """Runs a blocking call in the caller's context, under a telling thread name."""

    __slots__ = ("args", "context", "flow", "fn", "name", "wait")

    def __init__(self, context: contextvars.Context, name: str | None,
                 fn: Callable[..., Any], args: tuple[Any, ...], wait: int | None = None,
                 flow: int = 0) -> None:
        self.context, self.name, self.fn, self.args = context, name, fn, args
        self.wait, self.flow = wait, flow

    def __call__(self) -> Any:
        if self.wait is not None:
            waits.set_target(self.wait, ("thread", threading.get_ident()))
        if self.name is None:
            self._arrive()
            return self.context.run(self.fn, *self.args)
        thread = threading.current_thread()
        pool_name, thread.name = thread.name, self.name
        try:
            self._arrive()
            return self.context.run(self.fn, *self.args)
        finally:
            thread.name = pool_name

    def _arrive(self) -> None:
        """For the timeline's arrow: the worker takes the call (tracing on only)."""
        if self.flow:
            self.context.run(trace.flow_end, "run_in_executor", "loop->thread",
                             getattr(self.fn, "__qualname__", "?"), self.flow)


def _name_what_runs_on(loop: asyncio.AbstractEventLoop, *, own_loop: bool) -> None:
    """Name every task, so that a debugger and the trace never show `Task-N`.

    On a loop of our own, also name the threads asyncio starts for itself (to resolve
    a host name, say). An adopted loop keeps its lazy default executor: setting one
    would make asyncio.run() start a thread at exit just to shut it down, and the
    all-async stage starts no thread.
    """
    loop.set_task_factory(_named_task)
    if own_loop:
        # asyncio insists on a ThreadPoolExecutor here. It resolves host names only, and
        # never for a numeric address, so a small pool that keeps its threads will do.
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(
            RESOLVER_WORKERS, thread_name_prefix="blocking-asyncio"))


_NEXT_TASK_NAME: ContextVar[tuple[str, int, int] | None] = ContextVar("next_task_name",
                                                                       default=None)
"""The name run_in_loop gives the task that run_coroutine_threadsafe is about to create,
the wait graph's record of the thread that waits for it, and the trace's flow id (or 0)."""


class _Task(asyncio.Task[Any]):
    """A task whose name survives 3.13.0's create_task(), which calls set_name(name)
    after a task factory even when no name was given, renaming every task `None`."""

    def set_name(self, value: object) -> None:
        if value is not None:
            super().set_name(value)


def _named_task(loop: asyncio.AbstractEventLoop, coro: Any, *, name: str | None = None,
                context: contextvars.Context | None = None, **options: Any) -> asyncio.Task[Any]:
    """The bridge's task factory, so that no task is left named `Task-N`.

    A task created by run_in_loop is named after its coroutine and the waiting thread;
    any other task created without a name after its coroutine.
    An explicit create_task(name=...) wins: up to 3.13.0 asyncio renames the task after
    the factory returns it, and later versions pass the name (and any other option) here.
    """
    if name is not None:
        return _Task(coro, loop=loop, name=name, context=context, **options)
    pending = _NEXT_TASK_NAME.get()
    if pending is None:
        return _Task(coro, loop=loop, name=getattr(coro, "__qualname__", None),
                     context=context, **options)
    name, wait, flow = pending
    # The task's own context must not pass the name on to the tasks it creates.
    own = context.copy() if context is not None else contextvars.copy_context()
    own.run(_NEXT_TASK_NAME.set, None)
    task = _Task(coro, loop=loop, name=name, context=own, **options)
    waits.set_target(wait, ("task", task))
    if flow:  # the timeline's arrow ends on the new task's lane
        own.run(trace.flow_end, "run_coroutine_threadsafe", "thread->loop",
                getattr(coro, "__qualname__", "coroutine"), flow, task=name)
    return task


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    # Mirrors asyncio.run(): nothing should be left, but if something is, cancel it
    # and let it finish rather than have it "destroyed while pending".
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
