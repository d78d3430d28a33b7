"""Who waits on whom: the wait graph names each crossing in flight, on demand (SIGUSR1,
guessgame.observe.debugging.waits()) and unprompted under --debug, and names a deadlock."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from conftest import CONFIG
from guessgame import config
from guessgame.bridge import Bridge
from guessgame.config import ConfigError
from guessgame.observe import debugging, waitgraph, waits
from harness import watch_thresholds_in_demo
from timing import UNIT
from wire import Wire

PEER = r"127\.0\.0\.1:\d+"
CLIENTS = 5
DEADLINE = 2 * UNIT


class Lines:
    """A subprocess stream read by a thread, so that a test waits with a deadline."""

    def __init__(self, stream: object) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), name="pump")
        self._thread.start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self._lines.put(line.rstrip("\n"))
        self._lines.put("")  # the end

    def until(self, pattern: str) -> list[str]:
        """Lines up to and including the first that matches `pattern`."""
        seen = []
        end = time.monotonic() + DEADLINE
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in:\n" +
                                     "\n".join(seen)) from None
            seen.append(line)
            if re.search(pattern, line):
                return seen
            if line == "" and self._thread.is_alive() is False:
                raise AssertionError(f"stream ended before {pattern!r}:\n" + "\n".join(seen))

    def join(self) -> None:
        self._thread.join(DEADLINE)


@contextmanager
def serve(layers: str) -> Iterator[tuple[int, int, Lines]]:
    with subprocess.Popen(
            [sys.executable, "-m", "guessgame", "serve", "--config", str(CONFIG), "--async",
             layers, "--no-reports"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None and process.stderr is not None
        stdout, stderr = Lines(process.stdout), Lines(process.stderr)
        try:
            listening = stdout.until("^listening on ")[-1]
            yield process.pid, int(listening.rsplit(":", 1)[1]), stderr
            process.send_signal(signal.SIGTERM)
            assert process.wait(DEADLINE) == 0
        finally:
            process.kill()
            stdout.join()
            stderr.join()


def mid_game(port: int) -> Wire:
    """A client that has asked for one guess and waits to report on it."""
    wire = Wire(port)
    wire.send("PARAMS 1 1000")
    wire.send("NUMBER")
    assert wire.line().isdigit()
    return wire


WAITS = {
    # Threaded sessions wait for their session task on the loop.
    "connection,session": (f"^  session ({PEER}) \\(thread\\) waits in run_coroutine_threadsafe "
                           f"for task System._async_session from session ({PEER}) "),
    # Session tasks wait for the worker running the threaded session, named after it.
    "server": (f"^  task session ({PEER}) waits in run_in_executor for session ({PEER}) "
               "\\(thread\\) "),
    # Threaded sessions wait on janus for the reader task of their connection.
    "connection": (f"^  session ({PEER}) \\(thread\\) waits in janus \\(inbox\\) for task "
                   f"reader ({PEER}) "),
}


@pytest.mark.parametrize("picked", list(WAITS))
def test_sigusr1_prints_each_session_waiting_across_its_bridge_and_serving_goes_on(
        picked: str) -> None:
    with serve(picked) as (pid, port, stderr):
        clients = [mid_game(port) for _ in range(CLIENTS)]
        try:
            os.kill(pid, signal.SIGUSR1)
            text = stderr.until("^no deadlock found")
            waiting = [m for line in text if (m := re.match(WAITS[picked], line))]
            peers = {wire.sock.getsockname() for wire in clients}
            assert {m.group(1) for m in waiting} == {f"{h}:{p}" for h, p in peers}, text
            assert all(m.group(1) == m.group(2) for m in waiting), text
            assert any(line.startswith("wait graph of process") for line in text)
            # Still serving: a new client plays a game, and the old ones go on.
            probe = Wire(port)
            for line in ("PARAMS 1 1", "NUMBER"):
                probe.send(line)
            assert probe.line() == "1"
            probe.close()
            for wire in clients:
                wire.send("REPORT COLDER")
                wire.send("NUMBER")
                assert wire.line().isdigit()
        finally:
            for wire in clients:
                wire.close()


# --- deadlocks --------------------------------------------------------------------------


def test_a_lock_held_across_run_in_loop_is_named_as_a_deadlock_within_stall_report() -> None:
    """A thread holds a lock and waits in run_in_loop for a coroutine; the coroutine runs
    blocking code in a worker, and that code needs the same lock."""
    stall_report = 0.5
    reports: queue.Queue[tuple[float, str]] = queue.Queue()
    lock = waits.TrackedLock("table")
    bridge = Bridge.start_loop_thread(max_workers=2)
    gave_up = threading.Event()

    def needs_the_lock() -> None:
        # Breaks the deadlock once it has surely been reported, so the test ends.
        if lock.acquire(timeout=stall_report + 2):
            lock.release()
        else:
            gave_up.set()

    async def update_table() -> None:
        await bridge.run_in_thread("table", needs_the_lock, thread_name="table writer")

    try:
        with waitgraph.StallWatch(stall_report,
                              lambda text: reports.put((time.monotonic(), text))), lock:
            started = time.monotonic()
            bridge.run_in_loop(update_table())
    finally:
        bridge.close()
    assert gave_up.is_set()
    at, text = reports.get_nowait()
    assert at - started < stall_report + 1, text
    deadlock = text[text.index("DEADLOCK"):].splitlines()
    assert deadlock[0].startswith("DEADLOCK: 3 parties wait for each other in a cycle"), text
    assert ("  MainThread (thread) holds lock 'table' and waits in run_coroutine_threadsafe "
            "for task test_a_lock_held_across_run_in_loop_is_named_as_a_deadlock_within_"
            "stall_report.<locals>.update_table from MainThread") in text, text
    assert any(line.startswith("  task test_a_lock_held") and
               "waits in run_in_executor for table writer (thread)" in line
               for line in deadlock), text
    assert any(line.startswith("  table writer (thread) waits for lock 'table' held by "
                               "MainThread (thread)") for line in deadlock), text
    assert reports.empty(), "reported once"


def test_waits_without_a_cycle_report_no_deadlock_and_idle_waits_are_no_stall() -> None:
    ready, go = threading.Event(), threading.Event()
    lock = waits.TrackedLock("plain")

    def holder() -> None:
        with lock:
            ready.set()
            go.wait(DEADLINE)

    thread = threading.Thread(target=holder, name="holder")
    thread.start()
    ready.wait(DEADLINE)
    waiter = threading.Thread(target=lambda: lock.acquire(timeout=DEADLINE) and lock.release(),
                              name="waiter")
    waiter.start()
    idle = waits.begin("janus (inbox)", ("any", "the peer"), idle=True)
    try:
        _eventually(lambda: any(c.bridge == "lock 'plain'" for c in waits.in_flight()))
        text = debugging.waits()
        assert "waiter (thread) waits for lock 'plain' held by holder (thread)" in text
        assert "holds lock 'plain'" in text
        assert "no deadlock found" in text
        assert repr(text) == str(text)  # pdb's `p` and a watch show lines, not escapes
        time.sleep(0.05)
        stalls = waits.stalled(0.01)
        assert [c.bridge for c in stalls] == ["lock 'plain'"]
        assert waits.stalled(0.01) == []  # once
    finally:
        waits.end(idle)
        go.set()
        thread.join()
        waiter.join()


def test_waits_from_a_task_on_the_loop_reads_the_tasks_there() -> None:
    async def main() -> str:
        bridge = Bridge.adopt_running_loop(max_workers=1)
        try:
            return debugging.waits().text
        finally:
            bridge.close()

    text = asyncio.run(main())
    assert "runs an event loop; 1 task (read on the loop):" in text
    assert re.search(r"  task \S+ \(running\): .*test_waits\.py:\d+ main\n", text), text


def test_stall_report_must_be_positive(tmp_path: object) -> None:
    path = tmp_path / "bad.toml"  # type: ignore[operator]
    path.write_text("[guessgame]\nstall_report = 0\n[stages]\nall-threads = []\n")
    with pytest.raises(ConfigError, match="stall_report must be a positive number"):
        config.load(str(path))
    assert config.load(str(CONFIG)).stall_report == 5.0


def _eventually(predicate: object) -> None:
    end = time.monotonic() + DEADLINE
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < end, "timed out"
        time.sleep(0.002)


@pytest.mark.parametrize("debug", [True, False])
def test_the_stall_watch_runs_under_debug_only_with_the_configured_threshold(
        debug: bool, tmp_path: object, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "stall.toml"  # type: ignore[operator]
    path.write_text(CONFIG.read_text().replace("stall_report = 5.0", "stall_report = 2.5"))
    started = watch_thresholds_in_demo(monkeypatch, capsys, waitgraph.StallWatch, path, debug)
    assert started == ([2.5] if debug else [])


def test_a_cycle_counts_as_a_deadlock_only_once_every_wait_in_it_has_lasted() -> None:
    """A thread about to get from a queue and a task about to put into it look like a
    cycle for an instant; a deadlock is a cycle that lasts."""
    task_side: waits.Party = ("task", object())
    thread_side: waits.Party = ("thread", threading.get_ident())
    first = waits.begin("janus (inbox)", task_side, waiter=thread_side, idle=True)
    second = waits.begin("janus (inbox)", thread_side, waiter=task_side)
    try:
        assert waitgraph.snapshot().cycles == []
        for crossing in waits.in_flight():
            crossing.since -= waitgraph.DEADLOCK_MIN_AGE
        assert len(waitgraph.snapshot().cycles) == 1
    finally:
        waits.end(first)
        waits.end(second)
