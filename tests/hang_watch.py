"""A test that hangs fails within its timeout, shows what every thread and task was
doing, and never stalls the run.

pytest-timeout offers two methods, and neither is enough here. `signal` raises in the
main thread, but a test that hangs usually hangs again in its teardown (joining the
loop thread that spins, say), and then the run sits there for good. `thread` dumps
the threads and ends the whole run with os._exit(), so one hang hides every later
result, and neither shows the asyncio tasks, which is where a mixed program hangs.

This watch does both, in order: at the timeout it writes every thread's stack and
every running loop's tasks into the failure, and interrupts the main thread so that
the test fails and the run goes on. If the test is still not done `GRACE` seconds
later (its teardown hangs too), it prints the same and ends the run.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import threading
import traceback
from types import FrameType
from typing import Any

import pytest

GRACE = float(os.environ.get("HANG_WATCH_GRACE", "5"))
"""Seconds a failed test gets to tear down before the run is ended."""


def snapshot() -> str:
    """Every thread's stack, then the tasks of every event loop that is running."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    me = threading.get_ident()
    parts = []
    for ident, frame in sys._current_frames().items():
        if ident == me:
            continue
        parts.append(f"--- thread {names.get(ident, '?')!r} ({ident})\n")
        parts.append("".join(traceback.format_stack(frame)))
    for loop in running_loops():
        parts.append(f"--- tasks of {loop!r}\n")
        for task in _tasks_of(loop):
            parts.append(f"  {task!r}\n")
            for frame in task.get_stack():
                code = frame.f_code
                parts.append(f"    {code.co_filename}:{frame.f_lineno} {code.co_name}\n")
    return "".join(parts)


def running_loops() -> list[asyncio.AbstractEventLoop]:
    # Found through the collector: the watch must see loops the code under test made
    # without telling anyone, and this runs only once something has already hung.
    return [obj for obj in gc.get_objects()
            if isinstance(obj, asyncio.AbstractEventLoop) and obj.is_running()]


def _tasks_of(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
    # all_tasks() iterates a weak set the loop's thread may change meanwhile.
    for _ in range(10):
        try:
            return sorted(asyncio.all_tasks(loop), key=lambda task: task.get_name())
        except RuntimeError:
            continue
    return []


class HangWatch:
    def __init__(self, item: pytest.Item, seconds: float) -> None:
        self.item = item
        self.seconds = seconds
        self.done = threading.Event()
        self.report = ""
        self._previous: Any = None
        self._thread = threading.Thread(target=self._watch, name=f"hang watch {item.nodeid}",
                                        daemon=True)

    def start(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGALRM, self._fail)
        self._thread.start()

    def cancel(self) -> None:
        self.done.set()
        self._thread.join()
        if self._previous is not None:
            signal.signal(signal.SIGALRM, self._previous)

    def _fail(self, signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True
        pytest.fail(f"Timeout: still running after {self.seconds:g} s. What every thread "
                    f"and task was doing:\n{self.report}", pytrace=True)

    def _watch(self) -> None:
        if self.done.wait(self.seconds):
            return
        self.report = snapshot()
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGALRM)
        if self.done.wait(GRACE):
            return
        self._end_run()

    def _end_run(self) -> None:
        terminal = self.item.config.get_terminal_writer()
        capture = self.item.config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.suspend_global_capture(self.item)
        terminal.sep("+", title=f"Timeout in {self.item.nodeid}")
        terminal.write(f"Still running {GRACE:g} s after failing at its "
                       f"{self.seconds:g} s timeout; ending the run.\n")
        terminal.write(snapshot())
        terminal.sep("+", title="Timeout")
        terminal.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool:
    watch = HangWatch(item, settings.timeout)
    item.hang_watch = watch  # type: ignore[attr-defined]
    watch.start()
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> bool:
    watch = getattr(item, "hang_watch", None)
    if watch is not None:
        watch.cancel()
    return True
