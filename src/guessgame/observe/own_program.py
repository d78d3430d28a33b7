"""Someone else's program, run as `python PROGRAM.py` or `python -m MODULE` would run it,
with the stdlib's bridges announcing at the seam (stdlib_bridges.py).

The program gets its own `__main__`, `sys.argv`, `sys.path[0]`, stdin and stdout, as under
`python -m pdb` or runpy; a `SystemExit` gives its code, and an uncaught exception prints
its traceback and gives 1, as python does. SIGUSR1 prints the wait graph on stderr, as
`guessgame serve` does.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import runpy
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from guessgame import outputs
from guessgame.observe import debugging, stdlib_bridges


class UsageError(ValueError):
    """The program to run is missing or cannot be found."""


@dataclass(frozen=True)
class Program:
    target: str  # a path, or a module name when `module`
    module: bool
    args: tuple[str, ...]

    @property
    def argv(self) -> list[str]:
        """sys.argv as python gives it: the path, or the module's file once found."""
        return [self.target, *self.args]

    def describe(self) -> str:
        return f"-m {self.target}" if self.module else self.target


def parse(argv: Sequence[str]) -> Program:
    """`PROGRAM.py ARGS...` or `-m MODULE ARGS...`, as python takes them."""
    argv = list(argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise UsageError("give a program to run: PROGRAM.py [ARGS...] or -m MODULE [ARGS...]")
    if argv[0] == "-m":
        if len(argv) < 2:
            raise UsageError("-m needs a module name")
        return Program(argv[1], True, tuple(argv[2:]))
    if argv[0].startswith("-m") and len(argv[0]) > 2:
        return Program(argv[0][2:], True, tuple(argv[1:]))
    if not os.path.exists(argv[0]):
        raise UsageError(f"cannot find the program {argv[0]!r}")
    return Program(argv[0], False, tuple(argv[1:]))


def looks_like_program(first: str) -> bool:
    """Whether `guessgame debug FIRST ...` names a program rather than a game command."""
    return first.startswith("-m") or first.endswith(".py") or os.sep in first


def main_file(program: Program) -> str:
    """The file whose first line is the program's first line."""
    if not program.module:
        return program.target
    with as_main(program):
        spec = importlib.util.find_spec(program.target)
        if spec is not None and spec.submodule_search_locations is not None:  # a package
            spec = importlib.util.find_spec(f"{program.target}.__main__")
    if spec is None or spec.origin is None:
        raise UsageError(f"no module named {program.target!r}")
    return spec.origin


def runner(program: Program) -> Callable[[], Any]:
    """A call that runs the program's code, for a debugger's runcall."""
    if program.module:
        return lambda: runpy.run_module(program.target, run_name="__main__", alter_sys=True)
    return lambda: runpy.run_path(program.target, run_name="__main__")


@contextlib.contextmanager
def as_main(program: Program) -> Iterator[None]:
    """sys.argv and sys.path[0] as python sets them for the program, restored after."""
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv[:] = program.argv
    # python's first entry on the path: the script's folder, or for -m the current one.
    sys.path[0] = (os.getcwd() if program.module
                   else os.path.dirname(os.path.abspath(program.target)))
    try:
        yield
    finally:
        sys.argv[:] = saved_argv
        sys.path[:] = saved_path


def exit_status(code: object) -> int:
    """The process status python gives for `SystemExit(code)`."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def execute(program: Program, call: Callable[[Callable[[], Any]], Any] | None = None) -> int:
    """Run the program to its end; its exit status. `call` runs the program's code
    (a debugger's runcall), else it is called directly."""
    with as_main(program):
        try:
            code = runner(program)
            if call is None:
                code()
            else:
                call(code)
        except SystemExit as leaving:
            return exit_status(leaving.code)
        except ImportError as error:
            if program.module and error.name == program.target:
                print(f"guessgame: no module named {program.target!r}", file=sys.stderr)
                return 1
            traceback.print_exc()
            return 1
        except BaseException:  # as python: the traceback, then status 1
            traceback.print_exc()
            return 1
    return 0


@contextlib.contextmanager
def instrumented(debug: bool = False) -> Iterator[None]:
    """The stdlib's bridges announce while inside; SIGUSR1 prints the wait graph.
    `debug`: the program's loops run in asyncio's debug mode."""
    stdlib_bridges.install(debug_loops=debug)
    before = signal.signal(signal.SIGUSR1, _print_waits)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, before)
        stdlib_bridges.uninstall()


class _Asked:
    printing = False
    again = False


def _print_waits(signum: int, frame: FrameType | None) -> None:
    """SIGUSR1: who waits on whom, on stderr, as `guessgame serve` prints it. A signal
    that arrives while a graph is being written (the handler runs again, in the same
    thread, inside the write) asks for one more graph after it, not a write inside it."""
    if _Asked.printing:
        _Asked.again = True
        return
    _Asked.printing = True
    try:
        while True:
            _Asked.again = False
            try:
                outputs.write_stderr(debugging.waits().text)
            except Exception:  # a diagnostic must never stop the program it diagnoses
                traceback.print_exc()
            if not _Asked.again:
                return
    finally:
        _Asked.printing = False


def run(program: Program, debug: bool = False) -> int:
    """`guessgame run PROGRAM`: the program with its bridges announced; its status.
    `debug` (`--debug`): its loops in asyncio's debug mode, which logs a slow callback."""
    # What guessgame imported lives as long as the process: out of the collector's way,
    # so that its full collections scan no more than the program's own.
    gc.freeze()
    with instrumented(debug):
        return execute(program)
