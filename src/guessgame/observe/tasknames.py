"""Every task named after its work, so that a debugger and the trace never show `Task-N`.

`TASK_NAMES` observes the seam (guessgame.crossing). On each loop that joins the process
it installs a task factory that names a task created without a name after its
coroutine; a task that runs a call from a thread (the seam's `arrive` around the
coroutine) is named after the call and the waiting thread:
`System._async_session from session 127.0.0.1:50312`. The name is given as the task is
made, so taking a call runs no hook of ours.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from typing import Any, Final

from guessgame import crossing


class TaskNames(crossing.Observer):
    items = False

    def loop_started(self, loop: asyncio.AbstractEventLoop, own: bool) -> None:
        loop.set_task_factory(_named_task)


TASK_NAMES = TaskNames()


class _Task(asyncio.Task[Any]):
    """A task whose name survives 3.13.0's create_task(), which calls set_name(name)
    after a task factory even when no name was given, renaming every task `None`."""

    def set_name(self, value: object) -> None:
        if value is not None:
            super().set_name(value)


# Elsewhere asyncio's own Task, which keeps the C fast paths a subclass loses.
_TASK: Final = _Task if sys.version_info[:3] == (3, 13, 0) else asyncio.Task

_ARRIVE: Final = crossing.arrive.__code__


def _named_task(loop: asyncio.AbstractEventLoop, coro: Any, *, name: str | None = None,
                context: contextvars.Context | None = None, **options: Any) -> asyncio.Task[Any]:
    """A task created without a name is named after its coroutine, or, when it runs a
    call from a thread (`crossing.arrive`), after the call and the thread. The stdlib's
    bridges name their own wrapper so (stdlib_bridges.py). An explicit
    create_task(name=...) wins: up to 3.13.0 asyncio renames the task after the factory
    returns it, and later versions pass the name (and any other option) here."""
    if name is None:
        if getattr(coro, "cr_code", None) is _ARRIVE:
            seen = coro.cr_frame.f_locals["crossing"]
            name = f"{seen.what} from {seen.sender_name}"
        else:
            name = getattr(coro, "__qualname__", None)
    return _TASK(coro, loop=loop, name=name, context=context, **options)
