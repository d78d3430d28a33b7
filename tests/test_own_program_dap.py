"""A program of one's own in VS Code: debugpy runs `guessgame run PROGRAM.py` as the
launch.json configuration "current file under guessgame run" does, driven over DAP.

Step Into on a line that crosses a stdlib bridge (run_coroutine_threadsafe,
run_in_executor, a janus queue) lands on the far side, in the thread and task where it
runs; stepping on comes back to the sender; the program ends with its own status.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conftest import CONFIG
from crossing_lines import Across
from dap import DapClient, debugged
from test_dap import TIMEOUT, Stepper

pytest.importorskip("debugpy")

PROGRAMS = Path(__file__).parent / "plain_programs"
LAUNCH = next(entry for entry in json.loads(
    (CONFIG.parent / ".vscode" / "launch.json").read_text())["configurations"]
    if entry["args"][:1] == ["run"])


def plain(name: str) -> ModuleType:
    """The program's module, loaded from its file (its main part does not run)."""
    spec = importlib.util.spec_from_file_location(f"plain_{name}", PROGRAMS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


feeders, blocking_calls, janus_pipeline, loop_thread = (
    plain("feeders"), plain("blocking_calls"), plain("janus_pipeline"), plain("loop_thread"))


def blocking_call(call: str, function: Callable[..., Any],
                  worker: str) -> tuple[list[str], int, str, Across]:
    """blocking_calls.py, stepped from its main coroutine into `function` in `worker`."""
    return [], 4, "own pool: 6729190ca312", Across(blocking_calls.main, call, function,
                                                     worker, "-", True)


CASES = {
    "feeders": (["1"], 3, "tally: [(0, 0)]",
                Across(feeders.feed, "run_coroutine_threadsafe(", feeders.record, "MainThread",
                       "record from feeder-0", True)),
    "to_thread": blocking_call("asyncio.to_thread(", blocking_calls.shout, "asyncio_0"),
    "own pool": blocking_call("run_in_executor(pool", blocking_calls.checksum, "hashers_0"),
    "run_forever": ([], 5, "hello, bob",
                    Across(loop_thread.main, "run_coroutine_threadsafe(", loop_thread.greet,
                           "loop-runner", "greet from MainThread", True)),
    "janus": ([], 0, "served 3",
              Across(janus_pipeline.produce, "requests.put(word)", janus_pipeline.consume,
                     "MainThread", "Task-1", False)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_step_into_a_stdlib_bridge_in_a_program_of_ones_own(case: str) -> None:
    args, status, last_line, across = CASES[case]
    path = os.path.realpath(across.path)

    def drive(dap: DapClient) -> None:
        stepper = Stepper(dap)
        stepper.attach(across)
        stepper.across(across)
        assert stepper.current is not None
        dap.request("continue", threadId=stepper.current.thread_id)
        dap.event("terminated", "exited")
        dap.send("disconnect")

    _, done = debugged(["-m", LAUNCH["module"],
                        *[path if arg == "${file}" else arg for arg in LAUNCH["args"]], *args],
                       TIMEOUT, drive)
    assert done.returncode == status, done.stderr
    assert done.stdout.splitlines()[-1] == last_line, done.stdout
