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
import contextlib
import inspect
import io
import itertools
import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from conftest import CONFIG
from crossing_lines import (
    CONNECT,
    OPEN,
    PEER,
    PLUMBING_FILES,
    READ,
    REPORT_FROM_LOOP,
    REPORT_FROM_THREAD,
    RUN_BLOCKING,
    RUN_SESSION,
    SEND,
    SESSION,
    STORE,
    statement_lines,
)
from guessgame import cli, config, protocol
from guessgame.observe import debugging
from harness import first_body_line
from pdbdrive import HEADER, Debugged, Stop
from timing import UNIT

BREAKPOINT = f"{protocol.__file__}:{first_body_line(protocol.Guesser._number)[1]}"

# One debugged program at a time (see test_dap.py).
pytestmark = pytest.mark.xdist_group("debuggers")


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
        input=COMMANDS, capture_output=True, text=True, timeout=3 * UNIT,
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


def test_vscode_launch_runs_each_command_at_each_named_stage() -> None:
    """One configuration whose inputs pick the command, the stage and the option that
    command takes; every pick a command accepts starts it at a named stage."""
    launch = json.loads((CONFIG.parent / ".vscode" / "launch.json").read_text())
    stages = config.load(str(CONFIG)).stages
    for entry in launch["configurations"]:
        assert entry["type"] == "debugpy" and entry["justMyCode"] is True
        # Stepping never stops in what carries the work (docs/debugging.md).
        kept_out = {rule["module"] for rule in entry["rules"] if rule["include"] is False}
        assert kept_out >= {"guessgame.bridge", "guessgame.workers", "guessgame.crossing",
                            "guessgame.observe", "asyncio", "concurrent.futures",
                            "threading"}, entry["name"]
    [own] = [e for e in launch["configurations"] if e["args"][:1] == ["run"]]
    assert own["module"] == "guessgame" and own["args"] == ["run", "${file}"]
    [entry] = [e for e in launch["configurations"] if e is not own]
    picks = {put["id"]: [o if isinstance(o, str) else o["value"] for o in put["options"]]
             for put in launch["inputs"] if put["type"] == "pickString"}
    assert set(picks["stage"]) == set(stages)
    parser = cli.build_parser()
    seen = set()
    for choice in itertools.product(*picks.values()):
        chosen = dict(zip(picks, choice, strict=True))
        argv = [chosen.get(arg[len("${input:"):-1], arg) if arg.startswith("${input:") else arg
                for arg in entry["args"]]
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                args = parser.parse_args(argv)
        except SystemExit:  # an option that command does not take
            continue
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
        asked.wait(UNIT)
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
        thread.join(UNIT)
        assert threading.gettrace() == tracer
        assert seen == ([tracer] if sys.version_info >= (3, 12) else [None])
    finally:
        threading.settrace(None)


# --- guessgame debug: the thread-aware pdb, and steps across the bridges ------------------

ACROSS = {
    "async-connection": {"open": OPEN, "send": SEND, "read": READ},
    "async-session": {"session": RUN_SESSION, "send": SEND, "read": READ,
                      "report": REPORT_FROM_LOOP, "results": STORE},
    "async-server": {"connect": CONNECT, "send": SEND, "read": READ},
    "server": {"session": RUN_BLOCKING, "report": REPORT_FROM_THREAD},
}


def debugged_demo(stage: str) -> Debugged:
    pick = ["--async", stage] if stage == "server" else ["--stage", stage]
    return Debugged(["demo", "--config", str(CONFIG), *pick, "--seed", "1", "-q"])


def not_plumbing(stop: Stop) -> Stop:
    assert not PLUMBING_FILES.search(stop.file), f"stopped in plumbing: {stop.where}\n{stop.text}"
    return stop


@pytest.mark.parametrize(("stage", "crossing"),
                         [(stage, name) for stage, cases in ACROSS.items() for name in cases])
def test_step_into_a_crossing_lands_on_the_other_side_and_comes_back(
        stage: str, crossing: str) -> None:
    across = ACROSS[stage][crossing]
    sender_file = inspect.getsourcefile(across.sender)
    statement = statement_lines(across.sender, across.line)
    pdb = debugged_demo(stage)
    try:
        pdb.stop()
        pdb.reply(f"break {sender_file}:{across.line}")
        at = not_plumbing(pdb.command("continue"))
        assert (at.function, at.line) == (across.sender.__name__, across.line), at.text
        where_at = pdb.reply("where")
        pdb.reply("clear 1")
        # Python may stop on the statement's other lines first, as it evaluates them.
        landed = not_plumbing(pdb.command("step"))
        while landed.thread == at.thread and landed.line in statement:
            landed = not_plumbing(pdb.command("step"))
        assert landed.function == across.taker.__name__, landed.text
        assert re.fullmatch(across.thread, landed.thread), landed.where
        assert re.fullmatch(across.task, landed.task), landed.where
        if across.call:
            assert landed.line == first_body_line(across.taker)[1], landed.where
            assert "[stepped across " in landed.text, landed.text
        else:
            assert "[took " in landed.text, landed.text
        assert landed.session == at.session or "-" in (landed.session, at.session)
        # `where`: this side, the crossing, then the side that sent it.
        where = pdb.reply("where")
        mine, _, theirs = where.partition("  --- ")
        assert across.taker.__name__ in mine and f"{across.sender.__name__}()" in theirs, where

        if at.task != "-" and not across.call:
            # A loop that sent an item is not held (the taker may need the loop), so it
            # has gone on: the step ends the crossing, and nothing stops again.
            out = pdb.finish()
            assert "client: 12 is CORRECT" in out and "exited with status 0" in out
            return
        back = not_plumbing(pdb.command("return" if across.call else "step"))
        for _ in range(5):  # --Return-- of the work, then its way back
            if back.thread == at.thread and back.task == at.task:
                break
            back = not_plumbing(pdb.command("step"))
        assert (back.thread, back.task) == (at.thread, at.task), back.text
        if at.task == "-":
            assert back.function == at.function, back.where
            assert back.line > at.line or (back.returning and back.line in statement), \
                back.where
        else:  # a coroutine's return is no stop under `next`: its next line, or its caller's
            assert (back.function == at.function and back.line > at.line) \
                or back.function in where_at, back.where
        out = pdb.finish()
    finally:
        pdb.close()
    assert "client: 12 is CORRECT" in out
    assert "exited with status 0" in out


def test_two_threads_at_one_breakpoint_get_one_prompt_each_in_turn() -> None:
    """Two session threads of `serve` stop at the same breakpoint: one prompt, then the
    other's when the first steps on, each naming its thread and session; the first
    thread's step stops in it, after the second has continued, and nowhere else."""
    from guessgame.threaded import session as threaded_session

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve_line = threaded_session.Session._serve_line
    pdb = Debugged(["serve", "--config", str(CONFIG), "--stage", "all-threads", "--host",
                    "127.0.0.1", "--port", str(port)])
    peers: list[socket.socket] = []
    try:
        pdb.stop()
        pdb.reply(f"break {inspect.getsourcefile(serve_line)}:{first_body_line(serve_line)[1]}")
        pdb.send("continue")
        pdb.expect(f"listening on 127.0.0.1:{port}")
        for _ in range(2):
            peer = socket.create_connection(("127.0.0.1", port), timeout=2 * UNIT)
            peer.sendall(b"PARAMS 1 5\n")  # so that a step past the read does not wait
            peers.append(peer)
        first = pdb.stop()
        assert re.fullmatch(SESSION, first.thread), first.text
        assert first.session in ("s1", "s2"), first.text
        # The other thread reaches the breakpoint too, and waits for the prompt.
        give_up = time.monotonic() + UNIT
        while "[waiting for the prompt]" not in pdb.reply("threads"):
            if time.monotonic() > give_up:
                raise AssertionError("the second session never stopped at the breakpoint")
        # This thread leaves the prompt to step: the waiting one has its turn first.
        second = pdb.command("step")
        assert re.fullmatch(SESSION, second.thread), second.text
        assert second.thread != first.thread, second.text
        assert {first.session, second.session} == {"s1", "s2"}, second.text
        assert len(HEADER.findall(second.text)) == 1, second.text  # one prompt at a time
        pdb.reply("clear 1")
        # Then the step's stop, in the first thread, and its further steps stay there.
        for command in ("continue", "step", "step"):
            stepped = not_plumbing(pdb.command(command))
            assert (stepped.thread, stepped.session) == (first.thread, first.session), \
                stepped.text
            assert len(HEADER.findall(stepped.text)) == 1, stepped.text
        pdb.send("quit")
    finally:
        for peer in peers:
            peer.close()
        pdb.close()
