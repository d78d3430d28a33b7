"""Every task named after its work, so that a debugger and the trace never show `Task-N`.

`TASK_NAMES` observes the seam (guessgame.crossing). On each loop that joins the process
it installs a task factory that names a task created without a name after its
coroutine; a task that `run_in_loop` started is renamed, as it takes the call, after
the coroutine and the waiting thread: `System._async_session from session 127.0.0.1:50312`.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from guessgame import crossing


class TaskNames(crossing.Observer):
    items = False

    def taken(self, seen: crossing.Crossing) -> None:
        if seen.bridge == "run_coroutine_threadsafe":
            task = asyncio.current_task()
            if task is not None:
                task.set_name(f"{seen.what} from {seen.sender_name}")

    def loop_started(self, loop: asyncio.AbstractEventLoop, own: bool) -> None:
        loop.set_task_factory(_named_task)


TASK_NAMES = TaskNames()


class _Task(asyncio.Task[Any]):
    """A task whose name survives 3.13.0's create_task(), which calls set_name(name)
    after a task factory even when no name was given, renaming every task `None`."""

    def set_name(self, value: object) -> None:
        if value is not None:
            super().set_name(value)


def _named_task(loop: asyncio.AbstractEventLoop, coro: Any, *, name: str | None = None,
                context: contextvars.Context | None = None, **options: Any) -> asyncio.Task[Any]:
    """A task created without a name is named after its coroutine. An explicit
    create_task(name=...) wins: up to 3.13.0 asyncio renames the task after the factory
    returns it, and later versions pass the name (and any other option) here."""
    if name is None:
        name = getattr(coro, "__qualname__", None)
        if name == crossing.arrive.__qualname__:  # run_in_loop's, renamed as it starts
            name = getattr(coro.cr_frame.f_locals.get("coro"), "__qualname__", name)
    return _Task(coro, loop=loop, name=name, context=context, **options)
