"""A real debugger: debugpy, driven over DAP as VS Code drives it, stops on both sides of
each bridge at the five named stages (and at `--async server`, where run_in_executor
appears), each time in the thread the README's "Where to break" table names.

Each breakpoint is removed once it has fired, so the demo runs on to the end, and the
test checks the transcript too. Every wait has a deadline: a debugger that stops
answering fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

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
    Across,
    statement_lines,
)
from dap import DapClient, DapError, debugged
from guessgame import adapters, bridge, compose, reports
from guessgame.aio import client as aio_client
from guessgame.aio import session as aio_session
from guessgame.threaded import session as threaded_session
from harness import first_body_line
from timing import UNIT

pytest.importorskip("debugpy")

# One debugged program at a time: two at once, on a loaded machine, miss their deadlines.
pytestmark = pytest.mark.xdist_group("debuggers")

TIMEOUT = 3 * UNIT
T = TypeVar("T")


# Where to break, as README's table says, and the thread each side runs in at each stage.
RUN_IN_LOOP = (bridge.Bridge.run_in_loop, f"{SESSION}|MainThread")
LINES_THREAD = (adapters.BlockingFace.receive, f"{SESSION}|MainThread")
LINES_LOOP = (adapters.BlockingFace._read, "event-loop")
SEND_THREAD = (adapters.BlockingFace.send, f"{SESSION}|MainThread")
SEND_LOOP = (adapters.BlockingFace._write, "event-loop")

CASES: dict[str, list[tuple[Callable[..., Any], str]]] = {
    "all-threads": [(threaded_session.Session._serve_line, SESSION),
                    (reports.Reports._print_from_thread, "reports")],
    # janus lines: a threaded session on an asyncio connection; the report queue too.
    "async-connection": [RUN_IN_LOOP, LINES_THREAD, LINES_LOOP, SEND_THREAD, SEND_LOOP,
                         (reports.Reports.put_from_thread, SESSION),
                         (reports.Reports._print_from_thread, "reports")],
    # run_coroutine_threadsafe: a threaded server hands each session to the loop thread.
    "async-session": [RUN_IN_LOOP, (compose.System._async_session, "event-loop"),
                      (reports.Reports.put_from_loop, "event-loop"),
                      (reports.Reports._print_from_thread, "reports"),
                      LINES_THREAD, LINES_LOOP],
    # The asyncio server on the loop thread; the threaded client crosses on janus.
    "async-server": [(bridge.Bridge.run_in_loop, "MainThread"),
                     (adapters.BlockingFace.receive, "MainThread"), LINES_LOOP,
                     (aio_session.Session._serve_line, "event-loop"),
                     (reports.Reports.put_from_loop, "event-loop"),
                     (reports.Reports._print_in_task, "event-loop")],
    # One loop in the main thread, and no bridge.
    "all-async": [(aio_session.Session._serve_line, "MainThread"),
                  (aio_client.Client.play, "MainThread"),
                  (reports.Reports._print_in_task, "MainThread")],
    # run_in_executor: an asyncio server runs each threaded session in a worker.
    "server": [(bridge.Bridge.run_in_thread, "event-loop"),
               (compose.System._blocking_session, SESSION),
               (threaded_session.Session._serve_line, SESSION)],
}


WAITS = '__import__("guessgame.observe.debugging").observe.debugging.waits()'
WATCH = {
    # Paused in the session task on the loop thread: the session thread waits for it.
    "async-session": (compose.System._async_session,
                      f"session ({PEER}) \\(thread\\) waits in run_coroutine_threadsafe for "
                      f"task System._async_session from session ({PEER}) "),
    # Paused in the client thread: debugpy holds the loop thread too, so its tasks are
    # read from outside after a short wait.
    "async-connection": (adapters.BlockingFace.receive,
                         "runs an event loop; .*read from outside: the loop did not answer"),
}


def debugged_demo(stage: str, drive: Callable[[DapClient], T]) -> tuple[T, str]:
    """Run the demo at `stage` under debugpy (see dap.debugged), check that it then
    finished as it should, and return what `drive` returned and the stderr."""
    pick = ["--async", stage] if stage == "server" else ["--stage", stage]
    driven, done = debugged(["-m", "guessgame", "demo", "--config", str(CONFIG), *pick,
                             "--debug", "--seed", "1", "-q"], TIMEOUT, drive)
    assert done.returncode == 0, done.stderr
    assert "client: 12 is CORRECT" in done.stdout
    return driven, done.stderr


class Session:
    """One debugging session: breakpoints by file, and where each one fired."""

    def __init__(self, dap: DapClient, breakpoints: dict[str, set[int]]) -> None:
        self.dap = dap
        self.pending = breakpoints
        self.hits: dict[tuple[str, int], str] = {}
        self.watch_at: tuple[str, int] | None = None
        self.watched = ""

    def set_breakpoints(self, path: str) -> None:
        self.dap.request("setBreakpoints", source={"path": path},
                         breakpoints=[{"line": line} for line in sorted(self.pending[path])])

    def attach(self) -> None:
        self.dap.request("initialize", clientID="vscode", adapterID="debugpy",
                         pathFormat="path", linesStartAt1=True, columnsStartAt1=True)
        # debugpy answers attach only after configurationDone, and says `initialized`
        # in between: the order VS Code uses.
        attach = self.dap.send("attach", justMyCode=True, subProcess=False)
        self.dap.event("initialized")
        for path in self.pending:
            self.set_breakpoints(path)
        self.dap.request("configurationDone")
        self.dap.response(attach)

    def run(self) -> None:
        """Take each stop until every breakpoint fired and the program ended."""
        while True:
            message = self.dap.event("stopped", "terminated", "exited")
            if message["event"] != "stopped":
                # debugpy keeps the process until the client lets go, as VS Code does.
                self.dap.send("disconnect")
                return
            thread_id = message["body"]["threadId"]
            names = {t["id"]: t["name"] for t in self.dap.request("threads")["threads"]}
            top = self.dap.request("stackTrace", threadId=thread_id, levels=1)["stackFrames"][0]
            path, line = os.path.realpath(top["source"]["path"]), top["line"]
            if line in self.pending.get(path, set()):
                self.hits[path, line] = names[thread_id]
                if (path, line) == self.watch_at:
                    # What a VS Code watch on waits() shows (Copy Value gives it whole).
                    self.watched = self.dap.request(
                        "evaluate", expression=WAITS, frameId=top["id"],
                        context="clipboard")["result"]
                self.pending[path].discard(line)
                self.set_breakpoints(path)  # fired once: enough, and the demo moves on
            self.dap.request("continue", threadId=thread_id)


@pytest.mark.parametrize("stage", list(CASES))
def test_debugpy_stops_on_both_sides_of_each_bridge_in_the_named_thread(stage: str) -> None:
    wanted = {first_body_line(function): thread for function, thread in CASES[stage]}
    breakpoints: dict[str, set[int]] = {}
    for path, line in wanted:
        breakpoints.setdefault(path, set()).add(line)
    def drive(dap: DapClient) -> Session:
        session = Session(dap, breakpoints)
        if stage in WATCH:
            session.watch_at = first_body_line(WATCH[stage][0])
        session.attach()
        session.run()
        return session

    session, err = debugged_demo(stage, drive)
    missed = [f"{path}:{line}" for (path, line) in wanted if (path, line) not in session.hits]
    assert not missed, f"breakpoints that never fired: {missed}\n{err}"
    for (path, line), pattern in wanted.items():
        thread = session.hits[path, line]
        assert re.fullmatch(pattern, thread), f"{path}:{line} fired in {thread!r}"
    if stage in WATCH:
        assert re.search(WATCH[stage][1], session.watched), session.watched
        assert "no deadlock found" in session.watched


# --- Step Into on a crossing line follows the work to the other side ------------------

RULES = json.loads((CONFIG.parent / ".vscode" / "launch.json").read_text()
                   )["configurations"][0]["rules"]
HERE = '__import__("guessgame.observe.trace").observe.trace.here()'


# One debuggee per list, its crossings in the order the demo meets them again. A call
# that is the whole session comes back only once the games are over: last, or alone.
# A breakpoint added in a coroutine already running may never fire under sys.monitoring
# (3.12 on: pydevd turns line events on for code as it starts), so a line in one (the
# reader task's) leads its list: its breakpoint is set before the program starts.
STEPS: dict[str, list[list[Across]]] = {
    "async-connection": [[OPEN, SEND], [READ]],
    "async-session": [[CONNECT, SEND, REPORT_FROM_LOOP], [READ], [RUN_SESSION]],
    "async-server": [[CONNECT, SEND], [READ]],
    "server": [[REPORT_FROM_THREAD], [RUN_BLOCKING]],
}


@dataclass(frozen=True)
class Stop:
    thread_id: int
    thread: str
    path: str
    line: int
    function: str
    frame_id: int

    def __str__(self) -> str:
        return f"{os.path.basename(self.path)}:{self.line} {self.function}() in {self.thread!r}"


class Stepper:
    """Steps as a VS Code user does, one request and one `stopped` event at a time."""

    def __init__(self, dap: DapClient) -> None:
        self.dap = dap
        self.trail: list[str] = []  # every stop, for the failure message
        self.current: Stop | None = None

    def attach(self, first: Across) -> None:
        self.dap.request("initialize", clientID="vscode", adapterID="debugpy",
                         pathFormat="path", linesStartAt1=True, columnsStartAt1=True)
        attach = self.dap.send("attach", justMyCode=True, rules=RULES, subProcess=False)
        self.dap.event("initialized")
        self.break_at(first)
        self.dap.request("configurationDone")
        self.dap.response(attach)

    def break_at(self, across: Across | None, path: str = "") -> None:
        lines = [] if across is None else [{"line": across.line}]
        self.dap.request("setBreakpoints", source={"path": across.path if across else path},
                         breakpoints=lines)

    def stopped(self) -> Stop:
        message = self.dap.event("stopped", "terminated", "exited")
        if message["event"] != "stopped":
            raise DapError(f"the program ended instead of stopping; stops: {self.trail}")
        thread_id = message["body"]["threadId"]
        names = {t["id"]: t["name"] for t in self.dap.request("threads")["threads"]}
        top = self.dap.request("stackTrace", threadId=thread_id, levels=1)["stackFrames"][0]
        stop = Stop(thread_id, names[thread_id], os.path.realpath(top["source"]["path"]),
                    top["line"], top["name"], top["id"])
        self.trail.append(str(stop))
        self.current = stop
        assert not PLUMBING_FILES.search(stop.path), f"stopped in plumbing: {self.trail}"
        return stop

    def step(self, command: str, at: Stop) -> Stop:
        self.dap.request(command, threadId=at.thread_id)
        return self.stopped()

    def here(self, at: Stop) -> str:
        result: str = self.dap.request("evaluate", expression=HERE, frameId=at.frame_id,
                                       context="watch")["result"]
        return result

    def across(self, across: Across) -> None:
        """From a stop on the crossing line: Step Into lands on the other side, and
        stepping on comes back to the line after it."""
        self.break_at(across)
        at = self.stopped_at(across)
        self.break_at(None, across.path)
        callers = [frame["name"] for frame in self.dap.request(
            "stackTrace", threadId=at.thread_id)["stackFrames"][1:]]
        statement = statement_lines(across.sender, across.line)
        landed = self.step("stepIn", at)
        while landed.thread_id == at.thread_id and landed.line in statement:
            landed = self.step("stepIn", landed)  # the statement's other lines, first
        assert landed.function == across.taker.__name__, self.trail
        assert re.fullmatch(across.thread, landed.thread), self.trail
        if across.call:
            assert (landed.path, landed.line) == first_body_line(across.taker), self.trail
        task = re.search(r"task='([^']*)'", self.here(landed))
        assert task is not None and re.fullmatch(across.task, task.group(1)), task
        if not across.back:
            return
        back = self.step("stepOut" if across.call else "next", landed)
        for _ in range(5):  # the rest of the work, on its side, then back
            if back.thread_id == at.thread_id:
                break
            back = self.step("next", back)
        assert back.thread_id == at.thread_id, self.trail
        # The same function in the same file: a caller may share its name (rollout's
        # serve_in_task awaits compose's).
        if (back.path, back.function) == (at.path, at.function):
            assert back.line > at.line and back.line not in statement, self.trail
        else:  # the crossing ended its function: the caller's next line
            assert back.function in callers, self.trail

    def stopped_at(self, across: Across) -> Stop:
        if self.current is not None:  # where the last check left off
            self.dap.request("continue", threadId=self.current.thread_id)
        while True:
            stop = self.stopped()
            if (stop.path, stop.line) == (across.path, across.line):
                return stop
            self.dap.request("continue", threadId=stop.thread_id)


@pytest.mark.parametrize(("stage", "part"),
                         [(stage, part) for stage, parts in STEPS.items()
                          for part in range(len(parts))])
def test_step_into_a_crossing_lands_on_the_other_side_and_comes_back(
        stage: str, part: int) -> None:
    def drive(dap: DapClient) -> None:
        stepper = Stepper(dap)
        stepper.attach(STEPS[stage][part][0])
        for across in STEPS[stage][part]:
            stepper.across(across)
        assert stepper.current is not None
        dap.request("continue", threadId=stepper.current.thread_id)
        dap.event("terminated", "exited")
        dap.send("disconnect")

    debugged_demo(stage, drive)
