"""Cancellation, timeouts, context and locks across each bridge, as the docstrings of
bridge.py and docs/mixed-code-rules.md state them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import janus
import pytest

from guessgame import bridge as bridge_module
from guessgame import workers
from guessgame.bridge import Bridge, run_in_new_thread
from peers import CONFIG, eventually
from timing import UNIT

GIVE_UP = UNIT / 50
"""The timeout under test: short, since the coroutine it cuts would never end."""

VALUE: contextvars.ContextVar[str] = contextvars.ContextVar("VALUE", default="unset")


class Ending:
    """A coroutine that waits forever, and what it saw as it was cancelled."""

    def __init__(self, on_start: Callable[[], None] = lambda: None) -> None:
        self.on_start = on_start
        self.cancelled = threading.Event()
        self.cleaned_up = threading.Event()

    async def wait_forever(self) -> None:
        self.on_start()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        finally:
            await asyncio.sleep(0)  # cleanup that awaits still runs before the timeout ends
            self.cleaned_up.set()


# --- thread -> loop: run_in_loop -----------------------------------------------------


def test_a_timeout_cancels_the_coroutine_on_the_loop(bridge: Bridge) -> None:
    ending = Ending()
    with pytest.raises(TimeoutError, match=r"wait_forever\(\) did not end within .* cancelled"):
        bridge.run_in_loop(ending.wait_forever(), timeout=GIVE_UP)
    # Both seen by the time TimeoutError is raised: the thread waited for the cleanup.
    assert ending.cancelled.is_set() and ending.cleaned_up.is_set()
    assert bridge.run_in_loop(asyncio.sleep(0, "the loop still serves")) == "the loop still serves"


def test_a_timeout_ends_once_a_cancellation_before_the_first_step_lands(
        bridge: Bridge, monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread gives up while the loop is busy, and the task is cancelled on the
    loop's side before its first step (as the loop's shutdown cancels every task): none
    of the coroutine runs, its finally neither, and the thread's wait for the cleanup
    ends as the task does, not after CANCEL_GRACE."""
    started, given_up = threading.Event(), threading.Event()
    ending = Ending(on_start=started.set)
    submit = asyncio.run_coroutine_threadsafe
    closed_in: list[str] = []
    close_unstarted = bridge_module._close_unstarted

    def busy_until_given_up() -> None:  # runs after the task is made, before its step
        given_up.wait(UNIT)
        for task in asyncio.all_tasks(bridge.loop):
            task.cancel()

    def submitted(coro: Any, loop: asyncio.AbstractEventLoop) -> concurrent.futures.Future[Any]:
        # The loop is held until both callbacks are queued, so the task's first step,
        # queued as the task is made, comes after busy_until_given_up.
        queued = threading.Event()
        loop.call_soon_threadsafe(queued.wait, UNIT)
        future = submit(coro, loop)
        future.add_done_callback(lambda _: given_up.set())  # the thread's cancel()
        loop.call_soon_threadsafe(busy_until_given_up)
        queued.set()
        return future

    def closed(*coros: Any) -> None:
        closed_in.append(threading.current_thread().name)
        close_unstarted(*coros)

    monkeypatch.setattr(asyncio, "run_coroutine_threadsafe", submitted)
    monkeypatch.setattr(bridge_module, "_close_unstarted", closed)
    monkeypatch.setattr(bridge_module, "CANCEL_GRACE", UNIT)
    with pytest.raises(TimeoutError, match=r"wait_forever\(\) did not end within"):
        bridge.run_in_loop(ending.wait_forever(), timeout=GIVE_UP)
    monkeypatch.undo()
    assert given_up.is_set() and not started.is_set()
    # Closed on the loop as the task ended, not by the thread once the grace ran out.
    assert closed_in == [bridge_module.LOOP_THREAD_NAME]
    assert bridge.run_in_loop(asyncio.sleep(0, "the loop still serves")) == "the loop still serves"


def test_within_its_timeout_a_coroutine_returns_or_raises_as_without_one(bridge: Bridge) -> None:
    async def answer() -> int:
        return 42

    async def fail() -> None:
        raise LookupError("from the loop")

    assert bridge.run_in_loop(answer(), timeout=UNIT) == 42
    with pytest.raises(LookupError, match="from the loop"):
        bridge.run_in_loop(fail(), timeout=UNIT)


def test_a_thread_interrupted_while_waiting_cancels_the_coroutine(bridge: Bridge) -> None:
    """KeyboardInterrupt in the waiting thread: it abandons the call, and the coroutine
    is cancelled instead of running on for nobody."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    main = threading.main_thread().ident
    assert main is not None

    def waiting_for_the_loop() -> bool:
        frame = sys._current_frames()[main]
        caller = frame.f_back  # Future.result() waits in Condition.wait()
        return frame.f_code.co_name == "wait" and caller is not None and \
            caller.f_code.co_name == "result"

    interrupted = threading.Event()

    def interrupt_once(signum: int, frame: object) -> None:
        if not interrupted.is_set():
            interrupted.set()
            raise KeyboardInterrupt

    def interrupt() -> None:
        eventually(waiting_for_the_loop, "the caller to wait in run_in_loop")
        # A signal that lands just before the wait blocks is seen only at its end:
        # send it again until it has been seen, as a user presses Ctrl-C again.
        while not interrupted.is_set():
            signal.pthread_kill(main, signal.SIGINT)
            interrupted.wait(GIVE_UP)

    interrupter = threading.Thread(target=interrupt, name="interrupter")
    ending = Ending(on_start=interrupter.start)
    previous = signal.signal(signal.SIGINT, interrupt_once)
    try:
        with pytest.raises(KeyboardInterrupt):
            bridge.run_in_loop(ending.wait_forever())
    finally:
        interrupter.join(UNIT)
        signal.signal(signal.SIGINT, previous)
    assert ending.cancelled.wait(UNIT) and ending.cleaned_up.wait(UNIT)


# --- loop -> thread: run_in_thread, run_in_new_thread ---------------------------------


class Blocking:
    """A blocking call that runs until released, and ends with a result or an error."""

    def __init__(self, fails: bool) -> None:
        self.fails = fails
        self.started = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()

    def __call__(self) -> str:
        self.started.set()
        self.release.wait(UNIT)
        self.finished.set()
        if self.fails:
            raise LookupError("nobody is waiting for this")
        return "nobody is waiting for this"


def join_threads_named(name: str) -> None:
    """A thread of run_in_new_thread hands its outcome over just before it ends."""
    for thread in [t for t in threading.enumerate() if t.name == name]:
        thread.join(UNIT)
        assert not thread.is_alive()


def workers_of(purpose: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(f"blocking-{purpose}_")]


@pytest.mark.parametrize("fails", [False, True], ids=["result", "exception"])
def test_cancelling_the_awaiting_task_leaves_the_worker_to_finish(
        fails: bool, caplog: pytest.LogCaptureFixture) -> None:
    bridge = Bridge.start_loop_thread(max_workers=4, worker_idle_timeout=GIVE_UP)
    blocking = Blocking(fails)
    try:
        async def start() -> asyncio.Task[str]:
            return asyncio.ensure_future(bridge.run_in_thread("cancelled", blocking))

        async def cancel(task: asyncio.Task[str]) -> None:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        task = bridge.run_in_loop(start())
        assert blocking.started.wait(UNIT)
        bridge.run_in_loop(cancel(task))  # the await ends at once ...
        assert not blocking.finished.is_set()  # ... while the worker still runs
        blocking.release.set()
        assert blocking.finished.wait(UNIT)
        # Its outcome dropped, the worker goes idle, then away like any other.
        eventually(lambda: not workers_of("cancelled"), "the worker to retire")
    finally:
        blocking.release.set()
        bridge.close()
    assert not caplog.records  # no "exception was never retrieved", nothing logged


def test_a_call_cancelled_while_queued_for_a_worker_never_runs() -> None:
    bridge = Bridge.start_loop_thread(max_workers=1)
    blocking = Blocking(fails=False)
    ran = threading.Event()
    try:
        async def queue_one_behind_another() -> str:
            first = asyncio.ensure_future(bridge.run_in_thread("one", blocking))
            queued = asyncio.ensure_future(bridge.run_in_thread("one", ran.set))
            await asyncio.sleep(0)  # both submitted: the second waits for the only worker
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            blocking.release.set()
            return await first

        assert bridge.run_in_loop(queue_one_behind_another()) == "nobody is waiting for this"
        # The worker is free again, and it passed over the cancelled call.
        assert bridge.run_in_loop(bridge.run_in_thread("one", lambda: "next")) == "next"
        assert not ran.is_set()
    finally:
        blocking.release.set()
        bridge.close()


@pytest.mark.parametrize("fails", [False, True], ids=["result", "exception"])
def test_cancelling_a_task_awaiting_a_new_thread_leaves_it_to_finish(
        fails: bool, caplog: pytest.LogCaptureFixture) -> None:
    """Even once its loop has closed, the thread ends quietly: its outcome is dropped."""
    blocking = Blocking(fails)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        started = asyncio.Event()

        def announced() -> str:
            loop.call_soon_threadsafe(started.set)
            return blocking()

        task = asyncio.create_task(run_in_new_thread(announced, "detached"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    blocking.release.set()
    join_threads_named("detached")
    assert blocking.finished.is_set()
    assert not caplog.records


# --- janus queues --------------------------------------------------------------------


def test_cancelling_a_wait_on_a_janus_queue_loses_no_item() -> None:
    async def main() -> str:
        queue: janus.Queue[str] = janus.Queue(1)
        try:
            getter = asyncio.create_task(queue.async_q.get())
            await asyncio.sleep(0)  # parked in get()
            getter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await getter
            queue.sync_q.put("kept")  # room for one: does not block the loop
            return queue.sync_q.get(timeout=UNIT)
        finally:
            await queue.aclose()

    assert asyncio.run(main()) == "kept"


def test_a_thread_gives_up_on_a_janus_queue_with_its_own_timeout() -> None:
    async def main() -> None:
        queue: janus.Queue[str] = janus.Queue(1)
        try:
            loop = asyncio.get_running_loop()
            with pytest.raises(janus.SyncQueueEmpty):
                await loop.run_in_executor(None, lambda: queue.sync_q.get(timeout=GIVE_UP))
        finally:
            await queue.aclose()

    asyncio.run(main())


# --- contextvars, and threading.local -------------------------------------------------


def set_on_the_far_side(value: str) -> str:
    seen = VALUE.get()
    VALUE.set(value)
    return seen


async def set_on_the_loop(value: str) -> str:
    return set_on_the_far_side(value)


def test_run_in_loop_carries_the_context_there_and_nothing_back(bridge: Bridge) -> None:
    def caller() -> None:
        VALUE.set("the thread's")
        assert bridge.run_in_loop(set_on_the_loop("the loop's")) == "the thread's"
        assert VALUE.get() == "the thread's"

    contextvars.copy_context().run(caller)


def test_run_in_thread_carries_the_context_there_and_nothing_back(bridge: Bridge) -> None:
    async def caller() -> None:
        VALUE.set("the task's")
        assert await bridge.run_in_thread("context", set_on_the_far_side,
                                          "the worker's") == "the task's"
        assert await run_in_new_thread(lambda: set_on_the_far_side("the thread's"),
                                       "context") == "the task's"
        assert VALUE.get() == "the task's"

    bridge.run_in_loop(caller())


class SlowToEnd(threading.Thread):
    """A thread that lingers after its target returns, as one waiting for the GIL does."""

    def run(self) -> None:
        super().run()
        time.sleep(GIVE_UP)


@pytest.mark.parametrize("fails", [False, True], ids=["result", "exception"])
def test_run_in_new_thread_leaves_no_thread_once_awaited(
        fails: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The outcome reaches the loop before the thread has ended: the await must not
    return while the thread lives, or a reload leaves a thread behind."""
    monkeypatch.setattr(bridge_module.threading, "Thread", SlowToEnd)

    def call() -> str:
        if fails:
            raise LookupError("the call failed")
        return "the call's result"

    async def main() -> bool:
        with contextlib.suppress(LookupError):
            await run_in_new_thread(call, "slow to end")
        return any(t.name == "slow to end" for t in threading.enumerate())

    assert asyncio.run(main()) is False


def test_a_janus_queue_carries_the_item_and_no_context() -> None:
    async def main() -> str:
        queue: janus.Queue[str] = janus.Queue(1)
        try:
            def producer() -> None:
                VALUE.set("the producer's")
                queue.sync_q.put(VALUE.get())

            await run_in_new_thread(producer, "producer")
            item = await queue.async_q.get()
            return f"{item}, {VALUE.get()}"
        finally:
            await queue.aclose()

    assert asyncio.run(main()) == "the producer's, unset"


def test_threading_local_stays_in_its_thread(bridge: Bridge) -> None:
    """Set in a session thread, invisible on the loop and in a worker: contextvars cross
    the bridges, thread-locals never do."""
    local = threading.local()

    def read() -> str:
        return str(getattr(local, "session", "unset"))

    async def on_the_loop() -> tuple[str, str]:
        return read(), await bridge.run_in_thread("local", read)

    def session() -> tuple[str, str]:
        local.session = "s1"
        return bridge.run_in_loop(on_the_loop())

    with concurrent.futures.ThreadPoolExecutor(1, "session") as pool:
        assert pool.submit(session).result(UNIT) == ("unset", "unset")


# --- locks the loop takes are never held across a system call -------------------------


class WatchedLock:
    """A threading.Lock that knows whether the calling thread holds it."""

    held: threading.local = threading.local()

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._lock.acquire(blocking, timeout)
        if got:
            WatchedLock.held.count = getattr(WatchedLock.held, "count", 0) + 1
        return got

    def release(self) -> None:
        WatchedLock.held.count -= 1
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    __enter__ = acquire

    def __exit__(self, *exc: object) -> None:
        self.release()


def watching(module: Any) -> SimpleNamespace:
    """`module.threading`, with every Lock it makes a WatchedLock."""
    return SimpleNamespace(**{**vars(module.threading), "Lock": WatchedLock})


@pytest.fixture
def system_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Thread starts and writes to the loop's wake-up socket, each recorded with
    whether the caller held one of the bridge's or worker pool's locks."""
    calls: list[str] = []
    monkeypatch.setattr(bridge_module, "threading", watching(bridge_module))
    monkeypatch.setattr(workers, "threading", watching(workers))

    def record(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            held = getattr(WatchedLock.held, "count", 0)
            calls.append(f"{name} under a lock" if held else name)
            return call(*args, **kwargs)
        return recorded

    monkeypatch.setattr(threading.Thread, "start", record("start", threading.Thread.start))
    monkeypatch.setattr(socket.socket, "send", record("send", socket.socket.send))
    yield calls


def test_no_bridge_lock_is_held_across_a_system_call(system_calls: list[str]) -> None:
    """The loop takes these locks (to submit to a pool, to fail stranded calls); a thread
    holding one across a system call would stall the loop behind that call."""
    bridge = Bridge.start_loop_thread(max_workers=8, worker_idle_timeout=UNIT)
    try:
        release = threading.Event()

        async def burst() -> list[bool]:
            return await asyncio.gather(*(bridge.run_in_thread("burst", release.wait, UNIT)
                                          for _ in range(8)))

        def caller() -> list[bool]:
            return bridge.run_in_loop(burst())

        with concurrent.futures.ThreadPoolExecutor(4) as callers:
            calls = [callers.submit(caller) for _ in range(4)]
            eventually(lambda: len(workers_of("burst")) == 8, "8 workers")
            release.set()
            assert all(all(call.result(UNIT)) for call in calls)
    finally:
        bridge.close()
    assert "start" in system_calls and "send" in system_calls  # both were watched
    assert [call for call in system_calls if call.endswith("under a lock")] == []


# --- the page that states these rules ------------------------------------------------


def test_every_test_the_rules_page_names_exists() -> None:
    page = (CONFIG.parent / "docs" / "mixed-code-rules.md").read_text()
    named = re.findall(r"`(test_\w+\.py)::(test_\w+)`", page)
    assert len(named) >= 15
    missing = [f"{file}::{name}" for file, name in named
               if f"def {name}(" not in (CONFIG.parent / "tests" / file).read_text()]
    assert not missing, f"docs/mixed-code-rules.md names tests that do not exist: {missing}"
