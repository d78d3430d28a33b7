"""`python -m pdb -m guessgame demo --debug` stops in the session, in the right thread,
at each named stage and at one more mixed combination (only the server async).

pdb is driven through its stdin: break where the server's guesser answers NUMBER,
continue, ask where it stopped, then clear the breakpoint and let the demo finish.
With `--debug`, pdb follows the system into every thread it starts, so the breakpoint
fires whether the session runs in a thread, a worker, the loop thread or the main one.
"""

from __future__ import annotations

import asyncio
import bdb
import json
import logging
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from conftest import CONFIG
from guessgame import cli, config, protocol
from guessgame.observe import debugging

PEER = r"127\.0\.0\.1:\d+"


def first_body_line(function: object) -> int:
    code = function.__code__  # type: ignore[attr-defined]
    return min(line for *_, line in code.co_lines() if line and line > code.co_firstlineno)


BREAKPOINT = f"{protocol.__file__}:{first_body_line(protocol.Guesser._number)}"


@dataclass(frozen=True)
class Expect:
    thread: str  # a regex for the thread's name at the breakpoint
    task: str  # a regex for the task's name, or "-" outside a task
    calls: tuple[str, ...]  # functions that must show in `where`, outermost first


CASES = {
    # The threaded server's session thread, named after the peer.
    "all-threads": Expect(f"session {PEER}", "-", (
        "_run_session", "serve_in_thread", "_blocking_session", "run", "_serve_line",
        "handle", "_number")),
    # One loop in the main thread; the session is the task the asyncio server made.
    "all-async": Expect("MainThread", f"session {PEER}", (
        "run_at_stage", "_run_session", "serve_in_task", "_async_session", "run",
        "_serve_line", "handle", "_number")),
    # A threaded session reads its asyncio connection through the line queues.
    "async-connection": Expect(f"session {PEER}", "-", (
        "_run_session", "serve_in_thread", "_blocking_session", "run", "_serve_line",
        "handle", "_number")),
    # A threaded server hands the session to the loop thread: run_coroutine_threadsafe.
    "async-session": Expect("event-loop", f"System._async_session from session {PEER}", (
        "_serve_loop", "_async_session", "run", "_serve_line", "handle", "_number")),
    # The asyncio server's session task, on the loop thread of a threaded client.
    "async-server": Expect("event-loop", f"session {PEER}", (
        "_serve_loop", "_run_session", "serve_in_task", "_async_session", "run",
        "_serve_line", "handle", "_number")),
    # An asyncio server runs a threaded session in a worker: run_in_executor.
    "server": Expect(f"session {PEER}", "-", (
        "run", "_run", "__call__", "_blocking_session", "run", "_serve_line", "handle",
        "_number")),
}

COMMANDS = f"""\
break {BREAKPOINT}
continue
p "at", __import__("guessgame.observe.trace").observe.trace.here()
where
clear 1
continue
quit
"""

HERE = re.compile(r"\('at', Here\(thread='([^']*)', task='([^']*)', session='([^']*)'\)\)")
FRAME = re.compile(r"(/\S+?\.py)\((\d+)\)(\w+)\(\)")


def run_pdb(stage: str) -> str:
    pick = ["--async", stage] if stage == "server" else ["--stage", stage]
    done = subprocess.run(
        [sys.executable, "-m", "pdb", "-m", "guessgame", "--", "demo", "--config", str(CONFIG),
         *pick, "--debug", "--seed", "1", "-q"],
        input=COMMANDS, capture_output=True, text=True, timeout=15,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("stage", list(CASES))
def test_pdb_stops_in_the_session_in_the_thread_the_stage_implies(stage: str) -> None:
    out = run_pdb(stage)
    expect = CASES[stage]
    here = HERE.search(out)
    assert here is not None, f"the breakpoint did not fire:\n{out}"
    thread, task, session = here.groups()
    assert re.fullmatch(expect.thread, thread), thread
    assert re.fullmatch(expect.task, task), task
    assert session == "s1"

    # `where`: the stack from the thread's start to the breakpoint, and short.
    stack = FRAME.findall(out[here.end():])
    stack = stack[: next(i for i, f in enumerate(stack) if f[2] == "_number") + 1]
    assert len(stack) <= 24, stack
    names = [function for _, _, function in stack]
    it = iter(names)
    assert all(call in it for call in expect.calls), names  # in this order
    # The demo still ran to the end, with the same transcript.
    assert "client: 12 is CORRECT" in out
    assert "Exit status: 0" in out


def test_vscode_launch_configurations_run_each_command_at_each_named_stage() -> None:
    launch = json.loads((CONFIG.parent / ".vscode" / "launch.json").read_text())
    stages = config.load(str(CONFIG)).stages
    seen = set()
    for entry in launch["configurations"]:
        assert entry["type"] == "debugpy" and entry["module"] == "guessgame"
        assert entry["justMyCode"] is True
        args = cli.build_parser().parse_args(entry["args"])
        assert args.debug and args.stage in stages
        seen.add((args.command, args.stage))
    assert seen == {(command, stage) for command in ("demo", "serve", "play")
                    for stage in stages}


def test_debug_mode_reports_a_callback_that_holds_the_loop(
        caplog: pytest.LogCaptureFixture) -> None:
    debugging.show_slow_callbacks()

    async def main() -> None:
        # Every step counts as slow at a zero threshold, so nothing needs to block.
        asyncio.get_running_loop().slow_callback_duration = 0.0
        await asyncio.sleep(0)

    with caplog.at_level(logging.WARNING):
        asyncio.run(main(), debug=True)
    slow = [r for r in caplog.records if r.name == "asyncio" and "took" in r.getMessage()]
    assert slow and all(r.levelno == logging.WARNING for r in slow)
    assert logging.getLogger("asyncio").getEffectiveLevel() == logging.WARNING


def test_only_pdb_is_handed_to_new_threads() -> None:
    # Under pytest no pdb traces this thread, so nothing is installed.
    assert not debugging.follow_pdb_into_threads()
    assert threading.gettrace() is None


class _Pdb(bdb.Bdb):
    """Looks like pdb to follow_pdb_into_threads(), and traces nothing."""

    def trace_dispatch(self, frame: Any, event: str, arg: Any) -> None:  # type: ignore[override]
        return None


def test_pdb_reaches_threads_already_running_from_python_3_12() -> None:
    """3.12 added threading.settrace_all_threads: a thread that was running before
    `--debug` took effect is traced too. On 3.11 only threads started later are."""
    tracer = _Pdb().trace_dispatch
    asked = threading.Event()
    seen: list[object] = []

    def running() -> None:
        asked.wait(5)
        seen.append(sys.gettrace())

    thread = threading.Thread(target=running, name="running before")
    thread.start()
    sys.settrace(tracer)
    try:
        assert debugging.follow_pdb_into_threads()
    finally:
        sys.settrace(None)
    try:
        asked.set()
        thread.join(5)
        assert threading.gettrace() == tracer
        assert seen == ([tracer] if sys.version_info >= (3, 12) else [None])
    finally:
        threading.settrace(None)
