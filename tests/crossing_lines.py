"""The crossing lines of docs/debugging.md's "Stepping across a bridge" table, for the
tests that step across them: in pdb (test_debugger.py) and in debugpy (test_dap.py)."""

from __future__ import annotations

import ast
import inspect
import os
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from guessgame import adapters, compose, reports, results
from guessgame.live import recording

PEER = r"127\.0\.0\.1:\d+"
SESSION = f"session {PEER}"
SESSION_OR_MAIN = f"{SESSION}|MainThread"

PLUMBING_FILES = re.compile(r"/(bridge|workers|crossing)\.py$|/observe/|/asyncio/|/concurrent/"
                            r"|/threading\.py$|/janus/|/selectors\.py$|/queue\.py$")
"""Where a step must never stop."""


def line_of(function: Callable[..., Any], text: str) -> int:
    """The line of `function` whose code contains `text`."""
    source, first = inspect.getsourcelines(function)
    return first + next(i for i, code in enumerate(source) if text in code)


def statement_lines(function: Callable[..., Any], line: int) -> range:
    """The lines of the statement that starts at `line` in `function`."""
    source, first = inspect.getsourcelines(function)
    for node in ast.walk(ast.parse(textwrap.dedent("".join(source)))):
        if isinstance(node, ast.stmt) and node.lineno + first - 1 == line:
            return range(line, (node.end_lineno or node.lineno) + first)
    return range(line, line + 1)


@dataclass(frozen=True)
class Across:
    sender: Callable[..., Any]  # the function with the crossing line
    text: str  # the crossing line's code
    taker: Callable[..., Any]  # the function a Step Into lands in
    thread: str  # regex: the thread it lands in
    task: str  # regex: the task it lands in, "-" outside one
    call: bool  # a call lands on its first line and ends; an item stops where it is taken
    back: bool = True  # False: a loop that sent an item is not held, so it has gone on

    @property
    def path(self) -> str:
        return os.path.realpath(inspect.getsourcefile(self.sender) or "")

    @property
    def line(self) -> int:
        return line_of(self.sender, self.text)


RUN_SESSION = Across(compose.System.serve_in_thread, "self.bridge.run_in_loop(self._async_",
                     compose.System._async_session, "event-loop",
                     f"System._async_session from {SESSION}", True)
OPEN = Across(compose.System._blocking_session, "self.bridge.run_in_loop(",
              adapters.BlockingFace.open, "event-loop", f"BlockingFace.open from {SESSION}", True)
CONNECT = Across(compose.System._blocking_play, "self.bridge.run_in_loop(",
                 adapters.BlockingFace.connect, "event-loop",
                 "BlockingFace.connect from MainThread", True)
SEND = Across(adapters.BlockingFace.send, "self._outbox_sync.put(line)",
              adapters.BlockingFace._write, "event-loop", f"writer {PEER}", False)
READ = Across(adapters.BlockingFace._read, "await self._inbox_async.put(tuple(batch))",
              adapters.BlockingFace.receive, SESSION_OR_MAIN, "-", False, back=False)
REPORT_FROM_LOOP = Across(reports.Reports.put_from_loop, "item = crossing.carry(",
                          reports.Reports._take, "reports", "-", False, back=False)
REPORT_FROM_THREAD = Across(reports.Reports.put_from_thread, "item = crossing.carry(",
                            reports.Reports._take, "event-loop", "reports", False)
RUN_BLOCKING = Across(compose.System.serve_in_task, "await self.bridge.run_in_thread(",
                      compose.System._blocking_session, SESSION, "-", True)
STORE = Across(recording.Recording._cross, 'await self._bridge.run_in_thread("results"',
               results.Store.record_all, r"blocking-results_\d+", "-", True)
