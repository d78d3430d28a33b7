"""`guessgame debug COMMAND ...`: pdb, one per thread, with steps that follow the work.

bdb keeps its stepping state (stopframe, returnframe, stoplineno) on the instance and
its breakpoints on the class (`bdb.Breakpoint`). One `ThreadPdb` per thread, sharing the
instance's `breaks` table, therefore gives every thread the same breakpoints and its own
`step` and `next`: a step in one thread never stops in another, and on a loop thread it
stops only in the task it was taken in. `Console` lets one thread at a time hold the
prompt, in the order they stopped. `StepAcross` (stepping.py) carries a step across a
bridge, through `PdbBackend` below.

Two private names of the standard library's debugger are used, for want of a public
way; the debugger tests (tests/test_debugger.py, tests/test_own_program.py) fail if a
release changes either:
- `bdb.Bdb._set_stopinfo`, which every bdb step command calls to set the stepping state,
  is how a step is carried across a bridge (`stop_info`);
- `pdb.Pdb._wait_for_mainpyfile`, which `pdb.Pdb._runscript` sets, makes a program of
  one's own stop first at its own first line, as under `python -m pdb`.
The private attributes of asyncio and janus are named in crossing.py.
"""

from __future__ import annotations

import asyncio
import bdb
import collections
import contextlib
import inspect
import os
import pdb
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any

from guessgame import crossing, observe
from guessgame.observe import debugging, own_program, stepping, trace, waitgraph


def _nowhere() -> FrameType:
    return sys._getframe()


_NOWHERE = _nowhere()
"""A frame that never runs again: bdb's stopframe for "stop only at breakpoints"."""


class Console:
    """One prompt at a time, first come first served; but a step across a bridge is
    followed before the others.

    A thread that leaves the prompt with a step lets the threads waiting for it go first,
    unless its step crosses a bridge: then the far side's stop, the steps within the work
    there, and the sender's stop once the crossing is over (`first`) come before them.
    Until a stepping thread shows which (it stops, or announces a crossing: `hold()`),
    the others wait, for STEP_PENDING seconds at most; a crossing holds them for
    STEP_HOLD seconds at most, in case the work runs on without stopping.
    """

    STEP_PENDING = 0.2
    STEP_HOLD = 2.0

    def __init__(self) -> None:
        self._turns: collections.deque[int] = collections.deque()
        self._changed = threading.Condition()
        self._at_prompt: int | None = None
        self._stepper: int | None = None  # the thread that last left the prompt stepping
        self._held_until = 0.0

    @contextlib.contextmanager
    def turn(self, first: bool, stepping: Callable[[], bool]) -> Iterator[None]:
        """Hold the prompt inside; `first`: this stop is where a step across went.
        `stepping` says, as the prompt is left, whether the user stepped."""
        me = threading.get_ident()
        with self._changed:
            if not first and me == self._stepper:  # a step that crossed nothing
                self._stepper, self._held_until = None, 0.0
                self._changed.notify_all()
            if first and self._at_prompt is None:
                self._turns.appendleft(me)
            elif first:
                self._turns.insert(1, me)
            else:
                self._turns.append(me)
            while not (self._turns[0] == me
                       and (first or time.monotonic() >= self._held_until)):
                self._changed.wait(max(self._held_until - time.monotonic(), 0.01)
                                   if self._turns[0] == me else None)
            self._at_prompt = me
            self._stepper, self._held_until = None, 0.0
        try:
            yield
        finally:
            with self._changed:
                self._turns.remove(me)
                self._at_prompt = None
                if stepping():
                    self._stepper = me
                    self._held_until = time.monotonic() + self.STEP_PENDING
                self._changed.notify_all()

    def hold(self) -> None:
        """The stepping thread crosses a bridge, or ends the work it stepped into: the
        next prompt is where the step goes on."""
        with self._changed:
            if self._stepper == threading.get_ident():
                self._held_until = time.monotonic() + self.STEP_HOLD

    def queue(self) -> list[int]:
        with self._changed:
            return list(self._turns)


class Scope:
    """A call stepped into: stops only inside the work `arrival` runs."""

    def __init__(self, follow: stepping.Follow, arrival: FrameType,
                 saved: tuple[Any, Any, int]) -> None:
        self.follow, self.arrival, self.saved = follow, arrival, saved

    def contains(self, frame: FrameType | None) -> bool:
        while frame is not None:
            if frame is self.arrival:
                return True
            frame = frame.f_back
        return False


def _current_task() -> asyncio.Task[Any] | None:
    loop = crossing.running_loop()
    return asyncio.current_task(loop) if loop is not None else None


class ThreadPdb(pdb.Pdb):
    follows_threads = True  # debugging.follow_pdb_into_threads() leaves us alone

    def __init__(self, debugger: Debugger) -> None:
        main = threading.current_thread() is threading.main_thread()
        super().__init__(skip=stepping.PLUMBING, nosigint=not main, readrc=main)
        self.breaks = debugger.breaks
        self.debugger = debugger
        self.botframe = None
        self.stop_info(_NOWHERE, None, -1)
        self.step_task: asyncio.Task[Any] | None = None
        self.scope: Scope | None = None  # a call being stepped into
        self.following: stepping.Follow | None = None  # an item taken, at its stop
        self.landing = False  # a call stepped into, not yet on its first line
        self.announce: stepping.Follow | None = None  # said at the landing stop
        self.resumed = "step"
        self.resuming: FrameType | None = None  # a sender's coroutine, released
        self.released = False  # a sender going on after a crossing stepped into

    def stop_info(self, stopframe: Any, returnframe: Any = None, lineno: int = 0) -> None:
        """bdb's stepping state: stop at `stopframe`'s lines from `lineno` (-1: never),
        and anywhere when it is None."""
        bdb.Bdb._set_stopinfo(self, stopframe, returnframe, lineno)  # type: ignore[attr-defined]

    # --- where a step may stop ----------------------------------------------------

    def is_skipped_module(self, module_name: str) -> bool:
        return stepping.is_plumbing(module_name)

    def stop_here(self, frame: FrameType) -> bool:
        if not super().stop_here(frame):
            return False
        if self.scope is not None and not self.scope.contains(frame):
            return False
        return not (self.stopframe is None and self.step_task is not None
                    and _current_task() is not self.step_task)

    def user_call(self, frame: FrameType, argument_list: Any) -> None:
        # A step across lands on the first line, not on the def; a sender's coroutine
        # going on after the crossing stops on its next line, not where it resumes.
        if frame is self.resuming:
            self.resuming = None
        elif not self.landing:
            super().user_call(frame, argument_list)

    def user_line(self, frame: FrameType) -> None:
        self.landing = False
        super().user_line(frame)

    def user_exception(self, frame: FrameType, exc_info: Any) -> None:
        # bdb stops at a coroutine's StopIteration after `return` wherever it surfaces,
        # without asking stop_here(): not in the plumbing that awaited it.
        if not stepping.is_plumbing(frame.f_globals.get("__name__")):
            super().user_exception(frame, exc_info)

    def set_continue(self) -> None:
        # Never drop the trace function: another thread may set a breakpoint for this
        # one, or step across into it, later.
        self.resumed = "continue"
        self.stop_info(_NOWHERE, None, -1)

    # --- the prompt ---------------------------------------------------------------

    def interaction(self, frame: FrameType | None, tb: Any) -> None:
        first = (self.announce is not None or self.following is not None or self.released
                 or self.scope is not None)
        self.released = False
        with self.debugger.console.turn(first, lambda: self.resumed == "step"):
            self.step_task = _current_task()
            self.resumed = "step"
            where = trace.here()
            self.message(f"[thread {where.thread!r}, task {where.task!r}, "
                         f"session {where.session!r}]")
            if self.following is not None:
                self.message(f"[took {self.following.title()}]")
            elif self.announce is not None:
                self.message(f"[stepped across {self.announce.title()}]")
                self.announce = None
            super().interaction(frame, tb)

    def do_where(self, arg: str) -> bool | None:
        super().do_where(arg)
        follow = self.following or (self.scope.follow if self.scope else None)
        if follow is not None:
            self.message(f"  --- {follow.title()} ---")
            for line in follow.stack:
                self.message(line)
        return None

    do_w = do_bt = do_where

    def do_threads(self, arg: str) -> None:
        """threads: every thread, where it is, and who has or waits for the prompt."""
        turns = self.debugger.console.queue()
        for view in waitgraph.snapshot().threads:
            state = ("" if view.ident not in turns else
                     "  [at the prompt]" if turns[0] == view.ident else
                     "  [waiting for the prompt]")
            self.message(f"thread {view.name}: {view.where}{state}")

    def do_tasks(self, arg: str) -> None:
        """tasks: every task of the event loop, and where it is."""
        for view in waitgraph.snapshot().threads:
            for task in view.tasks:
                running = " (running)" if task.running else ""
                self.message(f"task {task.name}{running} [thread {view.name}]: {task.where}")

    def do_waits(self, arg: str) -> None:
        """waits: who waits on whom across the bridges, and any deadlock."""
        self.message(str(debugging.waits()).rstrip("\n"))

    def do_quit(self, arg: str) -> bool | None:
        self.message("guessgame debug: quit")
        sys.stdout.flush()
        os._exit(1)

    do_q = do_exit = do_quit
    do_EOF = do_quit

    # --- tracing this thread ------------------------------------------------------

    def trace_here(self, frame: FrameType) -> None:
        """Make sure this thread is traced, by this instance, from `frame` outwards."""
        if self.botframe is None:
            outer = frame
            while outer.f_back is not None:
                outer = outer.f_back
            self.botframe = outer
        while frame is not None and frame is not self.botframe:
            frame.f_trace = self.trace_dispatch
            frame = frame.f_back  # type: ignore[assignment]
        sys.settrace(self.trace_dispatch)


class Debugger:
    """The ThreadPdb of each thread, made as the thread first runs traced code."""

    def __init__(self) -> None:
        self.breaks: dict[str, list[int]] = {}
        self.console = Console()
        self._local = threading.local()

    def current(self) -> ThreadPdb | None:
        found: ThreadPdb | None = getattr(self._local, "pdb", None)
        return found

    def for_this_thread(self) -> ThreadPdb:
        found = self.current()
        if found is None:
            found = self._local.pdb = ThreadPdb(self)
        return found

    def trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        """Every new thread's first trace function: hand the thread to its own pdb."""
        own = self.for_this_thread()
        sys.settrace(own.trace_dispatch)
        return own.trace_dispatch(frame, event, arg)


class PdbBackend(stepping.Backend):
    def __init__(self, debugger: Debugger) -> None:
        self.debugger = debugger

    def stepping_into(self) -> bool:
        own = self.debugger.current()
        return own is not None and own.stopframe is None and not own.quitting

    def hold(self, follow: stepping.Follow) -> None:
        self.debugger.console.hold()
        own = self.debugger.for_this_thread()
        follow.handle = own
        follow.origin.f_trace = own.trace_dispatch
        own.stop_info(_NOWHERE, None, -1)  # not the origin: see bdb's dispatch_exception

    def step_into_call(self, follow: stepping.Follow, arrival: FrameType) -> None:
        own = self.debugger.for_this_thread()
        own.trace_here(arrival)
        saved = (own.stopframe, own.returnframe, own.stoplineno)
        own.scope = Scope(follow, arrival, saved)
        own.step_task = _current_task()
        own.landing = True
        own.announce = follow
        own.resumed = "step"
        own.stop_info(None, None)

    def stop_at_take(self, follow: stepping.Follow, frame: FrameType) -> str:
        own = self.debugger.for_this_thread()
        own.trace_here(frame)
        own.following = follow
        sys.settrace(None)  # pdb's own code at this prompt is not to be traced
        try:
            own.interaction(frame, None)
        finally:
            own.following = None
            sys.settrace(own.trace_dispatch)
        resumed = own.resumed
        own.set_continue()
        return resumed

    def end_call(self, follow: stepping.Follow) -> None:
        own = self.debugger.current()
        if own is None or own.scope is None or own.scope.follow is not follow:
            return
        follow.resume = own.resumed
        self.debugger.console.hold()
        stopframe, returnframe, stoplineno = own.scope.saved
        own.scope = None
        own.landing = False
        own.announce = None
        own.step_task = None
        own.stop_info(stopframe, returnframe, stoplineno)

    def release_from_afar(self, follow: stepping.Follow) -> None:
        """The loop went on meanwhile, with no stop: it goes on so (see stepping.py)."""

    def release(self, follow: stepping.Follow) -> None:
        own = follow.handle
        if not isinstance(own, ThreadPdb):
            return
        own.released = follow.resume != "continue"
        if follow.resume == "continue":
            own.set_continue()
        elif follow.origin.f_code.co_flags & inspect.CO_COROUTINE:
            # bdb ignores a coroutine's return under `next` (it may be a suspension):
            # step, in the sender's task, to its next line or its caller's.
            own.step_task = follow.task
            own.resuming = follow.origin
            own.stop_info(None, None)
        else:
            own.stop_info(follow.origin, None)  # as `next` from the crossing line


def run(argv: Sequence[str]) -> int:
    """Run `guessgame ARGV --debug` under the thread-aware pdb, stopping first at the
    command's first line, as `python -m pdb` does."""
    from guessgame import cli  # the command line runs under the debugger, so late

    return _debugged(lambda main: main.runcall(cli.main, [*argv, "--debug"]) or 0)


def run_program(program: own_program.Program) -> int:
    """Run a program of one's own under the thread-aware pdb, with the stdlib's bridges
    announced at the seam, stopping first at the program's first line, as `python -m pdb`
    does."""

    def debug(main: ThreadPdb) -> int:
        main.mainpyfile = main.canonic(own_program.main_file(program))
        main._wait_for_mainpyfile = True  # pdb's own: no stop before the program's first line
        with own_program.instrumented():
            return own_program.execute(program, main.runcall)

    return _debugged(debug)


def _debugged(body: Callable[[ThreadPdb], int]) -> int:
    debugger = Debugger()
    observe.attach_defaults()  # before the step-across: it reads the names they set
    step_across = stepping.StepAcross(PdbBackend(debugger))
    crossing.attach(step_across)
    settrace_all_threads = getattr(threading, "settrace_all_threads", threading.settrace)
    settrace_all_threads(debugger.trace)
    main = debugger.for_this_thread()
    status = 1
    try:
        status = body(main)
    except bdb.BdbQuit:
        pass
    finally:
        threading.settrace(None)
        sys.settrace(None)
        crossing.detach(step_across)
    print(f"guessgame debug: the program exited with status {status}")
    return status
