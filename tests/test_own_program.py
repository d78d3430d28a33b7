"""Programs written the plain way (tests/plain_programs/, with nothing of guessgame in
them) under `guessgame run` and `guessgame debug PROGRAM.py`.

`run` keeps each program's output and exit status; its crossings show in the trace, and
SIGUSR1 on a program stuck across bridges names who waits on whom. Under `debug`, pdb
is driven through its stdin: break on a line that crosses, step into the far side (in
the thread and task where it runs), `where` joined across the crossing, step on back in
the sender, then the program ends with its own status and output.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import asyncio.tasks
import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import janus
import pytest

from guessgame import crossing
from guessgame.observe import stdlib_bridges
from pdbdrive import Debugged, Stop
from timing import UNIT

PROMPT_OR_END = re.compile(r"\(Pdb\) |exited with status \d+")
F_SETPIPE_SZ = 1031  # Linux: fcntl.F_SETPIPE_SZ from 3.12 on

PROGRAMS = Path(__file__).parent / "plain_programs"

EXPECTED = {
    # program: (exit status, stdout lines in any order)
    "feeders.py": (3, ["worker 0 recorded", "worker 1 recorded", "worker 2 recorded",
                       "tally: [(0, 0), (1, 10), (2, 20)]"]),
    "blocking_calls.py": (4, ["to_thread: HELLO", "default executor: 37a8eec1ce19",
                              "own pool: 6729190ca312"]),
    "janus_pipeline.py": (0, ["alpha: 5", "be: 2", "gamma: 5", "served 3"]),
    "loop_thread.py": (5, ["hello, ada", "hello, bob"]),
    "blocking_coroutine.py": (0, ["handled after 3 ticks"]),
}


def line_of(program: str, text: str) -> int:
    """The number of the one line of `program` that contains `text`."""
    lines = (PROGRAMS / program).read_text().splitlines()
    found = [number for number, line in enumerate(lines, 1) if text in line]
    assert len(found) == 1, (program, text, found)
    return found[0]


def guessgame(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guessgame", *args], input=stdin,
                          capture_output=True, text=True, timeout=4 * UNIT, check=False)


# --- install and uninstall ---------------------------------------------------------------


def entry_points() -> dict[str, object]:
    return {
        "asyncio.run_coroutine_threadsafe": asyncio.run_coroutine_threadsafe,
        "asyncio.tasks.run_coroutine_threadsafe": asyncio.tasks.run_coroutine_threadsafe,
        "run_in_executor": asyncio.base_events.BaseEventLoop.run_in_executor,
        "run_forever": asyncio.base_events.BaseEventLoop.run_forever,
        **{f"{face.__name__}.{name}": face.__dict__[name]
           for face in (janus._SyncQueueProxy, janus._AsyncQueueProxy)
           for name in ("put", "get", "put_nowait", "get_nowait")},
    }


def test_uninstall_puts_every_original_back() -> None:
    before = entry_points()
    assert not stdlib_bridges.installed()  # importing guessgame patches nothing
    stdlib_bridges.install()
    try:
        replaced = stdlib_bridges.patched()
        assert len(replaced) == len(before)
        assert all(entry_points()[name] is not original for name, original in before.items())
        assert set(replaced.values()) == set(before.values())
    finally:
        stdlib_bridges.uninstall()
    after = entry_points()
    assert all(after[name] is original for name, original in before.items())
    assert not stdlib_bridges.installed()


class Recorder(crossing.Observer):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def sent(self, seen: crossing.Crossing) -> None:
        self.events.append(("sent", seen.bridge, seen.what.rsplit(".", 1)[-1]))

    def returned(self, seen: crossing.Crossing) -> None:
        self.events.append(("returned", seen.bridge, seen.what.rsplit(".", 1)[-1]))

    def loop_started(self, loop: asyncio.AbstractEventLoop, own: bool) -> None:
        self.events.append(("loop_started", "", ""))


def test_the_stdlib_bridges_announce_once_each_while_installed() -> None:
    async def double(number: int) -> int:
        return 2 * number

    def call_loop(loop: asyncio.AbstractEventLoop) -> int:
        return asyncio.run_coroutine_threadsafe(double(4), loop).result()

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        doubled = await asyncio.to_thread(call_loop, loop)
        queue: janus.Queue[int] = janus.Queue(1)
        thread = threading.Thread(target=queue.sync_q.put, args=(7,))
        thread.start()
        item = await queue.async_q.get()
        await asyncio.to_thread(thread.join)
        queue.close()
        await queue.wait_closed()
        return doubled, item

    recorder = Recorder()
    stdlib_bridges.install()
    crossing.attach(recorder)
    try:
        assert asyncio.run(main()) == (8, 7)
    finally:
        crossing.detach(recorder)
        stdlib_bridges.uninstall()
    sent = [event[1:] for event in recorder.events if event[0] == "sent"]
    returned = [event[1:] for event in recorder.events if event[0] == "returned"]
    assert sorted(sent) == sorted([("run_in_executor", "call_loop"),
                                   ("run_coroutine_threadsafe", "double"),
                                   ("janus", "7"), ("run_in_executor", "join")])
    assert sorted(returned) == sorted(sent)
    assert ("loop_started", "", "") in recorder.events
    before = len(recorder.events)
    assert asyncio.run(main()) == (8, 7)  # uninstalled: nothing more
    assert len(recorder.events) == before


def test_the_stdlib_bridges_refuse_at_the_call_what_python_refuses() -> None:
    """A future given to run_coroutine_threadsafe, a coroutine function given to
    run_in_executor on a loop in debug mode: TypeError at the call, as without us."""
    async def coroutine_function() -> None:
        pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        not_a_coroutine = loop.create_future()
        with pytest.raises(TypeError, match="A coroutine object is required"):
            asyncio.run_coroutine_threadsafe(not_a_coroutine, loop)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"coroutines cannot be used with run_in_executor"):
            await loop.run_in_executor(None, coroutine_function)

    recorder = Recorder()
    stdlib_bridges.install()
    crossing.attach(recorder)
    try:
        asyncio.run(main(), debug=True)
    finally:
        crossing.detach(recorder)
        stdlib_bridges.uninstall()
    assert [event for event in recorder.events if event[0] == "sent"] == []


# --- guessgame run -----------------------------------------------------------------------


@pytest.mark.parametrize("program", sorted(EXPECTED))
def test_run_keeps_the_programs_output_and_exit_status(program: str) -> None:
    status, lines = EXPECTED[program]
    done = guessgame("run", str(PROGRAMS / program))
    assert done.returncode == status, done.stderr
    out = done.stdout.splitlines()
    assert len(out) == len(lines) and all(any(line.startswith(want) for line in out)
                                          for want in lines), done.stdout
    assert done.stderr == ""


def test_run_traces_the_programs_crossings_and_passes_its_arguments() -> None:
    done = guessgame("run", "--trace", str(PROGRAMS / "janus_pipeline.py"), "one", "three")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["one: 3", "three: 5", "served 2"]
    assert "\tproducer\t-\t-\tbridge\tjanus thread->loop 'one'" in done.stderr
    assert "bridge\tjanus loop->thread 5" in done.stderr


def test_run_module_and_its_errors() -> None:
    done = subprocess.run([sys.executable, "-m", "guessgame", "run", "-m", "loop_thread"],
                          cwd=PROGRAMS, capture_output=True, text=True, timeout=4 * UNIT,
                          check=False)
    assert (done.returncode, done.stdout) == (5, "hello, ada\nhello, bob\n"), done.stderr
    missing = guessgame("run", str(PROGRAMS / "no_such_program.py"))
    assert missing.returncode == 2
    assert "cannot find the program" in missing.stderr


def test_run_exits_1_with_the_traceback_of_an_uncaught_exception(tmp_path: Path) -> None:
    program = tmp_path / "fails.py"
    program.write_text("import asyncio\n\nasync def main():\n    raise ValueError('no')\n\n"
                       "asyncio.run(main())\n")
    done = guessgame("run", str(program))
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ValueError: no" in done.stderr


@contextlib.contextmanager
def run_with_pipes(program: str) -> Iterator[tuple[subprocess.Popen[str], IO[str], IO[str]]]:
    """`guessgame run` on a plain program, its three streams pipes; killed on leaving
    the block if it is still running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "guessgame", "run", str(PROGRAMS / program)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    try:
        yield process, process.stdout, process.stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigusr1_names_the_blocked_thread_the_task_and_the_workers_function() -> None:
    with run_with_pipes("deadlock.py") as (process, stdout, stderr):
        assert stdout.readline() == "stuck: send a line to go on\n"
        text = ""
        lines = iter(stderr.readline, "")
        deadline = time.monotonic() + UNIT
        # A deadlock is named once its waits have lasted DEADLOCK_MIN_AGE: ask until it is.
        while time.monotonic() < deadline:
            os.kill(process.pid, signal.SIGUSR1)
            graph = []
            for line in lines:  # one graph: up to its last line
                graph.append(line)
                if line.startswith("no deadlock found"):
                    break
                if line.startswith("DEADLOCK: 2 parties"):
                    graph += [next(lines), next(lines)]
                    break
            text = "".join(graph)
            if "DEADLOCK" in text:
                break
        assert "DEADLOCK: 2 parties wait for each other" in text, text
        assert ("producer (thread) waits in run_coroutine_threadsafe for task fill from "
                "producer") in text
        assert "task fill from producer waits in janus for producer (thread)" in text
        assert "waits in run_in_executor for asyncio_0 (thread)" in text
        assert re.search(f"thread asyncio_0: .*deadlock.py:"
                         f"{line_of('deadlock.py', 'return sys.stdin.readline()')} wait_for_go",
                         text), text
        assert re.search(f"thread producer: .*deadlock.py:"
                         f"{line_of('deadlock.py', 'filled = asyncio')} producer", text), text
        out, _ = process.communicate("go\n", timeout=2 * UNIT)
    assert process.returncode == 0
    assert out == "filled 4\ndrained [-1, 0, 1, 2, 3]\n"


def test_sigusr1_never_holds_the_programs_loop_on_a_stderr_nobody_reads() -> None:
    """Python runs the handler in the main thread, here the program's loop: the graph is
    handed to the stderr spool, which writes what the pipe takes and keeps the rest
    (bounded), so the loop ticks on while the pipe stays full."""
    with run_with_pipes("ticking_loop.py") as (process, stdout, stderr):
        fcntl.fcntl(stderr.fileno(), F_SETPIPE_SZ, 4096)  # filled by a few graphs
        assert stdout.readline() == "tick 1\n"
        for _ in range(20):  # far more than the pipe holds, never read meanwhile
            os.kill(process.pid, signal.SIGUSR1)
            stdout.readline()  # the loop turned after the signal
        out, err = process.communicate("stop\n", timeout=2 * UNIT)
    assert process.returncode == 0
    assert out.endswith("stopped\n")
    assert err.startswith("wait graph"), err[:200]


# --- guessgame debug PROGRAM.py ----------------------------------------------------------


def debug_program(program: str, *args: str) -> Debugged:
    pdb = Debugged([str(PROGRAMS / program), *args])
    first = pdb.stop()
    assert (os.path.basename(first.file), first.line) == (program, 1), first.text
    return pdb


def finish(pdb: Debugged, program: str, lines: list[str] | None = None) -> str:
    """Clear the breakpoints, continue to the end; the program's output."""
    pdb.reply("clear 1")
    out = pdb.finish()
    status, expected = EXPECTED[program]
    lines = expected if lines is None else lines
    assert f"guessgame debug: the program exited with status {status}" in out, out
    assert all(want in out for want in lines), out
    return out


@contextlib.contextmanager
def stopped_on_crossing(program: str, call: str, thread: str, task: str | None,
                        *args: str) -> Iterator[tuple[Debugged, int]]:
    """pdb stopped on the line of `program` that contains `call`, in `thread` (and in
    `task` unless it is None); the debugger and that line. Closed afterwards."""
    cross = line_of(program, call)
    pdb = debug_program(program, *args)
    try:
        pdb.reply(f"break {program}:{cross}")
        stop = pdb.command("continue")
        assert (stop.thread, stop.line) == (thread, cross), stop.text
        assert task is None or stop.task == task, stop.text
        yield pdb, cross
    finally:
        pdb.close()


def step_across(pdb: Debugged, thread: str, task: str) -> Stop:
    """Step from the crossing line to the far side, which runs in `thread` and `task`."""
    far = pdb.command("step")
    assert (far.thread, far.task) == (thread, task), far.text
    return far


def step_back_to(pdb: Debugged, thread: str, function: str) -> Stop:
    """Step through `function` on the far side until the program is back in `thread`."""
    while (step := pdb.command("step")).thread != thread:
        assert step.function == function, step.text
    return step


def test_debug_steps_from_a_feeder_thread_into_its_coroutine_and_back() -> None:
    program = "feeders.py"
    with stopped_on_crossing(program, "run_coroutine_threadsafe(", "feeder-0", "-",
                             "1") as (pdb, cross):
        far = step_across(pdb, "MainThread", "record from feeder-0")
        assert far.line == line_of(program, "tally.append(")
        assert "[stepped across run_coroutine_threadsafe thread->loop record" in far.text
        where = pdb.reply("where")
        joined = where.split("--- run_coroutine_threadsafe thread->loop record, from thread "
                             "'feeder-0'")
        assert len(joined) == 2, where
        assert f"feeders.py({cross})feed()" in joined[1], where
        pdb.command("step")
        pdb.command("step")  # the coroutine returns
        back = pdb.command("step")
        assert (back.thread, back.line) == ("feeder-0", cross + 1), back.text
        finish(pdb, program, ["worker 0 recorded, 1 so far", "tally: [(0, 0)]"])


@pytest.mark.parametrize("call", ["asyncio.to_thread(", "run_in_executor(None",
                                  "run_in_executor(pool"])
def test_debug_steps_from_a_coroutine_into_a_worker_thread_and_back(call: str) -> None:
    program = "blocking_calls.py"
    function = "shout" if "to_thread" in call else "checksum"
    with stopped_on_crossing(program, call, "MainThread", "Task-1") as (pdb, cross):
        far = pdb.command("step")
        assert far.function == function and far.thread != "MainThread", far.text
        assert far.task == "-"
        if "pool" in call:
            assert far.thread.startswith("hashers")
        assert f"[stepped across run_in_executor loop->thread {function}" in far.text
        where = pdb.reply("where")
        assert f"--- run_in_executor loop->thread {function}, from thread 'MainThread'" in where
        assert f"blocking_calls.py({cross})main()" in where.split("--- run_in_executor")[1]
        step = step_back_to(pdb, "MainThread", function)
        assert (step.task, step.line) == ("Task-1", cross + 1), step.text
        finish(pdb, program)


def test_debug_follows_a_line_through_a_janus_queue() -> None:
    program = "janus_pipeline.py"
    with stopped_on_crossing(program, "requests.put(word)", "producer", None) as (pdb, cross):
        far = step_across(pdb, "MainThread", "Task-1")
        assert far.line == line_of(program, "word = await requests.get()")
        assert "[took janus thread->loop 'alpha', from thread 'producer'" in far.text
        where = pdb.reply("where")
        assert f"janus_pipeline.py({cross})produce()" in where.split("--- janus")[1]
        back = pdb.command("step")
        assert (back.thread, back.line) == ("producer", cross + 1), back.text
        finish(pdb, program)


def test_debug_steps_into_a_loop_run_forever_in_its_own_thread() -> None:
    program = "loop_thread.py"
    with stopped_on_crossing(program, "run_coroutine_threadsafe(", "MainThread",
                             None) as (pdb, cross):
        far = step_across(pdb, "loop-runner", "greet from MainThread")
        assert far.function == "greet"
        assert f"loop_thread.py({cross})main()" in pdb.reply("where").split("--- ")[1]
        step = step_back_to(pdb, "MainThread", "greet")
        assert step.line == cross + 1, step.text
        finish(pdb, program)


def test_debug_waits_names_a_deadlock_across_bridges() -> None:
    program = "deadlock.py"
    pdb = debug_program(program)
    try:
        pdb.reply(f"break {program}:{line_of(program, 'return sys.stdin.readline()')}")
        stop = pdb.command("continue")
        assert stop.function == "wait_for_go", stop.text
        text = ""
        deadline = time.monotonic() + UNIT
        while True:  # until both waits have lasted DEADLOCK_MIN_AGE
            text = pdb.reply("waits")
            if "DEADLOCK" in text or time.monotonic() > deadline:
                break
        assert "producer (thread) waits in run_coroutine_threadsafe for task fill" in text
        assert "DEADLOCK" in text
    finally:
        pdb.close()


# --- a bridge made by hand, announced as docs/debugging.md shows -----------------------

HAND_MADE = Path(__file__).parent / "hand_made_bridge.py"


def test_a_hand_made_bridge_announced_is_traced_and_stepped_across() -> None:
    done = guessgame("run", "--trace", str(HAND_MADE))
    assert (done.returncode, done.stdout) == (0, "42\n"), done.stderr
    assert "\tMainThread\t-\t-\tbridge\trun_coroutine_threadsafe thread->loop answer" in \
        done.stderr
    cross = (HAND_MADE.read_text().splitlines().index(
        "    print(call_in_loop(loop, answer))") + 1)
    pdb = Debugged([str(HAND_MADE)])
    try:
        pdb.stop()
        pdb.reply(f"break hand_made_bridge.py:{cross}")
        assert pdb.command("continue").line == cross
        # Into call_in_loop, then its lines up to the crossing it announces: the far side.
        for _ in range(10):
            far = pdb.command("step")
            if far.thread != "MainThread":
                break
        assert (far.thread, far.function) == ("loop-runner", "answer"), far.text
        step = step_back_to(pdb, "MainThread", "answer")
        assert step.function == "call_in_loop", step.text
        pdb.reply("clear 1")
        assert "42\n" in pdb.finish()
    finally:
        pdb.close()


def test_a_name_imported_from_asyncio_by_the_program_is_announced(tmp_path: Path) -> None:
    program = tmp_path / "imported.py"
    program.write_text(
        "import asyncio\nimport threading\nfrom asyncio import run_coroutine_threadsafe\n\n"
        "async def ping():\n    return 'pong'\n\n"
        "loop = asyncio.new_event_loop()\n"
        "thread = threading.Thread(target=loop.run_forever)\nthread.start()\n"
        "print(run_coroutine_threadsafe(ping(), loop).result())\n"
        "loop.call_soon_threadsafe(loop.stop)\nthread.join()\nloop.close()\n")
    done = guessgame("run", "--trace", str(program))
    assert (done.returncode, done.stdout) == (0, "pong\n"), done.stderr
    assert "run_coroutine_threadsafe thread->loop ping" in done.stderr


def test_run_debug_puts_the_programs_loops_in_asyncio_debug_mode() -> None:
    done = guessgame("run", "--debug", str(PROGRAMS / "blocking_coroutine.py"))
    assert (done.returncode, done.stdout) == (0, "handled after 3 ticks\n"), done.stderr
    assert re.search(r"Executing <.*name='handle'.* took 0\.\d+ seconds", done.stderr), \
        done.stderr


def test_debug_module_stops_first_in_the_module() -> None:
    pdb = Debugged(["-m", "loop_thread"], cwd=PROGRAMS)
    try:
        first = pdb.stop()
        assert (os.path.basename(first.file), first.line) == ("loop_thread.py", 1), first.text
        out = pdb.finish()
        assert "hello, ada\nhello, bob\n" in out
        assert "guessgame debug: the program exited with status 5" in out
    finally:
        pdb.close()


def test_a_step_across_goes_before_other_threads_waiting_at_the_breakpoint() -> None:
    program = "feeders.py"
    cross = line_of(program, "run_coroutine_threadsafe(")
    pdb = debug_program(program, "3")
    try:
        pdb.reply(f"break {program}:{cross}")
        stop = pdb.command("continue")  # the other feeders stop here too, and queue
        sender = stop.thread
        assert stop.line == cross and sender.startswith("feeder-"), stop.text
        far = pdb.command("step")
        assert (far.thread, far.task) == ("MainThread", f"record from {sender}"), far.text
        while (step := pdb.command("step")).thread == "MainThread":
            assert step.function == "record", step.text
        assert (step.thread, step.line) == (sender, cross + 1), step.text
        pdb.reply("clear 1")
        # The feeders that stopped at the breakpoint meanwhile have their prompts now.
        ended = re.compile(r"exited with status (\d+)")
        while not ended.search(text := pdb.command_until("continue", PROMPT_OR_END)):
            pass
        assert ended.search(text).group(1) == "3", text  # type: ignore[union-attr]
    finally:
        pdb.close()


# --- the game's own bridges, while the stdlib's are instrumented ------------------------


def test_the_games_bridges_announce_once_while_the_stdlibs_are_instrumented() -> None:
    from guessgame.bridge import Bridge

    async def triple(number: int) -> int:
        return 3 * number

    def square(number: int) -> int:
        return number * number

    async def both(game: Bridge) -> int:
        queue: janus.Queue[int] = janus.Queue(1)
        thread_end, loop_end = crossing.ends(queue, "janus (test)", "the test's thread")
        await loop_end.put(5)
        item = await game.run_in_thread("test", thread_end.get)
        squared = await game.run_in_thread("test", square, item)
        queue.close()
        await queue.wait_closed()
        return squared

    recorder = Recorder()
    stdlib_bridges.install()
    crossing.attach(recorder)
    try:
        game = Bridge.start_loop_thread(max_workers=2)
        try:
            assert game.run_in_loop(triple(2)) == 6
            assert game.run_in_loop(both(game)) == 25
        finally:
            game.close()
    finally:
        crossing.detach(recorder)
        stdlib_bridges.uninstall()
    sent = sorted(event[1:] for event in recorder.events if event[0] == "sent")
    assert sent == sorted([("run_coroutine_threadsafe", "triple"),
                           ("run_coroutine_threadsafe", "both"), ("janus", "5"),
                           ("run_in_executor", "get"), ("run_in_executor", "square")])
    assert [event for event in recorder.events if event[0] == "loop_started"] == [
        ("loop_started", "", "")]


def test_the_games_commands_patch_nothing() -> None:
    from conftest import CONFIG
    from guessgame import cli

    before = entry_points()
    assert cli.main(["stages", "--config", str(CONFIG)]) == 0
    assert not stdlib_bridges.installed()
    assert entry_points() == before


def test_run_timeline_draws_the_programs_crossings(tmp_path: Path) -> None:
    picture = tmp_path / "loop_thread.json"
    done = guessgame("run", "--timeline", str(picture), str(PROGRAMS / "loop_thread.py"))
    assert (done.returncode, done.stdout) == (5, "hello, ada\nhello, bob\n"), done.stderr
    names = [event.get("name") for event in json.loads(picture.read_text())["traceEvents"]]
    assert names.count("run_coroutine_threadsafe thread->loop greet") >= 2, names


def test_the_program_sees_what_python_gives_it(tmp_path: Path) -> None:
    program = tmp_path / "introspect.py"
    program.write_text(
        "import os, sys\n"
        "print(sys.argv[1:], __name__, sys.path[0] == os.path.dirname(os.path.abspath("
        "__file__)), sys.modules['__main__'].__file__ == __file__)\n"
        "print(sys.stdin.readline().strip())\n"
        "sys.exit('bye')\n")
    plain = subprocess.run([sys.executable, str(program), "a", "-b"], input="line\n",
                           capture_output=True, text=True, timeout=2 * UNIT, check=False)
    ours = guessgame("run", str(program), "a", "-b", stdin="line\n")
    assert (ours.returncode, ours.stdout, ours.stderr) == (
        plain.returncode, plain.stdout, plain.stderr) == (1, "['a', '-b'] __main__ True True\n"
                                                          "line\n", "bye\n")


def test_stepping_to_the_end_stops_only_in_the_programs_own_lines() -> None:
    program = "loop_thread.py"
    pdb = debug_program(program)
    try:
        pdb.reply(f"break {program}:{line_of(program, 'loop.call_soon_threadsafe(loop.stop)')}")
        pdb.command("continue")
        pdb.reply("clear 1")
        text = ""
        for _ in range(20):  # the loop's stop, thread's join and loop's close, then the end
            text = pdb.command_until("step", PROMPT_OR_END)
            if "exited with status" in text:
                break
            stops = [line for line in text.splitlines() if line.startswith("> ")]
            assert all(program in line for line in stops), text
        assert "guessgame debug: the program exited with status 5" in text, text
    finally:
        pdb.close()
