"""Under --debug, a loop held by a blocking call is named while it blocks: the loop
thread's stack, blocking line first, once per stall, then how long the loop was held."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import CONFIG
from guessgame import cli, crossing, outputs, protocol
from guessgame.observe import loopwatch
from guessgame.observe.loopwatch import Heartbeat, LoopWatch
from harness import watch_thresholds_in_demo
from timing import UNIT

DEADLINE = 2 * UNIT
THRESHOLD = 0.05
LOOKS_AFTER_REPORT = 3
"""Looks the watch takes at a stall it has reported, before the test lets it go."""


def line_of(marker: str) -> str:
    """`test_loopwatch.py:N`, N the line of this file that ends with `marker`."""
    lines = Path(__file__).read_text().splitlines()
    number = next(n for n, line in enumerate(lines, 1) if line.endswith(marker))
    return f"test_loopwatch.py:{number}"


class Watched(LoopWatch):
    """A LoopWatch whose writes and looks a test can wait for."""

    def __init__(self, threshold: float) -> None:
        super().__init__(threshold, self.keep)
        self.texts: list[str] = []
        self.looks = 0
        self._changed = threading.Condition()

    def keep(self, text: str) -> None:
        with self._changed:
            self.texts.append(text)
            self._changed.notify_all()

    def check(self, heart: Heartbeat, now: float) -> None:
        super().check(heart, now)
        with self._changed:
            self.looks += 1
            self._changed.notify_all()

    def until(self, what: Callable[[], bool], doing: str) -> None:
        with self._changed:
            assert self._changed.wait_for(what, DEADLINE), f"timed out {doing}: {self.texts}"

    def reports(self, naming: str) -> list[str]:
        """The reports of a stall at the line `naming`. A loaded machine may starve the
        loop thread into a stall of its own, so the tests look only at theirs."""
        return [text for text in self.texts if "has not turned" in text and naming in text]

    def held_after(self, report: str) -> str | None:
        """The line written after `report`; the watch writes nothing else in between."""
        after = self.texts[self.texts.index(report) + 1:]
        return after[0] if after else None

    def report_then_let_go(self, naming: str, let_go: Callable[[], None]) -> tuple[str, str]:
        """Wait for the report, let the watch look a few more times, let the loop go,
        and wait for the line that says how long the loop was held."""
        self.until(lambda: bool(self.reports(naming)), "waiting for the report")
        seen = self.looks
        self.until(lambda: self.looks >= seen + LOOKS_AFTER_REPORT, "waiting for more looks")
        let_go()
        [report] = self.reports(naming)
        self.until(lambda: self.held_after(report) is not None, "waiting for the held line")
        return report, self.held_after(report) or ""


@contextmanager
def loop_in_thread(run: Callable[[asyncio.AbstractEventLoop], Any]) -> Iterator[
        asyncio.AbstractEventLoop]:
    """A loop the test makes, announced at the seam from its own thread as a bridge
    does, running `run(loop)` there; stopped, announced and closed at the end."""
    loop = asyncio.new_event_loop()

    def serve() -> None:
        crossing.loop_started(loop, own=True)
        try:
            run(loop)
        finally:
            crossing.loop_stopped(loop)
            loop.close()

    thread = threading.Thread(target=serve, name="test-loop")
    thread.start()
    try:
        yield loop
    finally:
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(DEADLINE)
        assert not thread.is_alive()


def test_a_callback_that_blocks_is_named_once_then_how_long_it_held_the_loop() -> None:
    gate = threading.Event()

    def block() -> None:
        gate.wait(DEADLINE)  # the blocking line

    with Watched(THRESHOLD) as watch, loop_in_thread(lambda loop: loop.run_forever()) as loop:
        loop.call_soon_threadsafe(block)
        report, held = watch.report_then_let_go(line_of("# the blocking line"), gate.set)
    head, frames = report.split("\n", 1)
    assert head.startswith("guessgame: the event loop in thread test-loop has not turned for ")
    assert re.search(rf"\(loop_block_report {THRESHOLD:g} s\); held at \S*tests/"
                     rf"{line_of('# the blocking line')} block, in threading.py:\d+ wait$",
                     head), head
    # Innermost first: the Event's wait, then the blocking line, then the loop that ran it.
    ours = frames.index(line_of("# the blocking line"))
    assert frames.index("threading.py:") < ours < frames.index("in run_forever"), frames
    assert watch.reports(line_of("# the blocking line")) == [report]  # once per stall
    least, most = re.fullmatch(r"guessgame: the event loop in thread test-loop was held "
                               r"for ([\d.]+) to ([\d.]+) s\n", held).groups()  # type: ignore[union-attr]
    assert THRESHOLD <= float(least) <= float(most)


async def read_greeting(sock: socket.socket) -> bytes:
    """A coroutine written the plain way, with a blocking call left in it."""
    await asyncio.sleep(0)
    return sock.recv(5)  # blocks the loop


def test_a_plain_coroutine_blocking_in_a_socket_read_is_named_while_it_blocks() -> None:
    mine, theirs = socket.socketpair()
    got: list[bytes] = []
    with mine, theirs, Watched(THRESHOLD) as watch, loop_in_thread(
            lambda loop: got.append(loop.run_until_complete(read_greeting(mine)))):
        report, held = watch.report_then_let_go(line_of("# blocks the loop"),
                                                 lambda: theirs.sendall(b"hello"))
    assert got == [b"hello"]
    assert held.startswith("guessgame: the event loop in thread test-loop was held"), held
    head, frames = report.split("\n", 1)
    assert "running task read_greeting, has not turned" in head, head
    assert head.endswith(f"/tests/{line_of('# blocks the loop')} read_greeting"), head
    first = frames.splitlines()[1]  # after "innermost frame first:"
    assert first.endswith(f"tests/{line_of('# blocks the loop')} in read_greeting"), frames


def test_a_loop_that_is_not_running_is_not_held() -> None:
    loop = asyncio.new_event_loop()
    try:
        with Watched(THRESHOLD) as watch:
            crossing.loop_started(loop, own=False)
            loop.run_until_complete(asyncio.sleep(0))  # one beat, then the loop stops
            seen, stopped = watch.looks, len(watch.texts)
            watch.until(lambda: watch.looks >= seen + 2 * loopwatch.BEATS_PER_THRESHOLD,
                        "waiting for the watch to look past the threshold")
            crossing.loop_stopped(loop)
        assert not [text for text in watch.texts[stopped:] if "has not turned" in text]
    finally:
        loop.close()


def test_a_loop_run_again_is_watched_in_its_second_run() -> None:
    """The watch forgets the first run's heartbeat, not the one the second run made."""
    loop = asyncio.new_event_loop()
    try:
        watch = LoopWatch(THRESHOLD, lambda text: None)  # looked at by hand, no thread
        watch.loop_started(loop, own=False)
        [first] = watch._beats.values()
        watch.loop_stopped(loop)
        watch.loop_started(loop, own=False)  # run_until_complete again
        second = watch._beats[loop]
        assert second is not first
        watch.check(first, first.interval)  # the watch's copy of the beats held the first
        assert watch._beats == {loop: second}
    finally:
        loop.close()


def test_a_loop_thread_at_a_debugger_prompt_is_paused_not_held() -> None:
    gate, stopped = threading.Event(), threading.Event()
    debugger: dict[str, Any] = {"__name__": "bdb"}  # code that runs as the debugger's own
    exec("def prompt(stopped, gate, deadline):\n"
         "    stopped.set()\n"
         "    gate.wait(deadline)\n", debugger)

    with Watched(THRESHOLD) as watch, loop_in_thread(lambda loop: loop.run_forever()) as loop:
        loop.call_soon_threadsafe(debugger["prompt"], stopped, gate, DEADLINE)
        assert stopped.wait(DEADLINE)
        seen = watch.looks
        watch.until(lambda: watch.looks >= seen + 2 * loopwatch.BEATS_PER_THRESHOLD,
                    "waiting for the watch to look past the threshold")
        gate.set()
    assert watch.reports("in prompt") == []


@pytest.mark.parametrize("value", ["0", "-1", '"fast"'])
def test_loop_block_report_must_be_a_positive_number(
        value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[guessgame]\nloop_block_report = {value}\n[stages]\nall-threads = []\n")
    assert cli.main(["demo", "--config", str(path)]) == cli.EXIT_USAGE
    out, err = capsys.readouterr()
    must = "a positive number of seconds" if value == "0" else "a non-negative number, got"
    assert (out, err.count("\n")) == ("", 1), err
    assert err.startswith(f"guessgame: {path}: loop_block_report must be {must}"), err


@pytest.mark.parametrize("debug", [True, False])
def test_the_watch_runs_under_debug_only_with_the_configured_threshold(
        debug: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "loop.toml"
    path.write_text(CONFIG.read_text().replace("loop_block_report = 0.1",
                                               "loop_block_report = 0.25"))
    started = watch_thresholds_in_demo(monkeypatch, capsys, LoopWatch, path, debug)
    assert started == ([0.25] if debug else [])


def test_a_blocking_call_left_in_an_async_session_is_named_while_it_holds_the_loop(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    reported = threading.Event()
    blocked: list[bool] = []
    write = outputs.write_stderr
    handle = protocol.Guesser.handle

    def told(text: str) -> None:
        write(text)
        if "has not turned" in text:
            reported.set()

    def handle_blocking(self: protocol.Guesser, line: str) -> protocol.Step:
        if asyncio._get_running_loop() is not None and not blocked:
            blocked.append(reported.wait(DEADLINE))  # the session blocks here
        return handle(self, line)

    monkeypatch.setattr(outputs, "write_stderr", told)
    monkeypatch.setattr(protocol.Guesser, "handle", handle_blocking)
    argv = ["demo", "--config", str(CONFIG), "--async", "connection,session", "--debug",
            "--seed", "1", "-q"]
    assert cli.main(argv) == 0
    assert blocked == [True]
    out, err = capsys.readouterr()
    assert "client: 12 is CORRECT" in out
    [report] = [text for text in re.findall(r"guessgame: the event loop in thread .* has not "
                                            r"turned for .*\n(?:  .*\n)+", err)
                if line_of("# the session blocks here") in text]
    head, frames = report.split("\n", 1)
    assert f"/tests/{line_of('# the session blocks here')} handle_blocking" in head
    assert frames.index(line_of("# the session blocks here")) < frames.index(
        "aio/session.py:"), frames
    assert "in _serve_line" in frames
    assert re.search(r"guessgame: the event loop in thread event-loop was held for [\d.]+ to "
                     r"[\d.]+ s\n",
                     err[err.index(report) + len(report):]), err
    assert re.search(r"Executing <.*> took [\d.]+ seconds", err), err  # asyncio's own log stays
