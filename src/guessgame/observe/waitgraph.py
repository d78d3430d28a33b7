"""The wait graph: the recorded crossings joined to every thread's frame and every
task's await chain, with cycles named as deadlocks, as one text.

`snapshot()` takes the graph, `render()` writes it; guessgame.observe.debugging.waits() does
both. `StallWatch` (only under --debug) prints it when a crossing waits too long.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any, Final

from guessgame.crossing import Party
from guessgame.observe import waits
from guessgame.observe.waits import Wait

LOOP_SNAPSHOT_TIMEOUT: Final = 0.2
"""Seconds to wait for the loop to list its own tasks before reading them from outside."""


DEADLOCK_MIN_AGE: Final = 0.2
"""Seconds every wait in a cycle must have lasted before it is called a deadlock. A
wait is recorded just before the call that may block, so a queue's two sides can look
like a cycle for the microseconds between a put and a get; a deadlock lasts."""


@dataclass
class TaskView:
    name: str
    where: str
    running: bool
    task: asyncio.Task[Any]


@dataclass
class ThreadView:
    ident: int
    name: str
    where: str
    tasks: list[TaskView] = field(default_factory=list)
    tasks_how: str = ""  # how the task list was read, for a thread that runs a loop


@dataclass
class Edge:
    waiter: Party
    bridge: str
    target: Party | None
    seconds: float
    crossing: Wait


@dataclass
class Graph:
    threads: list[ThreadView]
    edges: list[Edge]
    cycles: list[list[Edge]]
    names: dict[int, str]  # thread ident -> name, as the snapshot saw them
    holds: dict[Any, list[str]]  # party key -> names of TrackedLocks it holds
    unnamed: int = 0  # threads not started through threading, left out

    def describe(self, party: Party | None) -> str:
        if party is None:
            return "a worker not started yet"
        kind, what = party
        if kind == "thread":
            return f"{self.names.get(what, f'thread {what}')} (thread)"
        if kind == "task":
            return f"task {what.get_name()}"
        if kind == "lock":
            return self.describe(what.holder) if what.holder else "nobody (just released)"
        return str(what)

    def line(self, edge: Edge) -> str:
        target = edge.target
        if target is not None and target[0] == "lock":
            return (f"{self.describe(edge.waiter)} waits for {edge.bridge} held by "
                    f"{self.describe(target)} ({edge.seconds:.1f} s)")
        return (f"{self.describe(edge.waiter)} waits in {edge.bridge} for "
                f"{self.describe(target)} ({edge.seconds:.1f} s)")


def _key(party: Party | None) -> Any:
    if party is None:
        return None
    kind, what = party
    if kind == "lock":
        return _key(what.holder)
    if kind == "task":
        return ("task", id(what))
    return (kind, what)


_OWN_FILES: Final = (__file__, os.path.join(os.path.dirname(__file__), "debugging.py"),
                     os.path.join(os.path.dirname(__file__), "own_program.py"))
_NOT_PROGRAM: Final = (waits.__file__, os.path.join(os.path.dirname(__file__),
                                                    "stdlib_bridges.py"))
"""Files of ours a wait passes through, as library code does: the lock, the bridges'
announcing replacements."""
_STDLIB: Final = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])
_HERE: Final = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def short_path(filename: str) -> str:
    if filename.startswith(_HERE + os.sep):
        return filename[len(_HERE) + 1:]
    for root in _STDLIB:
        if filename.startswith(root + os.sep):
            return filename[len(root) + 1:]
    return filename


def _is_ours(filename: str) -> bool:
    """Program code, as opposed to the library it waits in (this module's lock too)."""
    return (not any(filename.startswith(root) for root in _STDLIB)
            and "site-packages" not in filename and filename not in _NOT_PROGRAM)


def where(frames: list[FrameType]) -> str:
    """`file:line function` of the innermost frame (frames run outermost first); if that
    is library code, also the innermost frame of the program's own code that led there."""
    if not frames:
        return "(no frame)"
    inner = frames[-1]
    text = f"{short_path(inner.f_code.co_filename)}:{inner.f_lineno} {inner.f_code.co_name}"
    if _is_ours(inner.f_code.co_filename):
        return text
    for frame in reversed(frames):
        if _is_ours(frame.f_code.co_filename):
            return (f"{short_path(frame.f_code.co_filename)}:{frame.f_lineno} "
                    f"{frame.f_code.co_name}, in {text}")
    return text


def thread_frames(frame: FrameType | None) -> list[FrameType]:
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames[::-1]


def _task_views(loop: asyncio.AbstractEventLoop) -> list[TaskView]:
    current = asyncio.current_task(loop) if loop.is_running() else None
    views = []
    for task in asyncio.all_tasks(loop):
        stack = await_chain(task)
        views.append(TaskView(task.get_name(), where(stack) if stack else "(starting)",
                              task is current, task))
    return sorted(views, key=lambda view: view.name)


def await_chain(task: asyncio.Task[Any]) -> list[FrameType]:
    """The task's frames, outermost first. Task.get_stack() gives only the outermost
    coroutine of a suspended task; follow what each coroutine awaits instead."""
    frames: list[FrameType] = []
    awaited: Any = task.get_coro()
    while awaited is not None and len(frames) < 100:
        frame = (getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
                 or getattr(awaited, "ag_frame", None))
        if frame is None:  # a future, or a coroutine that has finished
            break
        frames.append(frame)
        awaited = (getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
                   or getattr(awaited, "ag_await", None))
    return frames


def _tasks_of(loop: asyncio.AbstractEventLoop, ident: int) -> tuple[list[TaskView], str]:
    """The loop's tasks. all_tasks() and get_stack() are not thread-safe, so from another
    thread ask the loop to list them; if it does not answer in LOOP_SNAPSHOT_TIMEOUT
    (stuck, or paused in a debugger), read them from outside, best effort."""
    if ident == threading.get_ident() or not loop.is_running():
        return _task_views(loop), "read on the loop"
    answer: concurrent.futures.Future[list[TaskView]] = concurrent.futures.Future()

    def list_them() -> None:
        try:
            answer.set_result(_task_views(loop))
        except BaseException as error:  # handed to the reader below
            answer.set_exception(error)

    try:
        loop.call_soon_threadsafe(list_them)
        return answer.result(LOOP_SNAPSHOT_TIMEOUT), "listed by the loop"
    except (RuntimeError, concurrent.futures.TimeoutError):
        pass
    for _ in range(3):  # the task set may change under us
        try:
            return (_task_views(loop),
                    f"read from outside: the loop did not answer in {LOOP_SNAPSHOT_TIMEOUT} s")
        except RuntimeError:
            continue
    return [], "unreadable: the loop's task set kept changing"


def snapshot() -> Graph:
    now = time.monotonic()
    frames = sys._current_frames()
    watched = waits.loops()
    names = {thread.ident: thread.name for thread in threading.enumerate()
             if thread.ident is not None}
    threads = []
    unnamed = 0
    for ident, frame in frames.items():
        if ident not in names:  # started without threading: a debugger's own, say
            unnamed += 1
            continue
        if ident == threading.get_ident():
            frame = sys._getframe(1)  # not the snapshot's own frames, nor waits()'s
            while frame.f_back is not None and frame.f_code.co_filename in _OWN_FILES:
                frame = frame.f_back
        view = ThreadView(ident, names.get(ident, f"thread {ident}"),
                          where(thread_frames(frame)))
        loop = watched.get(ident)
        if loop is not None and not loop.is_closed():
            view.tasks, view.tasks_how = _tasks_of(loop, ident)
        threads.append(view)
    threads.sort(key=lambda view: (view.name != "MainThread", view.name))
    edges = [Edge(c.waiter, c.bridge, c.target, now - c.since, c)
             for c in waits.in_flight()]
    edges.sort(key=lambda edge: -edge.seconds)
    holds: dict[Any, list[str]] = {}
    for lock in waits.tracked_locks():
        if lock.holder is not None:
            holds.setdefault(_key(lock.holder), []).append(lock.name)
    return Graph(threads, edges, find_cycles(edges), names, holds, unnamed)


def find_cycles(edges: list[Edge]) -> list[list[Edge]]:
    """Each party waits for at most one other, so follow the edges from every party.
    Only cycles whose every wait has lasted DEADLOCK_MIN_AGE count."""
    out: dict[Any, Edge] = {}
    for edge in edges:
        if not edge.crossing.idle or edge.target is not None:
            out.setdefault(_key(edge.waiter), edge)
    cycles: list[list[Edge]] = []
    done: set[Any] = set()
    for start in out:
        path: list[Any] = []
        node = start
        while node in out and node not in done and node not in path:
            path.append(node)
            node = _key(out[node].target)
        if node in path:
            cycle = [out[party] for party in path[path.index(node):]]
            if min(edge.seconds for edge in cycle) >= DEADLOCK_MIN_AGE:
                cycles.append(cycle)
        done.update(path)
    return cycles


# --- the text ----------------------------------------------------------------------------


def render(graph: Graph) -> str:
    lines = [f"wait graph of process {os.getpid()}: {_many(len(graph.threads), 'thread')}, "
             f"{_many(sum(len(t.tasks) for t in graph.threads), 'task')}, "
             f"{_many(len(graph.edges), 'wait')} across bridges"]
    waits_of: dict[Any, list[Edge]] = {}
    for edge in graph.edges:
        waits_of.setdefault(_key(edge.waiter), []).append(edge)

    def notes(party: Party, indent: str) -> None:
        for lock in graph.holds.get(_key(party), []):
            lines.append(f"{indent}holds lock {lock!r}")
        for edge in waits_of.get(_key(party), []):
            lines.append(f"{indent}-> {graph.line(edge)}")

    for thread in graph.threads:
        lines.append(f"thread {thread.name}: {thread.where}")
        notes(("thread", thread.ident), "    ")
        if thread.tasks_how:
            lines.append(f"  runs an event loop; {_many(len(thread.tasks), 'task')} "
                         f"({thread.tasks_how}):")
        for task in thread.tasks:
            running = " (running)" if task.running else ""
            lines.append(f"  task {task.name}{running}: {task.where}")
            notes(("task", task.task), "      ")
    if graph.unnamed:
        lines.append(f"({_many(graph.unnamed, 'thread')} not started through threading, "
                     "a debugger's own say, left out)")
    lines.append("")
    if graph.edges:
        lines.append("waits across bridges, longest first:")
        lines.extend(f"  {graph.line(edge)}" for edge in graph.edges)
    else:
        lines.append("no waits across bridges")
    for cycle in graph.cycles:
        lines.extend(deadlock_lines(graph, cycle))
    if not graph.cycles:
        lines.append("no deadlock found among the waits a bridge can see")
    return "\n".join(lines) + "\n"


def _many(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def deadlock_lines(graph: Graph, cycle: list[Edge]) -> list[str]:
    lines = [f"DEADLOCK: {len(cycle)} parties wait for each other in a cycle; none can move:"]
    for edge in cycle:
        held = graph.holds.get(_key(edge.waiter), [])
        holding = f" holds lock {', '.join(repr(h) for h in held)} and" if held else ""
        text = graph.line(edge)
        who = graph.describe(edge.waiter)
        lines.append(f"  {who}{holding}{text[len(who):]}")
    return lines


class StallWatch:
    """Under --debug: a thread that prints the wait graph, once, when a crossing has
    waited longer than `threshold` seconds, and names a deadlock when there is one."""

    def __init__(self, threshold: float, write: Callable[[str], None]) -> None:
        self.threshold = threshold
        self._write = write
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall-watch")

    def _watch(self) -> None:
        tick = min(0.25, self.threshold / 4)
        while not self._stop.wait(tick):
            found = waits.stalled(self.threshold)
            if found:
                graph = snapshot()
                for edge in graph.edges:  # shown now: a later stall of one is no news
                    edge.crossing.reported = True
                head = (f"guessgame: {len(found)} crossing(s) waited longer than "
                        f"{self.threshold:g} s (stall_report); who waits on whom:\n")
                self._write(head + render(graph))

    def __enter__(self) -> StallWatch:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

